/**
 * verify against real clusters: identical databases compare equal, and every
 * injected difference is found and located to its exact key.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { emptyScope, scopeFromFlags } from '../../src/config/scope.js';
import { UsageError } from '../../src/errors.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { nextDouble, richDatabase, runVerify, table, unequal } from './verify-helpers.js';

describe('verify: data and schema', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  let srcDb: string;
  let equalDb: string;
  let changedDb: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'vsrc' }), clusters.start({ name: 'vtgt' })]);
    // One load at a time per cluster: the fixture creates cluster-wide roles.
    [srcDb, equalDb] = await Promise.all([richDatabase(source), richDatabase(target)]);
    changedDb = await richDatabase(target);
    // The numeric-scale case needs a known value on the source: 1.0 here, 1.00 on the target.
    await source.query(`UPDATE shop.type_zoo SET n_free = 1.0 WHERE id = 40`, [], srcDb);
    await target.query(`UPDATE shop.type_zoo SET n_free = 1.0 WHERE id = 40`, [], equalDb);
    const [f8] = await source.query<{ f8: string }>(`SELECT f8::text AS f8 FROM shop.type_zoo WHERE id = 10`, [], srcDb);
    const bumped = nextDouble(f8!.f8);
    expect(bumped).not.toBe(f8!.f8);
    expect(bumped.slice(0, -2)).toBe(f8!.f8.slice(0, -2));
    await target.query(
      `DELETE FROM "ümlaut_schema"."Tabelle mit Leerzeichen" WHERE id = 7;
       DELETE FROM shop.events WHERE id = 500;
       INSERT INTO shop.events VALUES (999999, '2024-06-01 00:00:00.000001+00', 'click', NULL);
       UPDATE "Sales Data"."Order" SET "User" = NULL WHERE "select" = 2;
       UPDATE shop.documents SET content = set_byte(content, 500000, (get_byte(content, 500000) + 1) % 256) WHERE id = 1;
       UPDATE shop.type_zoo SET f8 = '${bumped}'::float8 WHERE id = 10;
       UPDATE shop.type_zoo SET tstz = tstz + interval '1 microsecond' WHERE id = 20;
       UPDATE shop.type_zoo SET js = jsonb_set(js, '{i}', '-1') WHERE id = 30;
       UPDATE shop.type_zoo SET n_free = 1.00 WHERE id = 40;
       UPDATE shop.audit_log SET message = 'changed' WHERE message = 'entry 7';
       CREATE INDEX bookings_room_extra ON shop.bookings (room);
       CREATE TABLE shop.leftover_copy (id int PRIMARY KEY);
       SELECT setval('shop.invoice_no', 1000, true);`,
      [],
      changedDb,
    );
  });

  it('finds two loads of the rich schema equal, table by table', async () => {
    // Chunks planned up front (no whole-table hash first): this is the chunk planner's test.
    const report = await runVerify(source, srcDb, target, equalDb, { wholeFirst: false });
    expect(unequal(report)).toEqual({});
    expect(report.status).toBe('equal');
    const db = report.databases[0]!;
    expect(db.tables.length).toBeGreaterThanOrEqual(18);
    expect(db.replication.active).toBe(false);
    // Chunked by a composite key over partitions, by a text key, and a keyless table as a whole.
    const events = table(report, 'shop', 'events');
    expect(events.method).toBe('chunked');
    expect(events.rowsSource).toBe(12000);
    expect(events.chunks).toBeGreaterThan(5);
    expect(table(report, 'shop', 'products').keyColumns).toEqual(['sku']);
    expect(table(report, 'shop', 'audit_log').method).toBe('whole-table');
    expect(table(report, 'shop', 'audit_log').rowsSource).toBe(303);
    // Inheritance: the parent's own rows only.
    expect(table(report, 'shop', 'vehicles').rowsSource).toBe(2);
    expect(table(report, 'Sales Data', 'Order').rowsSource).toBe(3);
    expect(db.sequences.find((s) => s.name === 'shop.invoice_no')).toMatchObject({ status: 'ok', sourceValue: '1777', targetValue: '1777' });
    expect(report.summary.rowDifferences).toBe(0);
    expect(report.summary.rowsCompared).toBe(18278);
  });

  it('locates every injected difference to its key, and nothing else', async () => {
    const report = await runVerify(source, srcDb, target, changedDb);
    expect(report.status).toBe('different');
    const diffs = Object.fromEntries(
      report.databases[0]!.tables.filter((t) => t.diffs.length).map((t) => [`${t.schema}.${t.name}`, t.diffs]),
    );
    expect(diffs).toEqual({
      'ümlaut_schema.Tabelle mit Leerzeichen': [{ kind: 'missing', key: { id: '7' } }],
      'shop.events': expect.arrayContaining([
        { kind: 'missing', key: { id: '500', happened: expect.stringMatching(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00$/) } },
        { kind: 'extra', key: { id: '999999', happened: '2024-06-01 00:00:00.000001+00' } },
      ]),
      'Sales Data.Order': [{ kind: 'different', key: { select: '2' } }],
      'shop.documents': [{ kind: 'different', key: { id: '1' } }],
      'shop.type_zoo': expect.arrayContaining([
        { kind: 'different', key: { id: '10' } },
        { kind: 'different', key: { id: '20' } },
        { kind: 'different', key: { id: '30' } },
        { kind: 'different', key: { id: '40' } },
      ]),
    });
    expect(table(report, 'shop', 'events').diffs).toHaveLength(2);
    expect(table(report, 'shop', 'type_zoo').diffs).toHaveLength(4);
    // A keyless table is reported as differing, without keys.
    const audit = table(report, 'shop', 'audit_log');
    expect(audit).toMatchObject({ status: 'different', method: 'whole-table', diffs: [], chunksDifferent: 1 });
    // The schema check sees the extra index; the sequence is behind.
    expect(table(report, 'shop', 'bookings').schemaDifferences).toEqual([
      { kind: 'index', object: 'bookings_room_extra on shop.bookings', message: 'index exists only on the target' },
    ]);
    const seq = report.databases[0]!.sequences.find((s) => s.name === 'shop.invoice_no');
    expect(seq).toMatchObject({ status: 'behind', sourceValue: '1777', targetValue: '1000' });
    const different = new Set(report.databases[0]!.tables.filter((t) => t.status !== 'equal').map((t) => `${t.schema}.${t.name}`));
    expect([...different].sort()).toEqual(
      ['Sales Data.Order', 'shop.audit_log', 'shop.bookings', 'shop.documents', 'shop.events', 'shop.type_zoo', 'ümlaut_schema.Tabelle mit Leerzeichen'].sort(),
    );
    expect(report.summary).toMatchObject({ rowDifferences: 9, schemaDifferences: 1, sequencesBehind: 1, tablesOnlyOnTarget: 1 });
    // A table the scope selects that exists on the target alone.
    expect(report.databases[0]!.tablesOnlyOnTarget).toEqual(['shop.leftover_copy']);
  });

  it('reports a table only on the target unless the scope leaves it out', async () => {
    const only = (r: Awaited<ReturnType<typeof runVerify>>) => r.databases[0]!.tablesOnlyOnTarget;
    const base = { sequences: false };
    // Left out by an exclusion pattern (a wildcard, since an exact name must exist on the source).
    let report = await runVerify(source, srcDb, target, changedDb, { ...base, scope: scopeFromFlags({ excludeTables: ['shop.leftover*'] }) });
    expect(only(report)).toEqual([]);
    // Outside the schemas an inclusion names.
    report = await runVerify(source, srcDb, target, changedDb, { ...base, scope: scopeFromFlags({ includeTables: ['"Sales Data".*'] }) });
    expect(only(report)).toEqual([]);
    expect(report.status).toBe('different'); // "Sales Data"."Order" differs
    report = await runVerify(source, srcDb, target, changedDb, { ...base, scope: scopeFromFlags({ includeTables: ['shop.leftover*', 'shop.products'] }) });
    expect(only(report)).toEqual(['shop.leftover_copy']);
    expect(report.databases[0]!.tables.map((t) => t.name)).toEqual(['products']);
    expect(report.status).toBe('different');
    // --tables checks the named tables only.
    report = await runVerify(source, srcDb, target, changedDb, { ...base, tables: ['shop.products'] });
    expect(only(report)).toEqual([]);
    expect(report.status).toBe('equal');
  });

  it('lists at most --max-diffs keys and says that more exist', async () => {
    const report = await runVerify(source, srcDb, target, changedDb, { maxDiffs: 2, tables: ['shop.type_zoo'], sequences: false });
    const zoo = table(report, 'shop', 'type_zoo');
    expect(zoo.diffs).toHaveLength(2);
    expect(zoo.diffsTruncated).toBe(true);
    expect(report.databases[0]!.tables).toHaveLength(1);
  });

  it('compares only the rows that match a table filter, and checks a --tables subset', async () => {
    const scope = scopeFromFlags({ tableFilter: ["shop.events:kind = 'buy'"] });
    const report = await runVerify(source, srcDb, target, changedDb, { scope, tables: ['shop.events', '"Sales Data".*'], sequences: false });
    expect(report.databases[0]!.tables.map((t) => `${t.schema}.${t.name}`).sort()).toEqual(['Sales Data.Order', 'shop.events']);
    const events = table(report, 'shop', 'events');
    expect(events.filter).toBe("kind = 'buy'");
    expect(events.rowsSource).toBe(4000);
    // Row 500 is a 'buy' row; the extra row 999999 is a 'click' and is out of scope.
    expect(events.diffs).toEqual([{ kind: 'missing', key: { id: '500', happened: expect.any(String) } }]);
  });

  it('uses the stored time-filter cutoff, and refuses a time filter without one', async () => {
    const scope = scopeFromFlags({ timeFilter: ['shop.events:happened:6 months'] });
    await expect(runVerify(source, srcDb, target, equalDb, { scope, tables: ['shop.events'] })).rejects.toThrow(UsageError);
    await expect(runVerify(source, srcDb, target, equalDb, { scope, tables: ['shop.events'] })).rejects.toThrow(/pgferry init/);
    const report = await runVerify(source, srcDb, target, equalDb, {
      scope,
      tables: ['shop.events'],
      cutoffs: { [srcDb]: { 'shop.events': '2024-01-01 00:00:00+00' } },
    });
    const events = table(report, 'shop', 'events');
    expect(events.status).toBe('equal');
    expect(events.filter).toBe(`"happened" >= '2024-01-01 00:00:00+00'::timestamptz`);
    const [{ n }] = (await source.query<{ n: string }>(`SELECT count(*)::text AS n FROM shop.events WHERE happened >= '2024-01-01'`, [], srcDb)) as [{ n: string }];
    expect(events.rowsSource).toBe(Number(n));
  });

  it('compares several databases, each with the target database of the same name', async () => {
    const sql = (v: string) => `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, '${v}' || i FROM generate_series(1, 100) i;`;
    await Promise.all([
      createDatabase(source, 'multi_a', sql('a')),
      createDatabase(source, 'multi_b', sql('b')),
      createDatabase(target, 'multi_a', sql('a')),
      createDatabase(target, 'multi_b', sql('b') + ` UPDATE t SET v = 'x' WHERE id = 5;`),
    ]);
    const scope = scopeFromFlags({ includeDatabases: ['multi_a', 'multi_b'] });
    const report = await runVerify(source, 'postgres', target, 'postgres', { scope });
    expect(report.databases.map((d) => [d.source, d.target, d.status])).toEqual([
      ['multi_a', 'multi_a', 'equal'],
      ['multi_b', 'multi_b', 'different'],
    ]);
    expect(report.databases[1]!.tables[0]!.diffs).toEqual([{ kind: 'different', key: { id: '5' } }]);
  });

  it('compares char(n) by its text on either side: padding never counts, a changed character does', async () => {
    const rows = `INSERT INTO t SELECT i, 'k' || i, 'v' || i FROM generate_series(1, 3000) i;`;
    const [s, t] = await Promise.all([
      createDatabase(source, 'bpchar_s', `CREATE TABLE t (id int PRIMARY KEY, a char(8), b char(12)); ${rows}`),
      createDatabase(target, 'bpchar_t', `CREATE TABLE t (id int PRIMARY KEY, a char(8), b text); ${rows}`),
    ]);
    // The column type differs (reported as a schema difference); the rows do not.
    const first = table(await runVerify(source, s, target, t, { chunkRows: 500 }), 'public', 't');
    expect(first.schemaDifferences.map((d) => d.object)).toEqual(['public.t.b']);
    expect(first.diffs).toEqual([]);
    await target.query(`UPDATE t SET a = 'k2x' WHERE id = 2; UPDATE t SET b = 'V2999' WHERE id = 2999`, [], t);
    const report = await runVerify(source, s, target, t, { chunkRows: 500 });
    expect(table(report, 'public', 't').diffs).toEqual([{ kind: 'different', key: { id: '2' } }, { kind: 'different', key: { id: '2999' } }]);
  });

  it('tells apart jsonb values that jsonb\'s own hash confuses, and finds equal ones equal', async () => {
    // jsonb_hash_extended() gives each pair on the left the same hash (checked on 15): it ignores
    // numeric scale and where a container ends, and XORs element hashes rotated one bit per
    // element, so two equal elements 32 apart cancel out and two elements 32 apart can swap.
    const arr = (first: number, at32: number) =>
      `(SELECT jsonb_agg(CASE WHEN i = 0 THEN ${first} WHEN i = 32 THEN ${at32} ELSE i END ORDER BY i) FROM generate_series(0, 40) i)`;
    const pairs = [
      [`'1.5'`, `'1.50'`],
      [`'[[1], 2]'`, `'[[1, 2]]'`],
      [`'[1]'`, `'1'`],
      [arr(7, 7), arr(8, 8)],
      [arr(100, 200), arr(200, 100)],
      // Equal as jsonb, written differently: key order, a unicode escape.
      [`'{"b": 1, "a": 2}'`, `'{"a": 2, "b": 1}'`],
      [`'"\\u00e9"'`, `'"é"'`],
    ];
    const load = (side: 0 | 1) =>
      `CREATE TABLE j (id int PRIMARY KEY, doc jsonb); INSERT INTO j VALUES ${pairs.map((p, i) => `(${i + 1}, ${p[side]}::jsonb)`).join(', ')};`;
    const [s, t] = await Promise.all([createDatabase(source, 'jsonb_s', load(0)), createDatabase(target, 'jsonb_t', load(1))]);
    const [hashes] = await source.query<{ same: number }>(
      `SELECT count(*) FILTER (WHERE jsonb_hash_extended(a, 0) = jsonb_hash_extended(b, 0))::int AS same
         FROM (VALUES ${pairs.map((p) => `(${p[0]}::jsonb, ${p[1]}::jsonb)`).join(', ')}) v(a, b)`,
      [],
      s,
    );
    expect(hashes!.same).toBe(pairs.length);
    const report = table(await runVerify(source, s, target, t), 'public', 'j');
    expect(report.diffs).toEqual([1, 2, 3, 4, 5].map((id) => ({ kind: 'different', key: { id: String(id) } })));
  });

  it('cuts a small table with sampled keys into chunks every time (a page sample of few pages can come back empty)', async () => {
    // Sparse integer keys (sampled, not bucketed), about 50 pages: a 3 % page sample picks none about one time in five.
    const sql = `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT i * 1000 FROM generate_series(1, 12000) i; ANALYZE t;`;
    const [s, t] = await Promise.all([createDatabase(source, 'sample_s', sql), createDatabase(target, 'sample_t', sql)]);
    for (let i = 0; i < 10; i++) {
      const r = table(await runVerify(source, s, target, t, { chunkRows: 500, wholeFirst: false }), 'public', 't');
      expect(r.status).toBe('equal');
      expect(r.chunks).toBeGreaterThan(5);
    }
  });

  it('refuses a filter PostgreSQL cannot plan, naming the table, before comparing anything', async () => {
    const scope = scopeFromFlags({ tableFilter: ['shop.events:kind = = 1'] });
    const err = await runVerify(source, srcDb, target, equalDb, { scope }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/^the row filter of shop\.events \(kind = = 1\) is not valid: syntax error/);
  });

  it('reports schema drift of every kind, table by table, and nothing for the tables that match', async () => {
    const common = `CREATE SCHEMA drift;
      CREATE TABLE drift.same (id int PRIMARY KEY, v text NOT NULL, CHECK (length(v) < 100));
      CREATE INDEX same_v ON drift.same (v);
      INSERT INTO drift.same SELECT g, 'v' || g FROM generate_series(1, 50) g;`;
    const src = await createDatabase(source, undefined, `${common}
      CREATE TABLE drift.typed (id int PRIMARY KEY, n int, m int NOT NULL);
      CREATE TABLE drift.checked (id int PRIMARY KEY, x int CHECK (x > 0));
      CREATE TABLE drift.indexed (id int PRIMARY KEY, a int, b int);
      CREATE INDEX indexed_ab ON drift.indexed (a, b);
      CREATE TABLE drift.gone (id int PRIMARY KEY);
      CREATE TABLE drift.narrower (id int PRIMARY KEY, extra text);`);
    const tgt = await createDatabase(target, undefined, `${common}
      CREATE TABLE drift.typed (id int PRIMARY KEY, n bigint, m int);
      CREATE TABLE drift.checked (id int PRIMARY KEY, x int CHECK (x > 1));
      CREATE TABLE drift.indexed (id int PRIMARY KEY, a int, b int);
      CREATE INDEX indexed_ab ON drift.indexed (b, a);
      CREATE TABLE drift.narrower (id int PRIMARY KEY);`);
    const report = await runVerify(source, src, target, tgt, { sequences: false });
    const drift = Object.fromEntries(report.databases[0]!.tables.map((t) => [t.name, t.schemaDifferences.map((d) => `${d.kind}: ${d.object}: ${d.message}`).sort()]));
    expect(drift).toEqual({
      same: [],
      typed: [
        'column: drift.typed.m: NOT NULL on the source only',
        'column: drift.typed.n: type integer on the source, bigint on the target',
      ],
      checked: ['constraint: checked_x_check on drift.checked: definition differs: source "c CHECK (x > 0)", target "c CHECK (x > 1)"'],
      indexed: [
        'index: indexed_ab on drift.indexed: definition differs: source "CREATE INDEX indexed_ab ON drift.indexed USING btree (a, b)", target "CREATE INDEX indexed_ab ON drift.indexed USING btree (b, a)"',
      ],
      gone: ['table: drift.gone: table is missing on the target'],
      narrower: ['column: drift.narrower.extra: column is missing on the target'],
    });
    // The matching table's rows were compared with the columns its digest vouched for.
    expect(table(report, 'drift', 'same')).toMatchObject({ status: 'equal', rowsSource: 50 });
  });

  it('keeps apart two tables whose schema and name join to the same dotted text', async () => {
    const sql = `CREATE SCHEMA "a.b"; CREATE SCHEMA a;
      CREATE TABLE "a.b".c (id int PRIMARY KEY, x text);
      CREATE TABLE a."b.c" (k bigint PRIMARY KEY, y int, z int);
      INSERT INTO "a.b".c SELECT g, 'x' || g FROM generate_series(1, 30) g;
      INSERT INTO a."b.c" SELECT g, g, g FROM generate_series(1, 40) g;`;
    const [src, tgt] = await Promise.all([createDatabase(source, undefined, sql), createDatabase(target, undefined, sql)]);
    await target.query(`UPDATE a."b.c" SET z = 0 WHERE k = 7`, [], tgt);
    const report = await runVerify(source, src, target, tgt, { sequences: false });
    const dotted = table(report, 'a.b', 'c');
    const other = table(report, 'a', 'b.c');
    expect(dotted).toMatchObject({ status: 'equal', rowsSource: 30, notes: [], schemaDifferences: [] });
    expect(other).toMatchObject({ status: 'different', rowsSource: 40, notes: [], schemaDifferences: [], diffs: [{ kind: 'different', key: { k: '7' } }] });
  });

  it('rejects a --tables name that is not in scope', async () => {
    await expect(runVerify(source, srcDb, target, equalDb, { scope: emptyScope(), tables: ['shop.nope'] })).rejects.toThrow(/shop\.nope/);
  });
});
