import { describe, expect, it } from 'vitest';
import { copyInSql, copyOutSql, describePart } from '../../src/pipeline/init/copy-part.js';
import { effectiveSplitThreshold, integerKeyColumn, keyRanges, pageRanges, partCount, partId, rangePredicate, relationsOf } from '../../src/pipeline/init/parts.js';

/** Every integer in [lo, hi] falls in exactly one range. */
function coverage(ranges: { from: string | null; to: string | null }[], lo: bigint, hi: bigint): number[] {
  const hits: number[] = [];
  for (let v = lo; v <= hi; v++) {
    hits.push(ranges.filter((r) => (r.from === null || v >= BigInt(r.from)) && (r.to === null || v < BigInt(r.to))).length);
  }
  return hits;
}

describe('part counts', () => {
  const o = { splitThresholdBytes: 100, maxParts: 4 };
  it('keeps tables at or below the threshold whole and caps the number of parts', () => {
    expect(partCount(0, o)).toBe(1);
    expect(partCount(100, o)).toBe(1);
    expect(partCount(101, o)).toBe(2);
    expect(partCount(350, o)).toBe(4);
    expect(partCount(10_000, o)).toBe(4);
    expect(partCount(10_000, { splitThresholdBytes: 0, maxParts: 4 })).toBe(1);
  });
});

describe('split threshold', () => {
  const MB = 1024 ** 2;
  it('is lowered to one worker\'s share when a table would keep one worker busy alone, never below 256 MB', () => {
    expect(effectiveSplitThreshold(1024 * MB, 1000 * MB, 2)).toBe(500 * MB);
    expect(effectiveSplitThreshold(1024 * MB, 3000 * MB, 2)).toBe(1024 * MB);
    expect(effectiveSplitThreshold(1024 * MB, 300 * MB, 4)).toBe(256 * MB);
    expect(effectiveSplitThreshold(1024 * MB, 1000 * MB, 1)).toBe(1024 * MB);
    expect(effectiveSplitThreshold(1024 * MB, 1000 * MB, undefined)).toBe(1024 * MB);
    expect(effectiveSplitThreshold(64 * MB, 1000 * MB, 2)).toBe(64 * MB);
    // A 900 MB table next to 100 MB of others, two workers: two parts of ~450 MB.
    expect(partCount(900 * MB, { splitThresholdBytes: effectiveSplitThreshold(1024 * MB, 1000 * MB, 2), maxParts: 16 })).toBe(2);
  });
});

describe('page ranges', () => {
  it('cover [0, ∞) without overlap, the last one open-ended', () => {
    for (const [pages, count] of [[10, 3], [10, 4], [10, 5], [5, 4], [1, 8], [0, 3], [1000, 16], [17, 16]] as const) {
      const r = pageRanges(pages, count);
      expect(r.length).toBeGreaterThanOrEqual(1);
      expect(r.length).toBeLessThanOrEqual(Math.max(1, count));
      expect(r[0]!.fromPage).toBe(0);
      expect(r[r.length - 1]!.toPage).toBeNull();
      for (let i = 1; i < r.length; i++) expect(r[i]!.fromPage).toBe(r[i - 1]!.toPage);
      for (const x of r.slice(0, -1)) expect(x.toPage!).toBeGreaterThan(x.fromPage);
      // No part starts beyond the table.
      for (const x of r.slice(1)) expect(x.fromPage).toBeLessThan(pages);
    }
    expect(pageRanges(10, 3)).toEqual([{ fromPage: 0, toPage: 4 }, { fromPage: 4, toPage: 8 }, { fromPage: 8, toPage: null }]);
  });
});

describe('key ranges', () => {
  it('cover every integer exactly once, with open ends', () => {
    for (const [lo, hi, n] of [[1n, 100n, 4], [-50n, 49n, 3], [7n, 7n, 4], [1n, 3n, 8], [0n, 1n, 2]] as const) {
      const r = keyRanges(lo, hi, n);
      expect(r[0]!.from).toBeNull();
      expect(r[r.length - 1]!.to).toBeNull();
      expect(coverage(r, lo - 5n, hi + 5n).every((h) => h === 1)).toBe(true);
    }
    expect(keyRanges(1n, 100n, 4)).toEqual([
      { from: null, to: '26' }, { from: '26', to: '51' }, { from: '51', to: '76' }, { from: '76', to: null },
    ]);
  });

  it('works near the ends of bigint', () => {
    const r = keyRanges(-(2n ** 63n), 2n ** 63n - 1n, 4);
    expect(r).toHaveLength(4);
    expect(r.map((x) => x.to)).toEqual(['-4611686018427387904', '0', '4611686018427387904', null]);
  });
});

