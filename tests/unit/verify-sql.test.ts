/** The SQL that verify builds: identifiers quoted, values as parameters, NULL distinct per column. */
import { describe, expect, it } from 'vitest';
import type { ScopeTable } from '../../src/config/scope.js';
import { UsageError } from '../../src/errors.js';
import {
  batchHashQuery, bpcharSides, bucketHashQuery, bucketRange, chunkHashQuery, hashKind, lookupRowsQuery, nullConstant, rowHashExpr, type VerifyTable,
} from '../../src/pipeline/verify/sql.js';
import { estimatedWork, tableFilter } from '../../src/pipeline/verify/verify.js';

const odd: VerifyTable = {
  schema: 'Sales Data',
  name: 'Order "x"',
  display: '"Sales Data"."Order ""x"""',
  key: [
    { name: 'select', sourceType: 'integer', targetType: 'bigint', integer: true },
    { name: 'Größe', sourceType: 'text', targetType: 'text', integer: false },
  ],
  columns: [
    { name: 'Größe', kind: 'text' },
    { name: 'select', kind: 'int' },
  ],
  filter: "status <> 'x'",
  only: true,
  estimatedRows: 10,
};

describe('verify SQL', () => {
  it('hashes char(n) without the text cast on the sides where it is char(n), and nowhere else', () => {
    expect(bpcharSides(1042, 'character(84)')).toEqual({ source: true, target: true });
    expect(bpcharSides(25, 'character')).toEqual({ source: false, target: true });
    expect(bpcharSides(1042, 'text')).toEqual({ source: true, target: false });
    expect(bpcharSides(1043, 'character varying(5)')).toBeUndefined();
    expect(bpcharSides(1042, 'character(84)[]')).toEqual({ source: true, target: false });
    const cols = [{ name: 'f', kind: 'text' as const, bpchar: { source: true, target: false } }];
    expect(rowHashExpr(cols, 'source')).toContain('hashbpcharextended("f" COLLATE "C", 1)');
    expect(rowHashExpr(cols, 'target')).toContain('hashtextextended("f"::text COLLATE "C", 1)');
    // A masked column hashes the masked expression as text.
    expect(rowHashExpr([{ ...cols[0]!, sourceExpr: "'x'" }], 'source')).toContain(`hashtextextended(('x')::text COLLATE "C", 1)`);
  });

  it('hashes every column by name with its own seed and its own NULL constant', () => {
    const expr = rowHashExpr(odd.columns);
    expect(expr).toBe(
      `coalesce(hashtextextended("Größe"::text COLLATE "C", 1), (${nullConstant(0)})::int8) # ` +
        `coalesce(hashint8extended("select"::int8, 2), (${nullConstant(1)})::int8)`,
    );
    const constants = new Set(Array.from({ length: 200 }, (_v, i) => nullConstant(i)));
    expect(constants.size).toBe(200);
    for (const c of constants) expect(BigInt(c) >= -(2n ** 63n) && BigInt(c) < 2n ** 63n).toBe(true);
    expect(rowHashExpr([])).toBe('0::int8');
    // Binary paths only where equal values always print alike: not numeric (1.0 vs 1.00), not floats (-0).
    expect([20, 21, 23, 1114, 1184, 2950, 1700, 701, 700, 25, 3802].map(hashKind)).toEqual(
      ['int', 'int', 'int', 'timestamp', 'timestamp', 'uuid', 'text', 'text', 'text', 'text', 'text'],
    );
    expect(rowHashExpr([{ name: 'at', kind: 'timestamp' }, { name: 'u', kind: 'uuid' }])).toBe(
      `coalesce(timestamp_hash_extended("at"::timestamp, 1), (${nullConstant(0)})::int8) # ` +
        `coalesce(uuid_hash_extended("u"::uuid, 2), (${nullConstant(1)})::int8)`,
    );
  });

  it('hashes a date as its midnight timestamp, and as text past timestamp’s range', () => {
    expect([1082].map(hashKind)).toEqual(['date']);
    expect(rowHashExpr([{ name: 'd', kind: 'date' }])).toBe(
      `coalesce(CASE WHEN "d"::date < '294277-01-01'::date THEN timestamp_hash_extended("d"::date::timestamp, 1) ` +
        `ELSE hashtextextended("d"::text COLLATE "C", 1) END, (${nullConstant(0)})::int8)`,
    );
  });

  it('hashes several whole tables in one statement, one numbered branch each with its own filter and parameters', () => {
    const plain: VerifyTable = { ...odd, name: 'plain', filter: null, only: false };
    const q = batchHashQuery([odd, plain], 'target');
    const branches = q.text.split(' UNION ALL ');
    expect(branches).toHaveLength(2);
    expect(branches[0]).toMatch(/^SELECT 0::int AS i, count\(\*\)::text AS n, coalesce\(sum\(.*\), 0\)::text AS h FROM ONLY "Sales Data"\."Order ""x""" WHERE \(status <> 'x'\)$/);
    expect(branches[1]).toMatch(/^SELECT 1::int AS i, .* FROM "Sales Data"\."plain"$/);
    expect(q.values).toEqual([]);
  });

  it('passes key bounds as parameters cast to each side’s type, and applies the filter', () => {
    const range = { lo: ['5', "it's"], hi: ['9', 'z'] };
    const src = chunkHashQuery(odd, range, 'source');
    expect(src.text).toContain('FROM ONLY "Sales Data"."Order ""x"""');
    expect(src.text).toContain('WHERE ("select", "Größe") >= ($1::integer, $2::text) AND ("select", "Größe") < ($3::integer, $4::text) AND (status <> \'x\')');
    expect(src.values).toEqual(['5', "it's", '9', 'z']);
    expect(chunkHashQuery(odd, range, 'target').text).toContain('($1::bigint, $2::text)');
    const lookup = lookupRowsQuery(odd, [['1', 'a'], ['2', 'b']], 'target');
    expect(lookup.text).toContain('("select", "Größe") IN (SELECT * FROM unnest($1::bigint[], $2::text[]))');
    expect(lookup.values).toEqual([['1', '2'], ['a', 'b']]);
  });

  it('cuts integer buckets with open ends', () => {
    const b = { origin: 100n, width: 10n, total: 3 };
    expect(bucketRange(b, 0)).toEqual({ lo: null, hi: ['110'] });
    expect(bucketRange(b, 1)).toEqual({ lo: ['110'], hi: ['120'] });
    expect(bucketRange(b, 2)).toEqual({ lo: ['120'], hi: null });
    const single = { ...odd, key: [odd.key![0]!] };
    const q = bucketHashQuery(single, { lo: null, hi: ['120'] }, 'source', b);
    expect(q.text).toContain('greatest(least(("select"::int8 - $2::int8) / $3::int8, $4::int8), 0)');
    expect(q.values).toEqual(['120', '100', '10', 2]);
  });

  it('takes the filter from the state first, builds a time filter from its cutoff, and refuses one without', () => {
    const t = { schema: 'public', name: 'events', filter: "kind = 'a'", timeFilter: { column: 'At', window: '6 months' } } as ScopeTable;
    expect(tableFilter(t, { 'public.events': 'stored predicate' }, undefined)).toBe('stored predicate');
    expect(tableFilter(t, {}, { 'public.events': "2024-01-01 00:00:00+00" })).toBe(`"At" >= '2024-01-01 00:00:00+00'::timestamptz`);
    expect(() => tableFilter(t, {}, {})).toThrow(UsageError);
    expect(() => tableFilter(t, {}, {})).toThrow(/pgferry init/);
    expect(tableFilter({ ...t, timeFilter: undefined }, undefined, undefined)).toBe("kind = 'a'");
  });
});

describe('verify: session pairs for the work', () => {
  const table = (estimatedRows: number, liveRows: number | null, key = true) => ({
    schemaOnly: false, estimatedRows, liveRows, primaryKey: key ? ['id'] : null, uniqueKey: null,
  });

  it('counts a never-analysed keyed table by its live rows, so that its chunks get every pair', () => {
    // 50 000 live rows in chunks of 10 000: five units; by pg_class alone (-1) it was one, and verify kept one pair.
    expect(estimatedWork([table(-1, 50_000)], 10_000)).toBe(5);
    expect(estimatedWork([table(50_000, null)], 10_000)).toBe(5);
    // Neither estimate known: one unit, as before.
    expect(estimatedWork([table(-1, null)], 10_000)).toBe(1);
  });

  it('counts small tables together and a keyless table as one unit', () => {
    expect(estimatedWork([table(-1, 20), table(5, null), table(-1, 0)], 10_000)).toBe(1);
    expect(estimatedWork([table(-1, 90_000, false)], 10_000)).toBe(1);
    expect(estimatedWork([{ ...table(90_000, null), schemaOnly: true }], 10_000)).toBe(0);
  });
});
