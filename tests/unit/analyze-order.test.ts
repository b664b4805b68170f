import { describe, expect, it } from 'vitest';
import { analyzeItems } from '../../src/pipeline/init/analyze.js';
import type { ScopeTable } from '../../src/config/scope.js';

function table(name: string, bytes: number, partitions: string[] = []): ScopeTable {
  return {
    schema: 'public', name, bytes, relkind: partitions.length ? 'p' : 'r',
    partitions: partitions.map((p, i) => ({ schema: 'public', name: p, oid: 1000 + i })),
  } as unknown as ScopeTable;
}

const names = (items: { name: string; only?: boolean }[]) => items.map((i) => (i.only ? `ONLY ${i.name}` : i.name));

describe('what the ANALYZE phase runs', () => {
  const tables = [table('a_small', 10), table('b_parted', 300, ['b1', 'b2']), table('c_large', 500), table('d_unknown', -1)];

  it('before PostgreSQL 18: the longest first, a partitioned table counted twice (its rows sampled, then each partition)', () => {
    expect(names(analyzeItems(tables, 15, new Set()))).toEqual(['b_parted', 'c_large', 'a_small', 'd_unknown']);
  });

  it('from PostgreSQL 18: the partitions not yet analysed, then every table, a partitioned one with ONLY', () => {
    expect(names(analyzeItems(tables, 18, new Set(['public.b1'])))).toEqual(['b2', 'a_small', 'ONLY b_parted', 'c_large', 'd_unknown']);
  });
});
