/**
 * The copy engine against real clusters: a PostgreSQL 15 source and a 17
 * target. Every test creates its tables on both sides, exports a snapshot on
 * a held source connection and checks what arrived on the target.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyRules, resolveTables, type ScopeTable } from '../../src/config/scope.js';
import { InterruptedError, OperationError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { CANONICAL_SETTINGS, connect } from '../../src/postgres/connect.js';
import type { ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { copyTables } from '../../src/pipeline/init/copy.js';
import { copyPart } from '../../src/pipeline/init/copy-part.js';
import { planCopy, type CopyTableInput } from '../../src/pipeline/init/copy-plan.js';
import { sampleReadRate } from '../../src/pipeline/init/sample-rate.js';
import { COPY_APPLICATION_NAME, openCopySession } from '../../src/pipeline/init/copy-session.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { startLoad, type Writer } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'copysrc' }), clusters.startMajor(17, { name: 'copytgt' })]);
});

/** A source connection holding an exported snapshot; `rows()` reads as of that snapshot. */
interface Held {
  snapshot: string;
  client: pg.Client;
  release(): Promise<void>;
}
const held: Held[] = [];
afterAll(async () => {
  await Promise.all(held.map((h) => h.release()));
});

async function exportSnapshot(conn: ResolvedConnInfo): Promise<Held> {
  const client = await connect(conn, { settings: CANONICAL_SETTINGS });
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  const { rows } = await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
  const h: Held = {
    snapshot: rows[0]!.s,
    client,
    release: async () => {
      await client.query('ROLLBACK').catch(() => {});
      await client.end().catch(() => {});
    },
  };
  held.push(h);
  return h;
}

/** Two databases with the same DDL, one per cluster. */
async function pair(ddl: string, targetDdl = ddl): Promise<{ s: ResolvedConnInfo; t: ResolvedConnInfo; db: string }> {
  const db = await createDatabase(src);
  await createDatabase(tgt, db);
  await src.query(ddl, undefined, db);
  await tgt.query(targetDdl, undefined, db);
  return { s: src.conn(db), t: tgt.conn(db), db };
}

async function rowsOf(client: pg.Client, table: string, order = 'id'): Promise<string[]> {
  const { rows } = await client.query<{ r: string }>(`SELECT _row_::text AS r FROM ONLY ${table} _row_ ORDER BY ${order}, _row_::text`);
  return rows.map((r) => r.r);
}

async function withCanonical<T>(conn: ResolvedConnInfo, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await connect(conn, { settings: CANONICAL_SETTINGS });
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const targetRows = (t: ResolvedConnInfo, table: string, order = 'id') => withCanonical(t, (c) => rowsOf(c, table, order));

async function scopeTables(conn: ResolvedConnInfo): Promise<ScopeTable[]> {
  return withCanonical(conn, async (c) => (await resolveTables(c, conn.dbname, emptyRules())).tables);
}

function input(tables: ScopeTable[], name: string, filter?: string): CopyTableInput {
  const table = tables.find((t) => t.name === name);
  if (!table) throw new Error(`no table ${name}`);
  return { table, filter };
}

/** Sessions of the copy engine still connected on a server (open transactions included). */
async function copyBackends(c: LocalCluster): Promise<number> {
  const rows = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [COPY_APPLICATION_NAME]);
  return rows[0]!.n;
}

async function eventually(fn: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return fn();
}

/** Insert, update and delete on the source until stopped; returns how many rounds ran. */
function writer(conn: ResolvedConnInfo, table: string, maxId: number): Writer {
  return startLoad(conn, async (c, n) => {
    const id = 1 + Math.floor(Math.random() * maxId);
    await c.query(`INSERT INTO ${table} (id, v) VALUES ($1, 'new') ON CONFLICT DO NOTHING`, [maxId + 1 + n]);
    await c.query(`UPDATE ${table} SET v = v || 'u' WHERE id = $1`, [id]);
    await c.query(`DELETE FROM ${table} WHERE id = $1`, [id + 1]);
  }, { transaction: false });
}

