import { describe, expect, it } from 'vitest';
import { analyzeItems } from '../../src/pipeline/init/analyze.js';
import type { ScopeTable } from '../../src/config/scope.js';

function table(name: string, bytes: number, partitions: string[] = []): ScopeTable {
  return {
    schema: 'public', name, bytes, relkind: partitions.length ? 'p' : 'r',
    partitions: partitions.map((p, i) => ({ schema: 'public', name: p, oid: 1000 + i })),
  } as unknown as ScopeTable;
}

const names = (items: { name: string; leaves?: { name: string }[] }[]) =>
  items.map((i) => (i.leaves ? `${i.name} (${i.leaves.map((l) => l.name).join(' ')})` : i.name));

describe('what the ANALYZE phase runs', () => {
  const tables = [table('a_small', 10), table('b_parted', 300, ['b1', 'b2']), table('c_large', 500), table('d_unknown', -1)];

  it('the plain tables and the partitions largest first (a partition an equal share of its root), then the partitioned tables with their leaves', () => {
    expect(names(analyzeItems(tables, new Set()))).toEqual(['c_large', 'b1', 'b2', 'a_small', 'd_unknown', 'b_parted (b1 b2)']);
  });

  it('leaves out the partitions analysed during the copy, but still names them as the root\'s leaves', () => {
    expect(names(analyzeItems(tables, new Set(['public.b1'])))).toEqual(['c_large', 'b2', 'a_small', 'd_unknown', 'b_parted (b1 b2)']);
  });
});
