/** The row diff (by key, as a multiset) and the guarded statements repair writes with. */
import { describe, expect, it } from 'vitest';
import { compareKeyed, compareMultiset, keyRowsQuery, rangeRowsQuery, type KeyedRow, type RowTable } from '../../src/pipeline/shared/row-diff.js';
import { deleteCopiesSql, deleteKeyedSql, insertKeyedSql, updateKeyedSql, type WriteColumn } from '../../src/pipeline/verify/repair/writes.js';

const odd: RowTable = {
  schema: 'Sales Data',
  name: 'Order "x"',
  key: [{ name: 'select', sourceType: 'integer', targetType: 'bigint' }],
  columns: [{ name: 'Größe' }, { name: 'select' }],
  filter: "status <> 'x'",
  only: true,
};

const row = (key: string, values: (string | null)[], inFilter = true): KeyedRow => ({ key: [key], values, inFilter });

describe('row diff', () => {
  it('reads the source within the filter and the target without it, flagged; key bounds as parameters', () => {
    const s = rangeRowsQuery(odd, { lo: ['10'], hi: ['20'] }, 'source');
    expect(s.text).toBe(
      `SELECT "select"::text AS k0, "Größe"::text AS c0, "select"::text AS c1, coalesce((status <> 'x'), false) AS pgferry_in ` +
        `FROM ONLY "Sales Data"."Order ""x""" WHERE "select" >= $1::integer AND "select" < $2::integer AND (status <> 'x')`,
    );
    expect(s.values).toEqual(['10', '20']);
    const t = rangeRowsQuery(odd, { lo: ['10'], hi: null }, 'target');
    expect(t.text).toMatch(/WHERE "select" >= \$1::bigint$/);
    expect(keyRowsQuery(odd, [['1'], ['2']], 'target').values).toEqual([['1', '2']]);
  });

  it('compares by key: missing, extra, different, NULL distinct from empty, a target row outside the filter is an update', () => {
    const d = compareKeyed(
      [row('1', ['a', '1']), row('2', ['b', '2']), row('3', [null, '3']), row('5', ['e', '5'])],
      [row('2', ['b', '2']), row('3', ['', '3']), row('4', ['d', '4']), row('5', ['e', '5'], false), row('6', ['f', '6'], false)],
    );
    expect(d.missing.map((r) => r.key)).toEqual([['1']]);
    expect(d.extra.map((r) => r.key)).toEqual([['4']]);
    expect(d.different.map((x) => x.source.key)).toEqual([['3'], ['5']]);
  });

  it('compares rows without a key as multisets: duplicates count', () => {
    const a = ['x', '1'];
    const b = ['y', null];
    const d = compareMultiset([a, a, a, b], [a, b, b, b, ['z', '']]);
    expect(d.missing).toEqual([{ values: a, count: 2 }]);
    expect(d.extra).toEqual([
      { values: b, count: 2 },
      { values: ['z', ''], count: 1 },
    ]);
  });
});

describe('repair statements', () => {
  const cols: WriteColumn[] = [
    { index: 0, name: 'Größe', targetType: 'text' },
    { index: 1, name: 'select', targetType: 'bigint' },
  ];

  it('guards updates and deletes with the values read, and sets only what differs', () => {
    const u = updateKeyedSql(odd, cols, ['7'], ['old', '7'], ['new', '7'])!;
    expect(u.text).toBe(
      `UPDATE ONLY "Sales Data"."Order ""x""" SET "Größe" = $1::text WHERE "select" = $2::bigint ` +
        `AND ("Größe"::text COLLATE "C") IS NOT DISTINCT FROM $3::text AND ("select"::text COLLATE "C") IS NOT DISTINCT FROM $4::text`,
    );
    expect(u.values).toEqual(['new', '7', 'old', '7']);
    expect(updateKeyedSql(odd, cols, ['7'], ['same', '7'], ['same', '7'])).toBeNull();
    expect(deleteKeyedSql(odd, ['7'], [null, '7']).values).toEqual(['7', null, '7']);
  });

  it('inserts without overriding an existing key, and deletes copies by physical address within the filter', () => {
    const i = insertKeyedSql(odd, cols, ['n', '8']);
    expect(i.text).toBe(`INSERT INTO "Sales Data"."Order ""x""" ("Größe", "select") OVERRIDING SYSTEM VALUE VALUES ($1::text, $2::bigint) ON CONFLICT DO NOTHING`);
    const d = deleteCopiesSql(odd, ['n', '8'], 2);
    expect(d.text).toContain(`WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM ONLY "Sales Data"."Order ""x""" WHERE`);
    expect(d.text).toContain(`AND (status <> 'x') LIMIT $3::int8)`);
    expect(d.values).toEqual(['n', '8', 2]);
  });
});
