/**
 * The pre-data restore (schema.ts restorePreData): one query on the target where the script allows it,
 * pg_restore where it does not or where that query fails, all or nothing either way. And the statements
 * that lock every table in one transaction (pg_dump, CREATE PUBLICATION, CREATE SUBSCRIPTION) on a side
 * whose lock table is too small: they stop saying which side and what to raise.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OperationError, UsageError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { dumpSchema, listPostData, restoreEntries, restorePreData, restoreScripted, type TocEntry } from '../../src/pipeline/init/schema.js';
import { createSubscription } from '../../src/pipeline/shared/subscription.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const { start } = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-schema-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  [src, tgt] = await Promise.all([start({ name: 'schema-src' }), start({ name: 'schema-tgt' })]);
});

const SCHEMA = `
  CREATE TYPE mood AS ENUM ('sad', 'ok');
  CREATE TABLE a (id int PRIMARY KEY, m mood, note text DEFAULT 'x');
  CREATE TABLE b (id bigint GENERATED ALWAYS AS IDENTITY, a_id int REFERENCES a);
  CREATE VIEW av AS SELECT id, m FROM a;
  CREATE SCHEMA "Other";
  CREATE TABLE "Other"."C c" (v jsonb);`;

/** Statements the target logged for database `db` since `from` (log_statement = all). */
async function loggedStatements(db: string, from: number): Promise<string[]> {
  const log = (await readFile(path.join(tgt.rootDir, 'server.log'))).subarray(from).toString('utf8');
  return log.split(/\n(?=\S)/).filter((e) => e.includes('statement: ') && e.includes(`CREATE TABLE`));
}

async function archiveOf(sql: string): Promise<{ db: string; archive: string }> {
  const db = await createDatabase(src, uniqueDbName('schema'), sql);
  await createDatabase(tgt, db);
  await tgt.query(`ALTER DATABASE "${db}" SET log_statement = 'all'`);
  const archive = path.join(tmp, `${db}.dump`);
  await dumpSchema(src.conn(db), archive, { noOwner: false, noPrivileges: false, exclude: [] });
  return { db, archive };
}

async function tablesOf(c: LocalCluster, db: string): Promise<string[]> {
  const rows = await c.query<{ t: string }>(
    `SELECT format('%I.%I(%s)', table_schema, table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)) AS t
       FROM information_schema.columns WHERE table_schema IN ('public', 'Other') GROUP BY table_schema, table_name ORDER BY 1`,
    [], db,
  );
  return rows.map((r) => r.t);
}

/** Statements logged for `db` since `from` that contain `text`. */
async function loggedWith(from: number, text: string): Promise<string[]> {
  const log = (await readFile(path.join(tgt.rootDir, 'server.log'))).subarray(from).toString('utf8');
  return log.split(/\n(?=\S)/).filter((e) => e.includes('statement: ') && e.includes(text));
}

const logSize = async () => (await stat(path.join(tgt.rootDir, 'server.log'))).size;

