import { describe, expect, it } from 'vitest';
import { ANALYZE_BATCH_TABLES, analyzeItems, analyzeSql } from '../../src/pipeline/init/analyze.js';
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
  const MB = 1024 ** 2;
  const tables = [table('a_small', 10 * MB), table('b_parted', 300 * MB, ['b1', 'b2']), table('c_large', 500 * MB), table('d_unknown', -1)];

  it('the plain tables and the partitions largest first (a partition an equal share of its root), then the partitioned tables with their leaves', () => {
    expect(names(analyzeItems(tables, new Set()))).toEqual(['c_large', 'b1', 'b2', 'a_small', 'd_unknown', 'b_parted (b1 b2)']);
  });

  it('leaves out the partitions analysed during the copy, but still names them as the root\'s leaves', () => {
    expect(names(analyzeItems(tables, new Set(['public.b1'])))).toEqual(['c_large', 'b2', 'a_small', 'd_unknown', 'b_parted (b1 b2)']);
  });

  it('puts tables below 1 MB several to a statement, about two statements per session, at most ANALYZE_BATCH_TABLES each; larger and unknown sizes alone', () => {
    const small = Array.from({ length: 10 }, (_, i) => table(`s${i}`, 1000 - i));
    const items = analyzeItems([table('big', 2 * MB), ...small, table('unknown', -1)], new Set(), 2);
    const shown = items.map((i) => [i.name, ...(i.with ?? []).map((w) => w.name)].join('+'));
    expect(shown).toEqual(['big', 's0+s1+s2', 's3+s4+s5', 's6+s7+s8', 's9', 'unknown']);
    expect(analyzeSql(items[1]!)).toBe('ANALYZE "public"."s0", "public"."s1", "public"."s2"');
    const many = analyzeItems(Array.from({ length: 500 }, (_, i) => table(`m${i}`, 100)), new Set(), 2);
    expect(many.map((i) => 1 + (i.with?.length ?? 0))).toEqual(Array(10).fill(ANALYZE_BATCH_TABLES));
  });
});