describe('predicates and statements', () => {
  const rel = { schema: 'My Schema', name: 'order"s' };
  it('builds ctid and key predicates with quoted names and literals', () => {
    expect(rangePredicate(null)).toBeNull();
    expect(rangePredicate({ kind: 'ctid', fromPage: 0, toPage: 10 })).toBe(`ctid < '(10,0)'::tid`);
    expect(rangePredicate({ kind: 'ctid', fromPage: 10, toPage: null })).toBe(`ctid >= '(10,0)'::tid`);
    expect(rangePredicate({ kind: 'ctid', fromPage: 0, toPage: null })).toBeNull();
    expect(rangePredicate({ kind: 'key', column: 'Id', from: '-5', to: '10' })).toBe(`"Id" >= '-5' AND "Id" < '10'`);
    expect(() => rangePredicate({ kind: 'key', column: 'id', from: '1; DROP', to: null })).toThrow(/not an integer/);
  });

  it('uses plain COPY without filter or range, COPY (SELECT … FROM ONLY …) otherwise', () => {
    expect(copyOutSql(rel, ['a', 'B'], 'binary')).toBe(`COPY "My Schema"."order""s" ("a", "B") TO STDOUT (FORMAT binary)`);
    expect(copyOutSql(rel, ['a'], 'text', 'a > 1')).toBe(
      `COPY (SELECT "a" FROM ONLY "My Schema"."order""s" WHERE (a > 1\n)) TO STDOUT (FORMAT text)`,
    );
    // A trailing comment in a filter cannot swallow the part's range.
    expect(copyOutSql(rel, ['a'], 'text', 'a > 1 -- recent only', { kind: 'ctid', fromPage: 3, toPage: 6 })).toBe(
      `COPY (SELECT "a" FROM ONLY "My Schema"."order""s" WHERE (a > 1 -- recent only\n) AND ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid) TO STDOUT (FORMAT text)`,
    );
    expect(copyOutSql(rel, [], 'text', undefined, { kind: 'key', column: 'id', from: null, to: '5' })).toBe(
      `COPY (SELECT  FROM ONLY "My Schema"."order""s" WHERE "id" < '5') TO STDOUT (FORMAT text)`,
    );
    expect(copyInSql(rel, ['a'], 'binary', true)).toBe(`COPY "My Schema"."order""s" ("a") FROM STDIN (FORMAT binary, FREEZE)`);
    expect(copyInSql(rel, [], 'text', false)).toBe(`COPY "My Schema"."order""s" FROM STDIN (FORMAT text)`);
  });

  it('names parts unambiguously', () => {
    expect(partId({ schema: 'public', name: 'orders' }, 3)).toBe('public.orders#3');
    expect(partId({ schema: 'a.b', name: 'c' }, 0)).not.toBe(partId({ schema: 'a', name: 'b.c' }, 0));
    expect(describePart({ relation: { schema: 'public', name: 'Orders' }, index: 1, count: 4 })).toBe('public."Orders" part 2/4');
  });
});

describe('relations and keys', () => {
  const col = (name: string, typeOid: number) => ({ name, type: '', typeOid, notNull: true, notNullValid: true, generated: false, identity: false });
  it('copies partitioned tables through their leaves', () => {
    expect(relationsOf({ schema: 's', name: 't', relkind: 'r', partitions: [] })).toEqual([{ schema: 's', name: 't' }]);
    expect(relationsOf({
      schema: 's', name: 't', relkind: 'p',
      partitions: [{ schema: 's', name: 't1', oid: 1 }, { schema: 'x', name: 't2', oid: 2 }],
    })).toEqual([{ schema: 's', name: 't1' }, { schema: 'x', name: 't2' }]);
  });

  it('splits by key only on a single-column integer primary key', () => {
    expect(integerKeyColumn({ primaryKey: ['id'], columns: [col('id', 20)] })).toBe('id');
    expect(integerKeyColumn({ primaryKey: ['id'], columns: [col('id', 23)] })).toBe('id');
    expect(integerKeyColumn({ primaryKey: ['id'], columns: [col('id', 2950)] })).toBeNull(); // uuid
    expect(integerKeyColumn({ primaryKey: ['a', 'b'], columns: [col('a', 23), col('b', 23)] })).toBeNull();
    expect(integerKeyColumn({ primaryKey: null, columns: [col('a', 23)] })).toBeNull();
  });
});