/** Live tuples of a target table and how many of them are not frozen (HEAP_XMIN_FROZEN = 0x0300 in t_infomask). */
async function unfrozen(db: string, table: string): Promise<{ tuples: number; unfrozen: number }> {
  const [r] = await tgt.query<{ tuples: number; unfrozen: number }>(
    `SELECT count(*)::int AS tuples, count(*) FILTER (WHERE (i.t_infomask & 768) <> 768)::int AS unfrozen
       FROM generate_series(0, pg_relation_size($1::regclass) / current_setting('block_size')::int - 1) AS b,
            heap_page_items(get_raw_page($1::text, b::int)) AS i
      WHERE i.lp_flags = 1`, [table], db);
  return r!;
}

const TYPES_DDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE safe_types (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  n numeric(20,6), n_any numeric, ts timestamptz, t timestamp, d date, tm time, iv interval,
  ia int[], ta text[], j jsonb, js json, b bytea, m mood, p posint, r int4range, tr tstzrange, fr floatrange,
  u uuid, ip inet, net cidr, mac macaddr, cash money, f8 float8, f4 real, bo boolean, tx text, ch char(5),
  vc varchar(10), x xml, bits bit varying(8), tsv tsvector, pt point,
  doubled bigint GENERATED ALWAYS AS (p * 2) STORED
);
CREATE TABLE rich_types (
  id int PRIMARY KEY, c pair, ma mood[], pa posint[], ca pair[], rc regclass, mr int4multirange, note text
);`;

const TYPES_DATA = `
INSERT INTO safe_types (n, n_any, ts, t, d, tm, iv, ia, ta, j, js, b, m, p, r, tr, fr, u, ip, net, mac, cash, f8, f4, bo, tx, ch, vc, x, bits, tsv, pt)
VALUES
  (12345678901234.123456, 'NaN', '2024-02-29 12:34:56.123456+05:30', '2024-02-29 23:59:59.999999', '2000-01-01', '12:00:00.000001',
   '1 year 2 mons 3 days 04:05:06.789012', '{1,NULL,3}', '{"a b","c,d","","e\\"f",NULL}', '{"k": [1, 2.5, "ü", null], "n": {"x": true}}',
   '{"dup": 1, "dup": 2}', (SELECT string_agg(decode(md5(g::text), 'hex'), ''::bytea) FROM generate_series(1, 100000) g),
   'happy', 7, '[1,10)', '[2024-01-01 00:00:00.5+00,infinity)', '[0.5,1e300]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '192.168.1.5/24', '10.0.0.0/8', '08:00:2b:01:02:03', 12345.67, 'NaN', 'Infinity', true,
   E'tab\\there\\nnewline \\\\ back "quote" ünï€😀', 'ab', 'x', '<a>ü</a>', B'1011', 'fat:1 cat:2', '(1.5,-2)'),
  (-0.000001, 1e-300, 'infinity', '-infinity', '4713-01-01 BC', '00:00', '-1 day +02:00:00.5', '{}', '{}', '[]', 'null', '\\x', 'sad', 1,
   'empty', NULL, NULL, '00000000-0000-0000-0000-000000000000', '::1', '::/0', NULL, -0.01, '-Infinity', 0.1, false, '', '', '', NULL, B'', '', NULL),
  (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   1.0000000000000002, 3.4028235e38, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO rich_types VALUES
  (1, ROW(1, 'x,y'), '{happy,sad}', '{1,2}', ARRAY[ROW(1, 'a')::pair, ROW(NULL, NULL)::pair], 'safe_types', '{[1,3),[5,7)}', E'line\\nbreak'),
  (2, NULL, '{}', NULL, NULL, 'pg_class', '{}', NULL);`;

describe('copy engine (15 → 17)', () => {
  it('carries every type intact, in binary where portable and in text otherwise', async () => {
    // An extra type on the target first, so that user type OIDs differ between the sides as they do in real life.
    const { s, t } = await pair(TYPES_DDL, `CREATE TYPE shift_oids AS ENUM ('x'); ${TYPES_DDL}`);
    await src.query(TYPES_DATA, undefined, s.dbname);
    // Identity values come from the source, not from the target's sequence.
    await src.query('DELETE FROM safe_types WHERE id = 1', undefined, s.dbname);
    await src.query(TYPES_DATA.slice(0, TYPES_DATA.indexOf('INSERT INTO rich_types')), undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const plans = await withCanonical(s, (c) =>
      planCopy(c, [input(tables, 'safe_types'), input(tables, 'rich_types')], { sourceMajor: src.major, targetMajor: tgt.major }),
    );
    const [safe, rich] = plans;
    expect(safe!.format).toBe('binary');
    expect(rich!.format).toBe('text');
    // The generated column is left out (the target computes it); the identity column is copied.
    expect(safe!.columns).not.toContain('doubled');
    expect(safe!.columns).toContain('id');

    const expectedSafe = await rowsOf(h.client, 'safe_types');
    const expectedRich = await rowsOf(h.client, 'rich_types');
    expect(expectedSafe).toHaveLength(5);
    expect(expectedSafe.some((r) => r.length > 2_000_000)).toBe(true); // bytea > 1 MB (hex)

    const session = await openCopySession(s, t, h.snapshot);
    try {
      // The test target runs with synchronous_commit = off: a part's COMMIT is made durable all the same.
      expect((await session.target.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit).toBe('local');
      for (const format of ['binary', 'text'] as const) {
        const res = await copyPart(session, safe!.parts[0]!, { columns: safe!.columns, format, truncateAndFreeze: true });
        expect(res.rows).toBe(5);
        expect(res.bytes).toBeGreaterThan(1_000_000);
        expect(await targetRows(t, 'safe_types'), `${format} copy`).toEqual(expectedSafe);
      }
      const r = await copyPart(session, rich!.parts[0]!, { columns: rich!.columns, format: rich!.format, truncateAndFreeze: true });
      expect(r.rows).toBe(2);
      expect(await targetRows(t, 'rich_types')).toEqual(expectedRich);
      // Why the choice matters: binary regclass is a raw OID, which names another relation (or none) on the target.
      await copyPart(session, rich!.parts[0]!, { columns: ['id', 'rc'], format: 'binary', truncateAndFreeze: true });
      const [viaBinary] = await tgt.query<{ rc: string }>('SELECT rc::text AS rc FROM rich_types WHERE id = 1', undefined, t.dbname);
      expect(viaBinary!.rc).not.toBe('safe_types');
      // A failure inside a part (here on the target: a value too long for its column) breaks the session.
      await tgt.query('ALTER TABLE rich_types ALTER note TYPE varchar(3)', undefined, t.dbname);
      await expect(
        copyPart(session, rich!.parts[0]!, { columns: rich!.columns, format: 'text', truncateAndFreeze: true }),
      ).rejects.toThrow(/copying public\.rich_types \(target, SQLSTATE 22001\)/);
      expect(session.broken).toBe(true);
    } finally {
      await session.close();
    }
    // The failed part rolled back: the binary copy's rows are still there.
    expect(await tgt.query('SELECT id FROM rich_types ORDER BY id', undefined, t.dbname)).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('copies the snapshot, not the writes after it; unsplit tables are TRUNCATEd and loaded FROZEN', async () => {
    const ddl = `CREATE TABLE items (id int PRIMARY KEY, v text);
                 CREATE TABLE other (id int PRIMARY KEY, v text);`;
    const { s, t } = await pair(ddl);
    await src.query(`INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
                     INSERT INTO other SELECT g, 'o' FROM generate_series(1, 100) g`, undefined, s.dbname);
    // Leftovers on the target must be replaced, not added to.
    await tgt.query(`INSERT INTO items VALUES (-1, 'stale'); CREATE EXTENSION pageinspect`, undefined, t.dbname);
    const h = await exportSnapshot(s);
    const expected = await rowsOf(h.client, 'items');
    const w = writer(s, 'items', 20000);
    await new Promise((r) => setTimeout(r, 100));
    const tables = await scopeTables(s);
    const events: string[] = [];
    const done: string[] = [];
    const report = await copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 2, sourceMajor: src.major, targetMajor: tgt.major,
      tables: [input(tables, 'other'), input(tables, 'items')],
      progress: (e) => events.push(`${e.kind}:${'id' in e ? e.id : ''}`),
      onPartDone: (p, part) => {
        done.push(part.id);
      },
    });
    const writes = await w.stop();
    expect(writes).toBeGreaterThan(0);
    const now = await withCanonical(s, (c) => rowsOf(c, 'items'));
    expect(now).not.toEqual(expected); // the writer did change the source
    expect(await targetRows(t, 'items')).toEqual(expected);
    expect(report.tables.map((r) => [r.key, r.rows])).toEqual([['public.other', 100], ['public.items', 20000]]);
    expect(done.sort()).toEqual(['public.items#0', 'public.other#0']);
    expect(events).toContain('start:copy/public.items');
    expect(events).toContain('end:copy/public.items');
    expect(await unfrozen(t.dbname, 'items')).toEqual({ tuples: 20000, unfrozen: 0 });
    expect(await copyBackends(src)).toBe(0);
    expect(await copyBackends(tgt)).toBe(0);
  });

  it('copies small tables in groups, one target transaction each, FROZEN where truncated; a failure rolls back its whole group', async () => {
    const names = ['g1', 'g2', 'g3', 'g4', 'g5', 'g6'];
    const ddl = names.map((n) => `CREATE TABLE ${n} (id int PRIMARY KEY, v int);`).join('\n');
    // g4 refuses every row on the target: with one job and six small tables, the groups are (g1 g2) (g3 g4) (g5 g6).
    const { s, t } = await pair(ddl, ddl.replace('CREATE TABLE g4 (id int PRIMARY KEY, v int)', 'CREATE TABLE g4 (id int PRIMARY KEY, v int CHECK (v < 0))'));
    await src.query(names.map((n, i) => `INSERT INTO ${n} SELECT g, g FROM generate_series(1, ${100 + i}) g;`).join('\n'), undefined, s.dbname);
    // g1 and g2 hold a stale row on the target, so they are truncated (and loaded frozen); the others have no
    // page yet, as init's schema step leaves them, and are loaded without TRUNCATE.
    await tgt.query('CREATE EXTENSION pageinspect; INSERT INTO g1 VALUES (-1, -1); INSERT INTO g2 VALUES (-1, -1)', undefined, t.dbname);
    const filenode = async (table: string) => (await tgt.query<{ f: string }>('SELECT pg_relation_filenode($1::regclass)::text AS f', [table], t.dbname))[0]!.f;
    const initialFiles = { g1: await filenode('g1'), g3: await filenode('g3'), g5: await filenode('g5') };
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const done: string[] = [];
    const err = await copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 1, sourceMajor: src.major, targetMajor: tgt.major,
      tables: names.map((n) => input(tables, n)),
      onTableDone: (p) => {
        done.push(p.table.name);
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(/copying public\.g4 \(target, SQLSTATE 23514\)/);
    // The first group committed and was reported; g3, copied before g4 in the same transaction, was rolled back with it.
    expect(done).toEqual(['g1', 'g2']);
    expect((await targetRows(t, 'g1')).length).toBe(100);
    expect((await targetRows(t, 'g2')).length).toBe(101);
    expect(await targetRows(t, 'g3')).toEqual([]);
    expect(await targetRows(t, 'g5')).toEqual([]);
    // One transaction for the group (the same inserting xid on both tables), and COPY FREEZE within it.
    const xmins = async (table: string) =>
      (await tgt.query<{ x: string }>(`SELECT DISTINCT t_xmin::text AS x FROM heap_page_items(get_raw_page($1, 0)) WHERE lp_flags = 1`, [table], t.dbname)).map((r) => r.x);
    expect(await xmins('g1')).toHaveLength(1);
    expect(await xmins('g1')).toEqual(await xmins('g2'));
    expect(await unfrozen(t.dbname, 'g2')).toEqual({ tuples: 101, unfrozen: 0 });
    expect(await filenode('g1')).not.toBe(initialFiles.g1);
    expect(await filenode('g3')).toBe(initialFiles.g3); // loaded without TRUNCATE, then rolled back: dead rows only

    // Without the failing constraint every group commits, and a run over a partly loaded target replaces, not adds.
    await tgt.query('ALTER TABLE g4 DROP CONSTRAINT g4_v_check', undefined, t.dbname);
    const report = await copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 1, sourceMajor: src.major, targetMajor: tgt.major,
      tables: names.map((n) => input(tables, n)),
    });
    expect(report.tables.map((r) => r.rows)).toEqual([100, 101, 102, 103, 104, 105]);
    for (const [i, n] of names.entries()) expect((await targetRows(t, n)).length).toBe(100 + i);
    expect(await xmins('g5')).toEqual(await xmins('g6'));
    expect(await xmins('g5')).not.toEqual(await xmins('g3'));
    // g5 never had a page: loaded in place, not frozen. g3 held the dead rows of the rolled-back attempt: truncated first.
    expect(await filenode('g5')).toBe(initialFiles.g5);
    expect(await unfrozen(t.dbname, 'g5')).toEqual({ tuples: 104, unfrozen: 104 });
    expect(await filenode('g3')).not.toBe(initialFiles.g3);
    expect(await unfrozen(t.dbname, 'g3')).toEqual({ tuples: 102, unfrozen: 0 });
    expect(await copyBackends(tgt)).toBe(0);
  });

  it('reads the next table of a group on the source while the target loads this one; a failure of that read is the source\'s', async () => {
    const names = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6'];
    const ddl = names.map((n) => `CREATE TABLE ${n} (id int PRIMARY KEY, v int);`).join('\n');
    const { s, t } = await pair(ddl, ddl);
    await src.query(names.map((n) => `INSERT INTO ${n} SELECT g, g FROM generate_series(1, 3000) g;`).join('\n'), undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const base = { source: s, target: t, snapshot: h.snapshot, jobs: 1, sourceMajor: src.major, targetMajor: tgt.major };
    // Groups (q1 q2) (q3 q4) (q5 q6). q4's read is queued behind q3's and runs while q3's rows go into the
    // target: a read that fails at once (an unknown column) has failed before it is piped, one that fails after
    // some rows (division by zero) while it is. Either way the failure is the source's.
    for (const [filter, code] of [['no_such_column > 0', '42703'], ['100 / (2000 - id) IS NOT NULL', '22012']] as const) {
      const err = await copyTables({ ...base, tables: names.map((n) => input(tables, n, n === 'q4' ? filter : undefined)) }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OperationError);
      expect((err as Error).message).toMatch(new RegExp(`copying public\\.q4 \\(source, SQLSTATE ${code}\\)`));
      expect((await targetRows(t, 'q2')).length).toBe(3000);
      expect(await targetRows(t, 'q3')).toEqual([]); // its group was rolled back
      expect(await eventually(async () => (await copyBackends(src)) === 0 && (await copyBackends(tgt)) === 0)).toBe(true);
    }
    // Every table of a group read ahead arrives whole, each into its own table.
    const report = await copyTables({ ...base, tables: names.map((n) => input(tables, n, n === 'q5' ? 'id % 2 = 0' : undefined)) });
    expect(report.tables.map((r) => r.rows)).toEqual([3000, 3000, 3000, 3000, 1500, 3000]);
    for (const n of names) {
      const [a, b] = await Promise.all([
        src.query<{ h: string }>(`SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS h FROM ${n}${n === 'q5' ? ' WHERE id % 2 = 0' : ''}`, [], s.dbname),
        tgt.query<{ h: string }>(`SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS h FROM ${n}`, [], t.dbname),
      ]);
      expect(b[0]!.h).toBe(a[0]!.h);
    }
    expect(await copyBackends(tgt)).toBe(0);
  });

  it('a snapshot that is gone stops the copy before any row, and neither side keeps a session (both open at once)', async () => {
    const { s, t } = await pair('CREATE TABLE a (id int PRIMARY KEY)', 'CREATE TABLE a (id int PRIMARY KEY)');
    await src.query('INSERT INTO a SELECT generate_series(1, 10)', undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const snapshot = h.snapshot;
    await h.release();
    const err = await copyTables({ source: s, target: t, snapshot, jobs: 2, sourceMajor: src.major, targetMajor: tgt.major, tables: [input(tables, 'a')] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(new RegExp(`cannot import snapshot ${snapshot} on the source: the connection that exported it is gone`));
    expect(await eventually(async () => (await copyBackends(src)) === 0 && (await copyBackends(tgt)) === 0)).toBe(true);
    expect(await targetRows(t, 'a')).toEqual([]);
  });

  it('splits by CTID and by integer key: the parts together are exactly the table, under concurrent writes', async () => {
    const ddl = 'CREATE TABLE big (id int PRIMARY KEY, v text)';
    // No key on the target: a row copied twice would show up in the comparison.
    const { s, t } = await pair(ddl, 'CREATE TABLE big (id int, v text); CREATE EXTENSION pageinspect');
    await src.query(`INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 30000) g`, undefined, s.dbname);
    const h = await exportSnapshot(s);
    const expected = await rowsOf(h.client, 'big');
    const tables = await scopeTables(s);
    const w = writer(s, 'big', 30000);
    try {
      for (const sourceMajor of [src.major, 13]) {
        const report = await copyTables({
          source: s, target: t, snapshot: h.snapshot, jobs: 3, sourceMajor, targetMajor: tgt.major,
          splitThresholdBytes: 512 * 1024, maxParts: 6, tables: [input(tables, 'big')],
        });
        const parts = report.tables[0]!.parts;
        expect(parts.length, `source major ${sourceMajor}`).toBe(6);
        expect(parts.every((p) => p.rows > 0)).toBe(true);
        expect(report.tables[0]!.rows).toBe(30000);
        expect(await targetRows(t, 'big'), `source major ${sourceMajor}`).toEqual(expected);
      }
    } finally {
      await w.stop();
    }
    // The plan says which kind of ranges it used.
    const plans = await withCanonical(s, async (c) => [
      await planCopy(c, [input(tables, 'big')], { sourceMajor: 15, targetMajor: 17, splitThresholdBytes: 512 * 1024, maxParts: 6 }),
      await planCopy(c, [input(tables, 'big')], { sourceMajor: 13, targetMajor: 17, splitThresholdBytes: 512 * 1024, maxParts: 6 }),
    ]);
    expect(plans[0]![0]!.parts.map((p) => p.range?.kind)).toEqual(Array(6).fill('ctid'));
    expect(plans[1]![0]!.parts.map((p) => p.range?.kind)).toEqual(Array(6).fill('key'));
    // Split parts are separate transactions without FREEZE.
    expect((await unfrozen(t.dbname, 'big')).unfrozen).toBe(30000);
  });

  it('copies a partitioned table through its leaves, and applies filters on the source', async () => {
    const ddl = `
      CREATE TABLE events (id int, at date, v text) PARTITION BY RANGE (at);
      CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
      CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (v);
      CREATE TABLE "events_2024 a" PARTITION OF events_2024 FOR VALUES IN ('a');
      CREATE TABLE events_2024_rest PARTITION OF events_2024 DEFAULT;
      CREATE TABLE "Mixed Case" (id int PRIMARY KEY, "Select" text);
      CREATE TABLE parent_tbl (id int PRIMARY KEY, v text);
      CREATE TABLE child_tbl (extra int) INHERITS (parent_tbl);`;
    const { s, t } = await pair(ddl);
    await src.query(`
      INSERT INTO events SELECT g, DATE '2023-06-01' + (g % 400), CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 3000) g;
      INSERT INTO "Mixed Case" SELECT g, 'v' || g FROM generate_series(1, 300) g;
      INSERT INTO parent_tbl VALUES (1, 'parent');
      INSERT INTO child_tbl VALUES (2, 'child', 5);`, undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const report = await copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 2, sourceMajor: src.major, targetMajor: tgt.major,
      tables: [input(tables, 'events'), input(tables, 'Mixed Case', `"Select" LIKE '%7' AND id > 100 -- a comment`), input(tables, 'parent_tbl'), input(tables, 'child_tbl')],
    });
    const ev = report.tables.find((r) => r.name === 'events')!;
    expect(ev.parts.map((p) => p.id).sort()).toEqual(['public."events_2024 a"#0', 'public.events_2023#0', 'public.events_2024_rest#0']);
    expect(ev.rows).toBe(3000);
    for (const leaf of ['events_2023', '"events_2024 a"', 'events_2024_rest']) {
      expect(await targetRows(t, leaf), leaf).toEqual(await rowsOf(h.client, leaf));
    }
    expect(await tgt.query('SELECT id FROM events', undefined, t.dbname)).toHaveLength(3000);
    expect(await targetRows(t, '"Mixed Case"')).toEqual(
      (await rowsOf(h.client, '"Mixed Case"')).filter((r) => /7\)$/.test(r) && Number(/^\((\d+)/.exec(r)![1]) > 100),
    );
    expect(report.tables.find((r) => r.name === 'Mixed Case')!.rows).toBe(20);
    // An inheritance parent is copied without its children (they are tables of their own).
    expect(await targetRows(t, 'parent_tbl')).toEqual(['(1,parent)']);
    expect(await targetRows(t, 'child_tbl')).toEqual(['(2,child,5)']);
  });

  it('samples the read rate with a short read of the planned COPY (filter included), not the whole table', async () => {
    const { s } = await pair('CREATE TABLE sampled (id int PRIMARY KEY, v text)');
    await src.query(`INSERT INTO sampled SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 40000) g; ANALYZE sampled`, undefined, s.dbname);
    const tables = await scopeTables(s);
    const [whole, none] = await withCanonical(s, async (c) => [
      ...(await planCopy(c, [input(tables, 'sampled', 'id % 2 = 0')], { sourceMajor: src.major, targetMajor: tgt.major })),
      ...(await planCopy(c, [input(tables, 'sampled', 'id < 0')], { sourceMajor: src.major, targetMajor: tgt.major })),
    ]);
    expect(whole!.estimatedBytes).toBeGreaterThan(8 * 1024 * 1024);
    const r = await withCanonical(s, (c) => sampleReadRate(c, whole!, 1024 * 1024));
    expect(r).toMatchObject({ table: 'public.sampled' });
    expect(r!.bytesPerSecond).toBeGreaterThan(0);
    // About a megabyte of the table's on-disk size was read, not the ~10 MB of it.
    expect(r!.sampledBytes).toBeGreaterThan(512 * 1024);
    expect(r!.sampledBytes).toBeLessThan(1.1 * 1024 * 1024);
    // A filter that keeps nothing gives no rate rather than an absurd one.
    expect(await withCanonical(s, (c) => sampleReadRate(c, none!, 1024 * 1024))).toBeNull();
  });

  it('names the table, part, side and SQLSTATE of a failure and leaves no session or transaction behind', async () => {
    const { s, t } = await pair('CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, v int); CREATE TABLE c (id int PRIMARY KEY, v int); CREATE TABLE d (id int PRIMARY KEY, v int)',
      'CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, v int CHECK (v < 50)); CREATE TABLE c (id int PRIMARY KEY); CREATE TABLE d (id int PRIMARY KEY, v int)');
    await src.query('INSERT INTO a SELECT g, g FROM generate_series(1, 100) g; INSERT INTO b SELECT g, g FROM generate_series(1, 100) g; INSERT INTO c SELECT g, g FROM generate_series(1, 100) g; INSERT INTO d SELECT g, g FROM generate_series(1, 20000) g', undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const base = { source: s, target: t, snapshot: h.snapshot, jobs: 2, sourceMajor: src.major, targetMajor: tgt.major };
    const bad = await copyTables({ ...base, tables: [input(tables, 'a', 'no_such_column > 0')] }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OperationError);
    expect((bad as Error).message).toMatch(/copying public\.a \(source, SQLSTATE 42703\): column "no_such_column" does not exist/);
    expect(((bad as Error).cause as { code?: string }).code).toBe('42703');
    const bad2 = await copyTables({ ...base, tables: [input(tables, 'b')] }).catch((e: unknown) => e);
    expect((bad2 as Error).message).toMatch(/copying public\.b \(target, SQLSTATE 23514\)/);
    // The rows go out right behind the COPY statement: when the statement itself fails, the server skips them.
    const bad3 = await copyTables({ ...base, tables: [input(tables, 'c')] }).catch((e: unknown) => e);
    expect((bad3 as Error).message).toMatch(/copying public\.c \(target, SQLSTATE 42703\): column "v" of relation "c" does not exist/);
    // The source fails after thousands of rows were relayed (and held with the statement, below HOLD_BYTES): the copy is failed, nothing committed.
    const bad4 = await copyTables({ ...base, tables: [input(tables, 'd', '100 / (6000 - id) IS NOT NULL')] }).catch((e: unknown) => e);
    expect((bad4 as Error).message).toMatch(/copying public\.d \(source, SQLSTATE 22012\): division by zero/);
    expect(await eventually(async () => (await copyBackends(src)) === 0 && (await copyBackends(tgt)) === 0)).toBe(true);
    expect(await targetRows(t, 'b')).toEqual([]);
    expect(await targetRows(t, 'd')).toEqual([]);
  });

  it('refuses to copy fewer rows than exist when row-level security would hide some', async () => {
    const { s, t } = await pair('CREATE TABLE secret (id int PRIMARY KEY, owner text)');
    await src.query(`
      INSERT INTO secret VALUES (1, 'reader'), (2, 'someone else');
      CREATE ROLE reader LOGIN PASSWORD 'pw';
      GRANT SELECT ON secret TO reader;
      ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
      CREATE POLICY mine ON secret USING (owner = current_user)`, undefined, s.dbname);
    const asReader = src.conn(s.dbname, 'reader', 'pw');
    const h = await exportSnapshot(asReader);
    const tables = await scopeTables(s);
    const err = await copyTables({
      source: asReader, target: t, snapshot: h.snapshot, jobs: 1, sourceMajor: src.major, targetMajor: tgt.major,
      tables: [input(tables, 'secret')],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(/public\.secret.*SQLSTATE 42501.*row-level security/s);
    expect(await targetRows(t, 'secret')).toEqual([]);
  });

  it('retries a part whose connection was terminated, on a new session under the same snapshot', async () => {
    // On the target, the first row waits a second: the copy is surely in flight when its backend is terminated.
    const ddl = 'CREATE TABLE retry_me (id int PRIMARY KEY, v text)';
    const { s, t } = await pair(ddl, `${ddl};
      CREATE FUNCTION slow_first() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.id = 1 THEN PERFORM pg_sleep(1); END IF; RETURN NEW; END $$;
      CREATE TRIGGER slow_first BEFORE INSERT ON retry_me FOR EACH ROW EXECUTE FUNCTION slow_first()`);
    await src.query(`INSERT INTO retry_me SELECT g, repeat('y', 500) FROM generate_series(1, 5000) g`, undefined, s.dbname);
    const h = await exportSnapshot(s);
    const expected = await rowsOf(h.client, 'retry_me');
    await src.query(`UPDATE retry_me SET v = 'after the snapshot' WHERE id % 2 = 0`, undefined, s.dbname);
    const tables = await scopeTables(s);
    let terminated: Promise<unknown> | undefined;
    const warnings: string[] = [];
    const report = await copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 1, sourceMajor: src.major, targetMajor: tgt.major,
      tables: [input(tables, 'retry_me')],
      progress: (e) => {
        if (e.kind === 'update' && !terminated) {
          terminated = tgt.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [COPY_APPLICATION_NAME]);
        }
        if (e.kind === 'log') warnings.push(e.message);
      },
    });
    await terminated;
    expect(warnings).toHaveLength(1);
    // The server's 57P01 or the socket's ECONNRESET, whichever the client sees first.
    expect(warnings[0]).toMatch(/copying public\.retry_me \(target.*(57P01|ECONNRESET).*retrying \(1\/2\)/s);
    expect(report.tables[0]!.rows).toBe(5000);
    expect(await targetRows(t, 'retry_me')).toEqual(expected);
  });

  it('stops promptly when aborted, with nothing committed and no transaction left open', async () => {
    const { s, t } = await pair('CREATE TABLE slow (id int PRIMARY KEY, v text)');
    await src.query(`INSERT INTO slow SELECT g, repeat('x', 500) FROM generate_series(1, 40000) g`, undefined, s.dbname);
    const h = await exportSnapshot(s);
    const tables = await scopeTables(s);
    const ac = new AbortController();
    let abortedAt = 0;
    const p = copyTables({
      source: s, target: t, snapshot: h.snapshot, jobs: 2, sourceMajor: src.major, targetMajor: tgt.major,
      splitThresholdBytes: 4 * 1024 * 1024, maxParts: 4, tables: [input(tables, 'slow')], signal: ac.signal,
      progress: (e) => {
        if (e.kind === 'update' && !abortedAt) {
          abortedAt = Date.now();
          ac.abort(new InterruptedError('test abort'));
        }
      },
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(abortedAt).toBeGreaterThan(0);
    expect(Date.now() - abortedAt).toBeLessThan(2000);
    expect(await eventually(async () => (await copyBackends(src)) === 0 && (await copyBackends(tgt)) === 0)).toBe(true);
    expect(await targetRows(t, 'slow')).toEqual([]);
  });
});