describe('pre-data restore', () => {
  it('sends the script as one query: every table, type and view of it in one statement', async () => {
    const { db, archive } = await archiveOf(SCHEMA);
    const from = (await stat(path.join(tgt.rootDir, 'server.log'))).size;
    await restorePreData(tgt.conn(db), archive, { noOwner: false, noPrivileges: false, targetMajor: tgt.major });
    expect(await tablesOf(tgt, db)).toEqual(await tablesOf(src, db));
    expect((await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_views WHERE viewname = 'av'`, [], db))[0]!.n).toBe(1);
    const creates = await loggedStatements(db, from);
    expect(creates).toHaveLength(1);
    expect(creates[0]!.match(/CREATE TABLE/g)).toHaveLength(3);
  });

  it('leaves a script with a line psql would take as a meta-command to pg_restore, which restores it the same', async () => {
    // A string literal in a function body whose second line starts with a backslash.
    const { db, archive } = await archiveOf(`${SCHEMA}\nCREATE FUNCTION f() RETURNS text LANGUAGE sql AS $f$SELECT 'a\n\\b'::text$f$;`);
    const from = (await stat(path.join(tgt.rootDir, 'server.log'))).size;
    await restorePreData(tgt.conn(db), archive, { noOwner: false, noPrivileges: false, targetMajor: tgt.major });
    expect(await tablesOf(tgt, db)).toEqual(await tablesOf(src, db));
    expect((await tgt.query<{ v: string }>('SELECT f() AS v', [], db))[0]!.v).toBe('a\n\\b');
    // pg_restore sends one statement per item.
    expect(await loggedStatements(db, from)).toHaveLength(3);
  });

  it('a script that fails leaves nothing behind, and the error is pg_restore\'s, with the hint for a missing role', async () => {
    const role = `schema_owner_${Date.now()}`;
    await src.query(`CREATE ROLE ${role}`);
    const { db, archive } = await archiveOf(`${SCHEMA}\nCREATE TABLE owned (id int); ALTER TABLE owned OWNER TO ${role};`);
    const from = (await stat(path.join(tgt.rootDir, 'server.log'))).size;
    const err = await restorePreData(tgt.conn(db), archive, { noOwner: false, noPrivileges: false, targetMajor: tgt.major }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(new RegExp(`role "${role}" does not exist`));
    expect((err as UsageError).hint).toMatch(/--no-owner/);
    expect(await tablesOf(tgt, db)).toEqual([]);
    // Tried as one query first, then by pg_restore (--single-transaction, so that too rolled back).
    const creates = await loggedStatements(db, from);
    expect(creates[0]!.match(/CREATE TABLE/g)!.length).toBeGreaterThan(1);
    expect(creates.length).toBeGreaterThan(1);
    // With --no-owner it goes through, as one query.
    await restorePreData(tgt.conn(db), archive, { noOwner: true, noPrivileges: false, targetMajor: tgt.major });
    expect(await tablesOf(tgt, db)).toEqual(await tablesOf(src, db));
  });
});

describe('pre-data restore on a small lock table', () => {
  // The smallest lock table the server allows: a transaction fits a few hundred tables with a TOAST table (four locks each).
  let small: LocalCluster;
  beforeAll(async () => {
    small = await start({ name: 'schema-locks', settings: { max_locks_per_transaction: 10 } });
  });
  const TABLES = 1200;
  /** TABLES tables with a text column, created 100 to a transaction (the source has the default lock table). */
  const manyTables = (extra = '') =>
    Array.from({ length: TABLES / 100 }, (_, b) =>
      `BEGIN; ${Array.from({ length: 100 }, (_, i) => `CREATE TABLE m${b * 100 + i} (id int, note text);`).join(' ')} COMMIT;`).join('\n') + extra;

  async function archiveFor(sql: string): Promise<{ db: string; archive: string }> {
    const db = await createDatabase(src, uniqueDbName('locks'), sql);
    await createDatabase(small, db);
    const archive = path.join(tmp, `${db}.dump`);
    await dumpSchema(src.conn(db), archive, { noOwner: false, noPrivileges: false, exclude: [] });
    return { db, archive };
  }
  const count = async (db: string) => (await small.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`, [], db))[0]!.n;

  it('restores a schema that does not fit one transaction in parts, and says so', async () => {
    const { db, archive } = await archiveFor(manyTables());
    const warnings: string[] = [];
    await restorePreData(small.conn(db), archive, { noOwner: false, noPrivileges: false, targetMajor: small.major, warn: (m) => warnings.push(m) });
    expect(await count(db)).toBe(TABLES);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/does not fit the target's lock table in one transaction; restoring it in \d+ transactions \(raise max_locks_per_transaction/);
  });

  it('a part that fails names the cause and what the parts before it left on the target', async () => {
    const role = `locks_owner_${Date.now()}`;
    await src.query(`CREATE ROLE ${role}`);
    // zz comes last in the archive: the parts before it are in by then.
    const { db, archive } = await archiveFor(manyTables(`\nCREATE TABLE zz (id int); ALTER TABLE zz OWNER TO ${role};`));
    const err = await restorePreData(small.conn(db), archive, { noOwner: false, noPrivileges: false, targetMajor: small.major }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OperationError);
    expect((err as Error).message).toMatch(new RegExp(`role "${role}" does not exist`));
    expect((err as Error).message).toMatch(/\d+ of \d+ parts of the schema were restored before this one and stay on the target/);
    expect((err as OperationError).hint).toMatch(/--restart --drop-existing/);
    const left = await count(db);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(TABLES);
    expect((await small.query(`SELECT 1 FROM pg_tables WHERE tablename = 'zz'`, [], db))).toHaveLength(0);
  });
});

describe('a source whose lock table cannot hold every table at once', () => {
  // 10 locks × (10 connections + 3 autovacuum workers + launcher + 2 workers + 4 WAL senders) = 200 entries; pg_dump and
  // CREATE PUBLICATION each lock all 1 000 tables in one transaction.
  let small: LocalCluster;
  let db: string;
  beforeAll(async () => {
    small = await start({
      name: 'schema-srclocks',
      settings: { wal_level: 'logical', max_locks_per_transaction: 10, max_connections: 10, max_worker_processes: 2, max_wal_senders: 4, max_replication_slots: 4 },
    });
    db = await createDatabase(small, uniqueDbName('srclocks'));
    for (let b = 0; b < 50; b++) {
      await small.query(Array.from({ length: 20 }, (_, i) => `CREATE TABLE s${b * 20 + i} (id int PRIMARY KEY);`).join(' '), [], db);
    }
  });

  it('stops with the statement, the side and the setting to raise, and carries on once it is raised', async () => {
    const state = path.join(tmp, 'srclocks');
    const init = (...args: string[]) => runCliProcess(['init', ...args, '--yes', '--source', small.url(db), '--target', tgt.url(db), '--state-dir', state]);
    const viaSlot = await init();
    expect(viaSlot.exitCode, viaSlot.stderr).toBe(4);
    expect(viaSlot.stderr).toMatch(/publication pgferry_\S+ on the source: out of shared memory/);
    expect(viaSlot.stderr).toMatch(/CREATE \/ ALTER PUBLICATION locks each of the 1000 tables it publishes in one transaction, and the source's lock table is full: raise max_locks_per_transaction on the source/);
    const dumped = await init('--no-sync', '--restart');
    expect(dumped.exitCode, dumped.stderr).toBe(4);
    expect(dumped.stderr).toMatch(/pg_dump: error: query failed: ERROR: {2}out of shared memory/);
    expect(dumped.stderr).toMatch(/pg_dump locks every table it dumps in one transaction, and the source's lock table is full: raise max_locks_per_transaction on the source/);
    await small.restart({ max_locks_per_transaction: 64 });
    const after = await init('--no-sync');
    expect(after.exitCode, after.stderr).toBe(0);
    expect((await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'`, [], db))[0]!.n).toBe(1000);
  });
});

describe('a target whose lock table cannot hold the publication\'s tables', () => {
  it('CREATE SUBSCRIPTION stops with the side and the setting to raise', async () => {
    // 10 locks × (10 connections + 3 autovacuum workers + launcher + 2 workers + 2 WAL senders) = 180 entries.
    const small = await start({
      name: 'schema-tgtlocks',
      settings: { max_locks_per_transaction: 10, max_connections: 10, max_worker_processes: 2, max_wal_senders: 2, max_logical_replication_workers: 1 },
    });
    const db = await createDatabase(src, uniqueDbName('sublocks'));
    await createDatabase(small, db);
    for (let b = 0; b < 50; b++) {
      const sql = Array.from({ length: 20 }, (_, i) => `CREATE TABLE u${b * 20 + i} (id int PRIMARY KEY);`).join(' ');
      await Promise.all([src.query(sql, [], db), small.query(sql, [], db)]);
    }
    await src.query('CREATE PUBLICATION p FOR ALL TABLES', [], db);
    const client = new pg.Client({ connectionString: small.url(db) });
    await client.connect();
    try {
      const err = await createSubscription(client, {
        name: 'sub', publication: 'p', slot: 'sub', conninfo: src.url(db), createSlot: false, copyData: false, enabled: false,
        binary: false, streaming: null, passwordNotRequired: false,
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OperationError);
      expect((err as Error).message).toBe('subscription sub on the target: out of shared memory');
      expect((err as OperationError).hint).toMatch(/^CREATE SUBSCRIPTION locks each table of the publication in one transaction, and the target's lock table is full: raise max_locks_per_transaction on the target/);
    } finally {
      await client.end();
    }
  });
});

describe('post-data items as scripts', () => {
  it('builds each bin in one query; a run that fails is rolled back whole and left to pg_restore, which names the item', async () => {
    const tables = Array.from({ length: 6 }, (_, i) => `t${i}`);
    const { db, archive } = await archiveOf(
      tables.map((t) => `CREATE TABLE ${t} (id int PRIMARY KEY, v int UNIQUE); CREATE INDEX ${t}_v_id ON ${t} (v, id); INSERT INTO ${t} SELECT g, g FROM generate_series(1, 100) g;`).join('\n'),
    );
    const o = { noOwner: false, noPrivileges: false, targetMajor: tgt.major };
    await restorePreData(tgt.conn(db), archive, o);
    // The target's t4 holds a duplicate of v: its UNIQUE constraint cannot be built there.
    await tgt.query(tables.map((t) => `INSERT INTO ${t} SELECT g, ${t === 't4' ? '1' : 'g'} FROM generate_series(1, 100) g;`).join('\n'), [], db);
    const entries = await listPostData(archive, o);
    expect(entries).toHaveLength(18);
    const ofTable = (t: string) => entries.filter((e: TocEntry) => e.line.includes(` ${t}_`)); // its constraints and indexes
    const bins = [['t0', 't2', 't4'].flatMap(ofTable), ['t1', 't3', 't5'].flatMap(ofTable)];
    const from = await logSize();
    const left = await restoreScripted(tgt.conn(db), archive, bins, path.join(tmp, `${db}.scripts`), o);
    // Each bin went as one statement (the first failed on t4) and left all of its nine items, t0's and t2's too.
    expect((await loggedWith(from, 'ADD CONSTRAINT')).map((e) => e.match(/ADD CONSTRAINT/g)!.length)).toEqual([6, 6]);
    expect(left.map((e) => e.dumpId).sort()).toEqual(bins[0]!.map((e) => e.dumpId).sort());
    const indexes = async () => (await tgt.query<{ n: string }>(`SELECT indexname AS n FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1`, [], db)).map((r) => r.n);
    expect(await indexes()).toEqual(['t1_pkey', 't1_v_id', 't1_v_key', 't3_pkey', 't3_v_id', 't3_v_key', 't5_pkey', 't5_v_id', 't5_v_key']);
    // pg_restore, given the failing item, names it.
    const unique = left.filter((e) => / t4 t4_v_key /.test(e.line));
    expect(unique).toHaveLength(1);
    const err = await restoreEntries(tgt.conn(db), archive, unique, path.join(tmp, `${db}.left.list`), 1, o, 'indexes and constraints').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/could not create unique index "t4_v_key"/);
    // With the duplicate gone, what was left builds.
    await tgt.query(`UPDATE t4 SET v = id`, [], db);
    expect(await restoreScripted(tgt.conn(db), archive, [left], path.join(tmp, `${db}.again`), o)).toEqual([]);
    expect(await indexes()).toHaveLength(18);
  });

  it('splits a bin into runs of at most 200 items, one transaction each', async () => {
    const { db, archive } = await archiveOf(
      `CREATE TABLE wide (id int PRIMARY KEY, v int); ${Array.from({ length: 249 }, (_, i) => `CREATE INDEX wide_${i} ON wide (v);`).join(' ')}`,
    );
    const o = { noOwner: false, noPrivileges: false, targetMajor: tgt.major };
    await restorePreData(tgt.conn(db), archive, o);
    const entries = await listPostData(archive, o);
    expect(entries).toHaveLength(250);
    const from = await logSize();
    expect(await restoreScripted(tgt.conn(db), archive, [entries], path.join(tmp, `${db}.runs`), o)).toEqual([]);
    const runs = (await loggedWith(from, 'CREATE INDEX')).map((e) => (e.match(/CREATE INDEX/g) ?? []).length + (e.match(/ADD CONSTRAINT/g) ?? []).length);
    expect(runs).toEqual([200, 50]);
    expect((await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_indexes WHERE tablename = 'wide'`, [], db))[0]!.n).toBe(250);
  });
});
