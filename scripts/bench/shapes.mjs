/**
 * Data shapes real schemas are full of, one table (or group) each, for the
 * verify and init benchmarks. Deterministic, so two loads are equal row for
 * row. Scale 1 ≈ 1.5 GB in all.
 */

export const SHAPES = {
  narrow: { tables: ['public.narrow_accounts'], what: 'pgbench_accounts: aid int key, bid, abalance, filler char(84)' },
  jsonb: { tables: ['public.wide_jsonb'], what: 'bigint key, one jsonb document of ~330 bytes' },
  toast: { tables: ['public.toast_bytea'], what: 'int key, 96 KB incompressible bytea (TOASTed)' },
  keyless: { tables: ['public.keyless_rows'], what: 'no key: int, text, timestamptz' },
  small: { tables: [], schema: 'shapes_small', what: '200 tables of 1 000 rows (int key, text)' },
  partitions: { tables: ['public.part_events'], what: '8 range partitions under one root, bigint key, date, int, text' },
  // Loaded after the others' VACUUM ANALYZE and never vacuumed: under 50 rows written, autovacuum never analyses a
  // table, so lookup tables like these keep reltuples -1 for good (a cost the analysed shapes cannot show).
  many: { tables: [], schema: 'shapes_many', analysed: false, what: '3 000 tables of 20 rows (int key, int, text, timestamptz, numeric, boolean), never analysed' },
};

const n = (x, scale) => Math.max(100, Math.round(x * scale));

const SQL = {
  narrow: (scale) => `
CREATE TABLE narrow_accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84));
INSERT INTO narrow_accounts SELECT i, 1 + i / 100000, (i * 7) % 1000 - 500, '' FROM generate_series(1, ${n(4_000_000, scale)}) i;`,
  jsonb: (scale) => `
CREATE TABLE wide_jsonb (id bigint PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO wide_jsonb SELECT i, jsonb_build_object('name', md5(i::text), 'n', i, 'price', (i % 10000) / 100.0,
    'tags', jsonb_build_array(i % 7, i % 11, md5((i * 3)::text)), 'nested', jsonb_build_object('a', i % 100, 'b', left(md5((i * 5)::text), 12), 'c', md5((i * 9)::text)),
    'note', repeat(left(md5((i * 13)::text), 16), 6))
  FROM generate_series(1, ${n(2_000_000, scale)}) i;`,
  toast: (scale) => `
CREATE TABLE toast_bytea (id int PRIMARY KEY, body bytea NOT NULL);
INSERT INTO toast_bytea SELECT i, (SELECT decode(string_agg(md5(i::text || '.' || j::text), ''), 'hex') FROM generate_series(1, 6144) j)
  FROM generate_series(1, ${n(2_000, scale)}) i;`,
  keyless: (scale) => `
CREATE TABLE keyless_rows (a int, b text, c timestamptz);
INSERT INTO keyless_rows SELECT i % 1000, md5(i::text), '2021-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, ${n(1_000_000, scale)}) i;`,
  small: () => `
CREATE SCHEMA shapes_small;
${Array.from({ length: 200 }, (_, i) => {
    const t = `shapes_small.t${String(i + 1).padStart(3, '0')}`;
    return `CREATE TABLE ${t} (id int PRIMARY KEY, v text NOT NULL); INSERT INTO ${t} SELECT i, md5((i * ${i + 3})::text) FROM generate_series(1, 1000) i;`;
  }).join('\n')}`,
  // 100 tables to a transaction: a multi-statement query is one transaction, and 3 000 tables' locks overflow the lock table.
  many: () => `
CREATE SCHEMA shapes_many;
${Array.from({ length: 3000 }, (_, i) => {
    const t = `shapes_many.t${String(i + 1).padStart(4, '0')}`;
    const table = `CREATE TABLE ${t} (id int PRIMARY KEY, a int, b text, c timestamptz, d numeric, e boolean); INSERT INTO ${t} SELECT g, g * ${i + 7}, md5((g * ${i + 3})::text), '2024-01-01'::timestamptz + g * interval '1 hour', g / 3.0, g % 2 = 0 FROM generate_series(1, 20) g;`;
    return `${i % 100 === 0 ? 'BEGIN; ' : ''}${table}${i % 100 === 99 ? ' COMMIT;' : ''}`;
  }).join('\n')}`,
  partitions: (scale) => {
    const step = n(2_000_000, scale) / 8;
    const parts = Array.from({ length: 8 }, (_, i) =>
      `CREATE TABLE part_events_${i + 1} PARTITION OF part_events FOR VALUES FROM (${Math.round(i * step) + 1}) TO (${i === 7 ? 'MAXVALUE' : Math.round((i + 1) * step) + 1});`).join('\n');
    return `
CREATE TABLE part_events (id bigint PRIMARY KEY, at date NOT NULL, v int, note text) PARTITION BY RANGE (id);
${parts}
INSERT INTO part_events SELECT i, '2020-01-01'::date + i % 2000, i % 977, 'event ' || md5(i::text) FROM generate_series(1, ${n(2_000_000, scale)}) i;`;
  },
};

/** The SQL that creates and fills one shape. */
export function shapeSql(name, scale) {
  const f = SQL[name];
  if (!f) throw new Error(`unknown shape ${name} (one of ${Object.keys(SHAPES).join(', ')})`);
  return f(scale);
}

/** Whether a shape is vacuumed and analysed after loading (SHAPES[name].analysed, default true). */
export function analysedShape(name) {
  return SHAPES[name]?.analysed !== false;
}

/** Every shape in one database: `analysed` true, those loaded before the VACUUM ANALYZE; false, those loaded after it. */
export function shapesSql(scale, analysed = true) {
  return Object.keys(SHAPES).filter((name) => analysedShape(name) === analysed).map((name) => shapeSql(name, scale)).join('\n');
}
