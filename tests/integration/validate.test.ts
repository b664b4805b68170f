/**
 * runValidate against real clusters: every check is made to fail and to pass.
 *
 * Clusters (started once, databases and roles created per test):
 *   src   PostgreSQL 15, healthy source (pg_stat_statements preloaded, max_slot_wal_keep_size set)
 *   tgt   PostgreSQL 17, healthy target (pg_stat_statements preloaded; has no adminpack)
 *   bad   PostgreSQL 15, LATIN1 / C, wal_level = replica, one slot, one WAL sender, one worker, a lock table of 180
 *   sby   PostgreSQL 17 standby (in recovery)
 *   old   PostgreSQL 13 (the version-dependent catalog queries; becomes a standby in its test)
 */
import { chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scopeFromFlags, type ScopeFlags } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { UsageError } from '../../src/errors.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { runValidate, type CheckResult, type ValidateOptions, type ValidateReport } from '../../src/pipeline/validate/index.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const { start, startMajor } = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let bad: LocalCluster;
let sby: LocalCluster;
let old: LocalCluster;
const emptyDir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-validate-'));
afterAll(() => rmSync(emptyDir, { recursive: true, force: true }));

beforeAll(async () => {
  [src, tgt, bad, sby, old] = await Promise.all([
    start({
      name: 'vsrc',
      settings: { shared_preload_libraries: "'pg_stat_statements'", max_slot_wal_keep_size: "'1GB'", max_prepared_transactions: 2 },
    }),
    startMajor(17, { name: 'vtgt', settings: { shared_preload_libraries: "'pg_stat_statements'" } }),
    start({
      name: 'vbad',
      initdbArgs: ['--encoding=LATIN1', '--locale=C'],
      settings: {
        wal_level: 'replica', max_replication_slots: 1, max_wal_senders: 1, max_logical_replication_workers: 1, max_worker_processes: 1,
        // 10 × (12 connections + 3 autovacuum workers + launcher + 1 worker + 1 WAL sender) = 180 locks.
        max_locks_per_transaction: 10, max_connections: 12,
      },
    }),
    startMajor(17, { name: 'vsby' }),
    startMajor(13, { name: 'vold' }),
  ]);
  await makeStandby(sby);
  // Fill the one slot of "bad" (a physical slot: wal_level = replica allows no logical one).
  await bad.query("SELECT pg_create_physical_replication_slot('occupied')");
});

/** Restart as a standby without a primary: recovery never ends, read-only connections are accepted. */
async function makeStandby(c: LocalCluster): Promise<void> {
  const signal = path.join(c.dataDir, 'standby.signal');
  writeFileSync(signal, '');
  const owner = statSync(c.dataDir);
  chownSync(signal, owner.uid, owner.gid);
  await c.restart();
}

function validate(source: ResolvedConnInfo, target: ResolvedConnInfo, flags: ScopeFlags = {}, extra: Partial<ValidateOptions> = {}): Promise<ValidateReport> {
  return runValidate({ source, target, scope: scopeFromFlags(flags), ...extra });
}

function checks(r: ValidateReport, id: string, database?: string): CheckResult[] {
  return r.checks.filter((c) => c.id === id && (database === undefined || c.database === database));
}

/** The worst status among the checks with this id ('absent' when there are none). */
function status(r: ValidateReport, id: string, database?: string): string {
  const found = checks(r, id, database);
  if (!found.length) return 'absent';
  return found.some((c) => c.status === 'fail') ? 'fail' : found.some((c) => c.status === 'warn') ? 'warn' : 'ok';
}

function failures(r: ValidateReport): string[] {
  return r.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.message}`);
}

function conn(s: string): ResolvedConnInfo {
  return resolveConnInfo(parseConnInfo(s), {});
}

describe('validate: a healthy pair', () => {
  it('passes with identities, sizes and every server check ok', async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('clean'),
      `CREATE TABLE items (id int PRIMARY KEY, name text);
       CREATE TABLE "Mixed Case" (a int NOT NULL, b text, CONSTRAINT mk UNIQUE (a));
       ALTER TABLE "Mixed Case" REPLICA IDENTITY USING INDEX mk;
       CREATE EXTENSION pg_trgm; CREATE EXTENSION pg_stat_statements;`,
    );
    const r = await validate(src.conn(db), tgt.conn(db));
    expect(failures(r)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(r.ok).toBe(true);
    expect(r.source).toMatchObject({ major: 15, superuser: true, inRecovery: false, database: db });
    expect(r.target).toMatchObject({ major: 17, inRecovery: false });
    for (const id of [
      'source.version', 'source.wal_level', 'source.replication_slots', 'source.wal_senders', 'source.max_slot_wal_keep_size',
      'source.recovery', 'source.replication_privilege', 'source.long_transactions', 'target.recovery', 'target.create_database',
      'target.create_subscription', 'target.logical_replication_workers', 'target.worker_processes', 'tools.pg_dump',
      'tools.pg_dumpall', 'tools.pg_restore', 'tools.psql', 'pair.distinct', 'pair.versions', 'pair.shared_preload_libraries',
    ]) {
      expect(status(r, id), id).toBe('ok');
    }
    for (const id of ['database.size', 'database.extensions', 'database.collation', 'tables.select', 'tables.publication', 'tables.replica_identity']) {
      expect(status(r, id, db), id).toBe('ok');
    }
    expect(checks(r, 'database.size', db)[0]!.message).toMatch(/^size \d+(\.\d)? (MB|kB)/);
    expect(r.databases).toEqual([
      expect.objectContaining({ name: db, target: db, targetExists: false, encoding: 'UTF8', collate: 'C.UTF-8', tables: 2, localeProvider: 'libc' }),
    ]);
    expect(r.summary.fail).toBe(0);
    expect(r.summary.ok + r.summary.warn).toBe(r.checks.length);
    // Nothing was written: no slot, no publication, no database on the target.
    expect(await src.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
    expect(await src.query('SELECT pubname FROM pg_publication', [], db)).toEqual([]);
    expect(await tgt.query('SELECT datname FROM pg_database WHERE datname = $1', [db])).toEqual([]);
  });

  it('checks every database in scope: --include-databases, --exclude-databases, --all-databases', async () => {
    const a = await createDatabase(src, uniqueDbName('multi_a'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const b = await createDatabase(src, uniqueDbName('multi_b'), 'CREATE TABLE nokey (v int)');
    const r = await validate(src.conn('postgres'), tgt.conn(), { includeDatabases: `${a},${b}` });
    expect(r.databases.map((d) => [d.name, d.target])).toEqual([[a, a], [b, b]]);
    expect(status(r, 'tables.replica_identity', a)).toBe('ok');
    expect(status(r, 'tables.replica_identity', b)).toBe('fail');
    expect(checks(r, 'source.replication_slots')[0]!.message).toContain('2 needed');
    expect(checks(r, 'source.wal_senders')[0]!.message).toContain('3 needed');

    const excluded = await validate(src.conn('postgres'), tgt.conn(), { includeDatabases: [a, b], excludeDatabases: b });
    expect(excluded.databases.map((d) => d.name)).toEqual([a]);
    expect(excluded.exitCode).toBe(0);

    const all = await validate(src.conn('postgres'), tgt.conn(), { allDatabases: true, excludeDatabases: b });
    expect(all.databases.map((d) => d.name)).toEqual(expect.arrayContaining([a, 'postgres']));
    expect(all.databases.map((d) => d.name)).not.toContain(b);

    await expect(validate(src.conn('postgres'), tgt.conn(), { includeDatabases: 'no_such_db' })).rejects.toThrow(UsageError);
  });
});

describe('validate: source server settings', () => {
  it('fails wal_level = replica, exhausted slots and WAL senders; warns about unlimited slot WAL', async () => {
    const db = await createDatabase(bad, uniqueDbName('walrep'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const r = await validate(bad.conn(db), tgt.conn(db));
    expect(r.exitCode).toBe(1);
    const wal = checks(r, 'source.wal_level')[0]!;
    expect(wal).toMatchObject({ status: 'fail', side: 'source' });
    expect(wal.message).toContain('wal_level = replica');
    expect(wal.fix).toContain('ALTER SYSTEM SET wal_level = logical');
    const slots = checks(r, 'source.replication_slots')[0]!;
    expect(slots.status).toBe('fail');
    expect(slots.message).toContain('max_replication_slots = 1: 1 in use, 0 free, 1 needed');
    expect(slots.fix).toContain('ALTER SYSTEM SET max_replication_slots = 2');
    expect(slots.fix).toContain("pg_drop_replication_slot('occupied')");
    expect(checks(r, 'source.wal_senders')[0]).toMatchObject({ status: 'fail' });
    expect(checks(r, 'source.wal_senders')[0]!.fix).toContain('max_wal_senders = 2');
    const keep = checks(r, 'source.max_slot_wal_keep_size')[0]!;
    expect(keep.status).toBe('warn');
    expect(keep.fix).toContain('ALTER SYSTEM SET max_slot_wal_keep_size');
    // The healthy source passes the same checks.
    const good = await validate(src.conn('postgres'), tgt.conn('x'));
    for (const id of ['source.wal_level', 'source.replication_slots', 'source.wal_senders', 'source.max_slot_wal_keep_size']) {
      expect(status(good, id), id).toBe('ok');
    }
    expect(checks(good, 'source.max_slot_wal_keep_size')[0]!.message).toContain('1GB');
  });

  it('warns about a PostgreSQL 17 standby as source, fails a standby as target, and checks pg_dump against the source major', async () => {
    const r = await validate(sby.conn('postgres'), tgt.conn('postgres'));
    const rec = checks(r, 'source.recovery')[0]!;
    expect(rec.status).toBe('warn');
    expect(rec.message).toContain('standby');
    expect(rec.fix).toContain('hot_standby_feedback = on');
    // pg_dump 15 cannot dump PostgreSQL 17.
    const dump = checks(r, 'tools.pg_dump')[0]!;
    expect(dump.status).toBe('fail');
    expect(dump.message).toContain('PostgreSQL 17');
    expect(dump.fix).toMatch(/postgresql-client-17/);
    expect(status(r, 'tools.psql')).toBe('ok');

    const t = await validate(src.conn('postgres'), sby.conn('postgres'));
    expect(checks(t, 'target.recovery')[0]).toMatchObject({ status: 'fail' });
    expect(checks(t, 'target.recovery')[0]!.fix).toContain('pg_promote');
    expect(t.exitCode).toBe(1);
  });

  it('checks a PostgreSQL 13 source and target: no row filters, superuser-only subscriptions, downgrade, standby fails', async () => {
    const db = await createDatabase(old, uniqueDbName('old'), 'CREATE TABLE t (id int PRIMARY KEY, v int); CREATE EXTENSION hstore;');
    const r = await validate(old.conn(db), tgt.conn(db), { tableFilter: 't:id > 5' });
    expect(r.checks.filter((c) => c.id.endsWith('.check_error'))).toEqual([]);
    expect(r.databases[0]).toMatchObject({ localeProvider: 'libc', locale: null, encoding: 'UTF8' });
    for (const id of ['source.wal_level', 'source.replication_slots', 'source.recovery', 'tools.pg_dump', 'pair.versions']) {
      expect(status(r, id), id).toBe('ok');
    }
    expect(status(r, 'source.max_slot_wal_keep_size')).toBe('warn');
    expect(status(r, 'database.extensions', db)).toBe('ok');
    const filter = checks(r, 'tables.row_filter', db)[0]!;
    expect(filter.status).toBe('fail');
    expect(filter.message).toContain('PostgreSQL 13 cannot filter rows');

    // As a target: older than the source (a downgrade), and subscriptions need a superuser before 16.
    const role = uniqueDbName('sub');
    await old.query(`CREATE ROLE ${role} LOGIN CREATEDB PASSWORD 'sub-pw-1'`);
    const down = await validate(src.conn('postgres'), old.conn('postgres', role, 'sub-pw-1'), { includeDatabases: 'postgres' });
    expect(checks(down, 'pair.versions')[0]).toMatchObject({ status: 'warn' });
    expect(checks(down, 'pair.versions')[0]!.message).toContain('older than the source');
    const sub = checks(down, 'target.create_subscription')[0]!;
    expect(sub.status).toBe('fail');
    expect(sub.message).toContain('only superusers');
    expect(status(down, 'target.create_database')).toBe('ok');

    // A standby before 16 cannot be a source at all.
    await makeStandby(old);
    const standby = await validate(old.conn(db), tgt.conn(db));
    expect(checks(standby, 'source.recovery')[0]).toMatchObject({ status: 'fail', fix: 'point --source at the primary server' });
  });

  it('fails every client tool that --pg-bin-dir does not hold', async () => {
    const r = await validate(src.conn('postgres'), tgt.conn('postgres'), {}, { pgBinDir: emptyDir });
    for (const tool of ['pg_dump', 'pg_restore', 'pg_dumpall', 'psql']) {
      const c = checks(r, `tools.${tool}`)[0]!;
      expect(c.status, tool).toBe('fail');
      expect(c.message).toContain(emptyDir);
      expect(c.fix).toContain('--pg-bin-dir');
    }
    expect(r.exitCode).toBe(1);
  });
});

describe('validate: tables', () => {
  it('fails a table without key (exact quoted fix), passes it with REPLICA IDENTITY FULL, skips schema-only tables', async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('keys'),
      `CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."Order Lines" (qty int);
       CREATE TABLE keyed (id int PRIMARY KEY); CREATE TABLE nothing (id int PRIMARY KEY);
       ALTER TABLE nothing REPLICA IDENTITY NOTHING;
       CREATE TABLE parts (k int, v int) PARTITION BY RANGE (k);
       CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (10);
       CREATE TABLE scratch (x int);`,
    );
    const r = await validate(src.conn(db), tgt.conn(db), { schemaOnlyTables: 'scratch' });
    const bad = checks(r, 'tables.replica_identity', db);
    expect(bad.map((c) => c.status)).toEqual(['fail', 'fail', 'fail']);
    const byName = (s: string) => bad.find((c) => c.message.includes(s))!;
    expect(byName('"Order Lines"').fix).toContain('ALTER TABLE "Sales"."Order Lines" REPLICA IDENTITY FULL;');
    expect(byName('nothing').message).toContain('REPLICA IDENTITY NOTHING');
    // A partitioned table is fixed partition by partition.
    expect(byName('parts_1').message).toContain('partition of public.parts');
    expect(byName('parts_1').fix).toContain('ALTER TABLE "public"."parts_1" REPLICA IDENTITY FULL;');
    expect(bad.some((c) => c.message.includes('scratch'))).toBe(false);
    expect(r.exitCode).toBe(1);

    await src.query(
      `ALTER TABLE "Sales"."Order Lines" REPLICA IDENTITY FULL; ALTER TABLE nothing REPLICA IDENTITY DEFAULT;
       ALTER TABLE parts_1 REPLICA IDENTITY FULL;`,
      [],
      db,
    );
    const fixed = await validate(src.conn(db), tgt.conn(db), { schemaOnlyTables: 'scratch' });
    expect(checks(fixed, 'tables.replica_identity', db)).toEqual([expect.objectContaining({ status: 'ok' })]);
    expect(fixed.exitCode).toBe(0);
    // Leaving the keyless table out of scope passes too; an empty scope warns.
    const none = await validate(src.conn(db), tgt.conn(db), { includeTables: 'nomatch*' });
    expect(status(none, 'tables.scope', db)).toBe('warn');
  });

  it('fails a user without REPLICATION, SELECT, ownership and CREATE; passes once granted', async () => {
    const role = uniqueDbName('app');
    await src.query(`CREATE ROLE ${role} LOGIN PASSWORD 'app-secret-1'`);
    const db = await createDatabase(
      src,
      uniqueDbName('rights'),
      `CREATE TABLE orders (id serial PRIMARY KEY, total int);
       CREATE SCHEMA priv; CREATE TABLE priv.notes (id int PRIMARY KEY); GRANT SELECT ON priv.notes TO ${role};`,
    );
    const as = src.conn(db, role, 'app-secret-1');
    const r = await validate(as, tgt.conn(db));
    expect(r.source).toMatchObject({ user: role, superuser: false });
    const repl = checks(r, 'source.replication_privilege')[0]!;
    expect(repl.status).toBe('fail');
    expect(repl.fix).toBe(`ALTER ROLE "${role}" REPLICATION;  -- run as a superuser`);
    const sel = checks(r, 'tables.select', db)[0]!;
    expect(sel.status).toBe('fail');
    // SELECT on priv.notes is granted, but the schema cannot be entered.
    expect(sel.details).toEqual(['priv.notes', 'public.orders']);
    expect(sel.fix).toContain(`GRANT USAGE ON SCHEMA "priv" TO "${role}";`);
    expect(sel.fix).toContain(`GRANT SELECT ON TABLE "public"."orders" TO "${role}";`);
    expect(sel.fix).not.toContain('"priv"."notes"');
    expect(checks(r, 'tables.publication', db)[0]).toMatchObject({
      status: 'fail',
      details: ['priv.notes (owner postgres)', 'public.orders (owner postgres)'],
    });
    expect(checks(r, 'tables.publication', db)[0]!.fix).toContain(`ALTER TABLE "public"."orders" OWNER TO "${role}";`);
    expect(checks(r, 'tables.publication_database', db)[0]!.fix).toBe(`GRANT CREATE ON DATABASE "${db}" TO "${role}";`);
    expect(checks(r, 'tables.sequence_select', db)[0]!.fix).toContain('"public"."orders_id_seq"');
    expect(r.exitCode).toBe(1);

    await src.query(`ALTER ROLE ${role} REPLICATION; GRANT CREATE ON DATABASE ${db} TO ${role}`);
    await src.query(`ALTER TABLE orders OWNER TO ${role}; ALTER TABLE priv.notes OWNER TO ${role}; GRANT USAGE ON SCHEMA priv TO ${role}`, [], db);
    const ok = await validate(as, tgt.conn(db));
    for (const id of ['tables.select', 'tables.publication', 'tables.sequence_select', 'tables.publication_database']) {
      expect(status(ok, id, db), id).toMatch(/ok|absent/);
    }
    expect(status(ok, 'source.replication_privilege')).toBe('ok');
    // Without pg_read_all_settings the source's preload list is unknown; pg_stat_statements is not installed here.
    expect(status(ok, 'pair.shared_preload_libraries')).toBe('ok');
    expect(failures(ok)).toEqual([]);
  });

  it('says what init and cutover do with event triggers, and warns when the target role may create none', async () => {
    const db = await createDatabase(src, uniqueDbName('evtrig'), `CREATE TABLE t (id int PRIMARY KEY);
      CREATE FUNCTION noop_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
      CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION noop_evt();`);
    const r = await validate(src.conn(db), tgt.conn(db));
    expect(checks(r, 'database.event_triggers', db)[0]).toMatchObject({ status: 'ok', message: expect.stringContaining('event triggers audit_ddl: init creates them on the target last and disabled') });
    const role = uniqueDbName('evtloader');
    await tgt.query(`CREATE ROLE ${role} LOGIN CREATEDB PASSWORD 'evt-secret-1'`);
    const r2 = await validate(src.conn(db), tgt.conn(db, role, 'evt-secret-1'));
    expect(checks(r2, 'database.event_triggers', db)[0]).toMatchObject({ status: 'warn', side: 'target', details: ['audit_ddl'] });
  });

  it("warns that the source database's own subscriptions are left out and must move at the hand-over", async () => {
    const db = await createDatabase(src, uniqueDbName('subscriber'), 'CREATE TABLE t (id int PRIMARY KEY)');
    // A subscription made without connecting (disabled, no slot anywhere): the source receives rows from elsewhere.
    await src.query("CREATE SUBSCRIPTION feed_in CONNECTION 'host=127.0.0.1 port=1 dbname=elsewhere' PUBLICATION upstream_pub WITH (connect = false)", [], db);
    try {
      const r = await validate(src.conn(db), tgt.conn(db));
      const c = checks(r, 'database.subscriptions', db)[0]!;
      expect(c).toMatchObject({ status: 'warn', side: 'source', details: ['feed_in (upstream_pub; disabled)'] });
      expect(c.message).toContain('after the hand-over they would go on applying to the fenced source only');
      expect(c.fix).toContain('DROP SUBSCRIPTION "feed_in";');
    } finally {
      await src.query('ALTER SUBSCRIPTION feed_in SET (slot_name = NONE); DROP SUBSCRIPTION feed_in', [], db);
    }
    expect(status(await validate(src.conn(db), tgt.conn(db)), 'database.subscriptions', db)).toBe('absent');
  });

  it("warns when the target role's transaction_timeout (17+) would reach the subscription's apply worker", async () => {
    const db = await createDatabase(src, uniqueDbName('txtimeout'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const role = uniqueDbName('ttrole');
    await tgt.query(`CREATE ROLE ${role} SUPERUSER LOGIN PASSWORD 'tt-secret-1'; ALTER ROLE ${role} SET transaction_timeout = '5min'`);
    const r = await validate(src.conn(db), tgt.conn(db, role, 'tt-secret-1'));
    expect(checks(r, 'target.transaction_timeout')[0]).toMatchObject({
      status: 'warn',
      message: expect.stringMatching(/^transaction_timeout is 300000 ms for \S+ on the target \(a setting of the role, database or server\): the subscription's apply worker/),
      fix: `ALTER ROLE "${role}" SET transaction_timeout = 0;  -- the role that owns the subscriptions; keep the limit for the application's roles`,
    });
    await tgt.query(`ALTER ROLE ${role} RESET transaction_timeout`);
    expect(status(await validate(src.conn(db), tgt.conn(db, role, 'tt-secret-1')), 'target.transaction_timeout')).toBe('absent');
  });

  it('fails when row-level security would hide rows from the role (init and verify read every row); passes with BYPASSRLS', async () => {
    const role = uniqueDbName('rls');
    await src.query(`CREATE ROLE ${role} LOGIN REPLICATION PASSWORD 'rls-secret-1'`);
    const db = await createDatabase(src, uniqueDbName('rowsec'), `CREATE TABLE secret (id int PRIMARY KEY, v text); CREATE TABLE plain (id int PRIMARY KEY);
      CREATE TABLE shared_t (id int PRIMARY KEY); ALTER TABLE shared_t ENABLE ROW LEVEL SECURITY; GRANT SELECT ON shared_t TO ${role};
      ALTER TABLE secret OWNER TO ${role}; ALTER TABLE plain OWNER TO ${role};
      ALTER TABLE secret ENABLE ROW LEVEL SECURITY; ALTER TABLE secret FORCE ROW LEVEL SECURITY; CREATE POLICY mine ON secret USING (id < 10);`);
    await src.query(`GRANT CREATE ON DATABASE ${db} TO ${role}`);
    const as = src.conn(db, role, 'rls-secret-1');
    const r = await validate(as, tgt.conn(db));
    // The owner's own table with FORCE, and another's table with RLS on (no policy: no row at all for others).
    expect(checks(r, 'tables.row_security', db)[0]).toMatchObject({
      status: 'fail',
      details: ['public.secret (FORCE ROW LEVEL SECURITY)', 'public.shared_t'],
      fix: `ALTER ROLE "${role}" BYPASSRLS;  -- run as a superuser (or connect as a superuser)`,
    });
    await src.query(`ALTER ROLE ${role} BYPASSRLS`);
    const ok = await validate(as, tgt.conn(db));
    expect(status(ok, 'tables.row_security', db)).toBe('absent');
  });

  it('warns about unlogged tables, large objects and sequences, saying how each is handled', async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('objs'),
      `CREATE UNLOGGED TABLE cache (k text PRIMARY KEY);
       CREATE TABLE docs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
       CREATE SEQUENCE free_seq; CREATE TABLE other (id serial PRIMARY KEY);
       SELECT lo_create(0);`,
    );
    const r = await validate(src.conn(db), tgt.conn(db), { excludeTables: 'other' });
    const unlogged = checks(r, 'tables.unlogged', db)[0]!;
    expect(unlogged).toMatchObject({ status: 'warn', details: ['public.cache'] });
    expect(unlogged.message).toContain('not replicated');
    expect(unlogged.fix).toContain('ALTER TABLE "public"."cache" SET LOGGED');
    const lo = checks(r, 'tables.large_objects', db)[0]!;
    expect(lo.status).toBe('warn');
    expect(lo.message).toContain('1 large object');
    expect(lo.fix).toContain('cutover');
    const seq = checks(r, 'tables.sequences', db)[0]!;
    expect(seq.status).toBe('warn');
    // The sequence of the excluded table is out of scope.
    expect(seq.details).toEqual(['public.docs_id_seq', 'public.free_seq']);
    expect(seq.fix).toContain('pgferry sequences');
    expect(r.exitCode).toBe(0);

    const plain = await createDatabase(src, uniqueDbName('plain'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const p = await validate(src.conn(plain), tgt.conn(plain));
    for (const id of ['tables.unlogged', 'tables.large_objects', 'tables.sequences']) expect(status(p, id, plain), id).toBe('absent');
  });

  it("names the rows in an extension's configuration tables, which init and cutover copy, and warns when they cannot be read", async () => {
    // No contrib extension marks a configuration table; this one is made so by hand, as pg_extension_config_dump would.
    const db = await createDatabase(src, uniqueDbName('extcfg'), `CREATE EXTENSION pg_trgm; CREATE TABLE cfg (id int PRIMARY KEY, v text);
      INSERT INTO cfg VALUES (1, 'shipped with the extension');
      ALTER EXTENSION pg_trgm ADD TABLE cfg;
      UPDATE pg_extension SET extconfig = ARRAY['cfg'::regclass::oid], extcondition = ARRAY['WHERE id > 1'] WHERE extname = 'pg_trgm';`);
    // Only the extension's own row: nothing pg_dump would copy.
    const none = checks(await validate(src.conn(db), tgt.conn(db)), 'database.extension_data', db)[0]!;
    expect(none).toMatchObject({ status: 'ok', message: expect.stringMatching(/hold no rows of their own/) });
    await src.query(`INSERT INTO cfg VALUES (2, 'the user''s')`, [], db);
    const r = await validate(src.conn(db), tgt.conn(db));
    const c = checks(r, 'database.extension_data', db)[0]!;
    expect(c).toMatchObject({ status: 'ok', details: ['public.cfg: WHERE id > 1'] });
    expect(c.message).toMatch(/^an extension keeps rows in public\.cfg \(pg_trgm\): init copies them under its snapshot, as pg_dump does, and cutover again/);
    expect(r.exitCode).toBe(0);
    // A role that cannot read the table: init would leave its rows behind.
    const reader = `reader_${db}`.slice(0, 60);
    await src.query(`CREATE ROLE ${reader} LOGIN PASSWORD 'reader-pw'`);
    const u = checks(await validate(src.conn(db, reader, 'reader-pw'), tgt.conn(db)), 'database.extension_data', db)[0]!;
    expect(u).toMatchObject({ status: 'warn', details: ['public.cfg: WHERE id > 1'] });
    expect(u.message).toMatch(/public\.cfg \(pg_trgm\) cannot be read here/);
    expect(u.fix).toMatch(/^GRANT SELECT ON "public"\."cfg" TO the role pgferry connects as/);
    // A database without such tables has no such check.
    const plain = await createDatabase(src, uniqueDbName('plain'), 'CREATE EXTENSION pg_trgm; CREATE TABLE t (id int PRIMARY KEY)');
    expect(status(await validate(src.conn(plain), tgt.conn(plain)), 'database.extension_data', plain)).toBe('absent');
  });

  it("names what of the scope lives outside the database's default tablespace, which init creates in the target's", async () => {
    const db = uniqueDbName('tbsp');
    const space = `ts_${db}`.slice(0, 60);
    // A tablespace's directory belongs to the server's user.
    const dir = path.join(src.rootDir, space);
    mkdirSync(dir);
    const owner = statSync(src.rootDir);
    chownSync(dir, owner.uid, owner.gid);
    await src.query(`CREATE TABLESPACE ${space} LOCATION '${dir}'`);
    try {
      await createDatabase(src, db, `CREATE TABLE hot (id int, v text, CONSTRAINT hot_pkey PRIMARY KEY (id) USING INDEX TABLESPACE ${space});
        CREATE TABLE cold (id int) TABLESPACE ${space}; CREATE TABLE plain (id int PRIMARY KEY);`);
      const c = checks(await validate(src.conn(db), tgt.conn(db)), 'tables.tablespaces', db)[0]!;
      expect(c).toMatchObject({ status: 'warn', details: [`public.cold (table): ${space}`, `public.hot_pkey (index): ${space}`] });
      expect(c.message).toBe(
        `2 relations of the scope live outside the database's default tablespace (${space}: 1 table, 1 index): ` +
          "init creates everything in the target database's default tablespace (as pg_dump --no-tablespaces)",
      );
      expect(c.fix).toContain(`ALTER TABLE "public"."cold" SET TABLESPACE "${space}";`);
      // Out of the scope, out of the check.
      const only = checks(await validate(src.conn(db), tgt.conn(db), { excludeTables: 'public.cold' }), 'tables.tablespaces', db)[0]!;
      expect(only.details).toEqual([`public.hot_pkey (index): ${space}`]);
      const plain = await createDatabase(src, uniqueDbName('plain'), 'CREATE TABLE t (id int PRIMARY KEY)');
      expect(status(await validate(src.conn(plain), tgt.conn(plain)), 'tables.tablespaces', plain)).toBe('absent');
    } finally {
      await src.query(`DROP DATABASE IF EXISTS ${db}`);
      await src.query(`DROP TABLESPACE IF EXISTS ${space}`);
    }
  });

  it('checks row filters: immutable, replica identity columns only, and a date column for time filters', async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('filters'),
      `CREATE TABLE events (id int PRIMARY KEY, kind text, created_at timestamptz);
       CREATE TABLE logs (id int PRIMARY KEY, at timestamptz); ALTER TABLE logs REPLICA IDENTITY FULL;
       CREATE TABLE event_notes (id int PRIMARY KEY, event_id int REFERENCES events);`,
    );
    const run = (flags: ScopeFlags) => validate(src.conn(db), tgt.conn(db), flags);
    const good = await run({ tableFilter: 'events:id > 100', timeFilter: 'logs:at:6 months' });
    expect(checks(good, 'tables.row_filter', db).map((c) => c.status)).toEqual(['ok', 'ok']);
    const volatile = await run({ tableFilter: 'events:created_at > now()' });
    const v = checks(volatile, 'tables.row_filter', db)[0]!;
    expect(v.status).toBe('fail');
    expect(v.message).toMatch(/not accepted/);
    const nonKey = await run({ tableFilter: "events:kind <> 'id'" });
    const k = checks(nonKey, 'tables.row_filter', db)[0]!;
    expect(k.status).toBe('fail');
    expect(k.message).toContain('uses kind');
    expect(k.fix).toContain('ALTER TABLE "public"."events" REPLICA IDENTITY FULL');
    const time = await run({ timeFilter: 'events:created_at:30 days' });
    expect(checks(time, 'tables.row_filter', db)[0]).toMatchObject({ status: 'fail' });
    const notDate = await run({ timeFilter: 'events:kind:30 days' });
    expect(checks(notDate, 'tables.row_filter', db)[0]!.message).toContain('not a date or timestamp');
    // A filter that does not parse: named with the server's error; the foreign key test, which would
    // run it, says why it was skipped instead of ending the checks of the database.
    const broken = await run({ tableFilter: 'events:id = = 1' });
    const b = checks(broken, 'tables.row_filter', db)[0]!;
    expect(b).toMatchObject({ status: 'fail' });
    expect(b.message).toMatch(/^public\.events: the row filter \(id = = 1\) is not accepted: syntax error/);
    expect(checks(broken, 'tables.foreign_keys', db)[0]).toMatchObject({ status: 'warn', message: expect.stringMatching(/not checked: the row filter of public\.events is not valid/) });
    expect(status(broken, 'source.check_error', db)).toBe('absent');
    expect(broken.exitCode).toBe(1);
    // The trial publications were rolled back.
    expect(await src.query('SELECT pubname FROM pg_publication', [], db)).toEqual([]);
  });
});

describe('validate: long transactions', () => {
  it('warns about a transaction open longer than the threshold, with pid, age, user and query', async () => {
    const db = await createDatabase(src, uniqueDbName('longtx'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const client = new pg.Client({ connectionString: src.url(db) });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO t VALUES (1)');
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await client.query("PREPARE TRANSACTION 'pgferry_test_gid'");
      await client.query('BEGIN');
      await client.query('SELECT txid_current() /* held open */');
      await new Promise((r) => setTimeout(r, 1300));
      const r = await validate(src.conn(db), tgt.conn(db), {}, { maxTransactionAgeSeconds: 1 });
      const lt = checks(r, 'source.long_transactions')[0]!;
      expect(lt.status).toBe('warn');
      expect(lt.details?.[0]).toMatch(new RegExp(`^pid ${rows[0]!.pid}, open \\ds, user postgres, database ${db}, idle in transaction: SELECT txid_current\\(\\)`));
      expect(lt.fix).toContain(`SELECT pg_terminate_backend(${rows[0]!.pid});`);
      const prep = checks(r, 'source.prepared_transactions')[0]!;
      expect(prep.status).toBe('warn');
      expect(prep.fix).toContain("COMMIT PREPARED 'pgferry_test_gid';");
      expect(r.exitCode).toBe(0);
      // The default threshold (one minute) is not reached.
      const later = await validate(src.conn(db), tgt.conn(db));
      expect(status(later, 'source.long_transactions')).toBe('ok');
      expect(status(later, 'source.prepared_transactions')).toBe('absent');
    } finally {
      await client.query('ROLLBACK').catch(() => {});
      await client.query("ROLLBACK PREPARED 'pgferry_test_gid'").catch(() => {});
      await client.end();
    }
  });
});

describe('validate: target', () => {
  it('fails an extension the target lacks, with its name and version', async () => {
    const db = await createDatabase(src, uniqueDbName('ext'), 'CREATE EXTENSION adminpack; CREATE EXTENSION pg_trgm; CREATE TABLE t (id int PRIMARY KEY)');
    const r = await validate(src.conn(db), tgt.conn(db));
    const ext = checks(r, 'database.extensions', db);
    expect(ext).toHaveLength(1);
    expect(ext[0]).toMatchObject({ status: 'fail', side: 'target' });
    expect(ext[0]!.message).toMatch(/^extension adminpack 2\.\d+ is installed on the source but not available on the target/);
    expect(ext[0]!.fix).toContain('DROP EXTENSION "adminpack"');
    // PostgreSQL 15 as target has it.
    const other = await validate(src.conn(db), bad.conn(db));
    expect(status(other, 'database.extensions', db)).toBe('ok');
  });

  it('fails when the source preloads a library an installed extension needs and the target does not', async () => {
    const db = await createDatabase(src, uniqueDbName('preload'), 'CREATE EXTENSION pg_stat_statements; CREATE TABLE t (id int PRIMARY KEY)');
    const r = await validate(src.conn(db), bad.conn(db));
    const c = checks(r, 'pair.shared_preload_libraries')[0]!;
    expect(c.status).toBe('fail');
    expect(c.message).toContain('pg_stat_statements');
    expect(c.fix).toBe("on the target: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; then restart PostgreSQL");
    const ok = await validate(src.conn(db), tgt.conn(db));
    expect(status(ok, 'pair.shared_preload_libraries')).toBe('ok');
  });

  it("warns when the database's settings preload a library the target cannot load (every login to the copy would fail); ok once it can", async () => {
    const db = await createDatabase(src, uniqueDbName('dbpreload'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const role = `dpl_${db}`.slice(0, 60);
    await src.query(`CREATE ROLE ${role} NOLOGIN`);
    // adminpack is in PostgreSQL 15's library folder and gone from 17's; local_preload_libraries loads from $libdir/plugins.
    await src.query(`ALTER DATABASE ${db} SET session_preload_libraries = 'adminpack';
      ALTER ROLE ${role} IN DATABASE ${db} SET local_preload_libraries = 'pgferry_nowhere'`);
    const r = await validate(src.conn(db), tgt.conn(db));
    const c = checks(r, 'database.preload_libraries', db)[0]!;
    expect(c).toMatchObject({ status: 'warn', side: 'target' });
    expect(c.message).toContain(`session_preload_libraries: "adminpack"; local_preload_libraries for role ${role}: "pgferry_nowhere"`);
    expect(c.message).toContain('every new connection to the copy would fail');
    expect(c.fix).toContain(`ALTER DATABASE "${db}" RESET session_preload_libraries`);
    expect(c.fix).toContain(`ALTER ROLE "${role}" IN DATABASE "${db}" RESET local_preload_libraries`);
    await src.query(`ALTER DATABASE ${db} SET session_preload_libraries = 'auto_explain'; ALTER ROLE ${role} IN DATABASE ${db} RESET local_preload_libraries`);
    const fixed = await validate(src.conn(db), tgt.conn(db));
    expect(checks(fixed, 'database.preload_libraries', db)[0]).toMatchObject({ status: 'ok', message: expect.stringContaining('(auto_explain)') });
  });

  it('fails a target user that cannot create databases, subscriptions or objects; passes once granted', async () => {
    const db = await createDatabase(src, uniqueDbName('tgtpriv'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const existing = await createDatabase(tgt, uniqueDbName('tgtexists'));
    await tgt.query('CREATE TABLE leftover (id int)', [], existing);
    const role = uniqueDbName('loader');
    await tgt.query(`CREATE ROLE ${role} LOGIN PASSWORD 'loader-pw-1'`);
    await tgt.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`, [], existing);
    const r = await validate(src.conn(db), tgt.conn(db, role, 'loader-pw-1'));
    expect(checks(r, 'target.create_database')[0]).toMatchObject({ status: 'fail' });
    expect(checks(r, 'target.create_database')[0]!.fix).toContain(`ALTER ROLE "${role}" CREATEDB;`);
    expect(checks(r, 'target.create_subscription')[0]!.fix).toBe(`GRANT pg_create_subscription TO "${role}";`);

    const intoExisting = await validate(src.conn(db), tgt.conn(existing, role, 'loader-pw-1'));
    const priv = checks(intoExisting, 'database.target_privileges', db)[0]!;
    expect(priv.status).toBe('fail');
    expect(priv.fix).toContain(`GRANT CREATE ON DATABASE "${existing}" TO "${role}";`);
    expect(priv.fix).toContain('GRANT CREATE ON SCHEMA public');
    expect(checks(intoExisting, 'database.target_not_empty', db)[0]).toMatchObject({ status: 'warn', details: ['public.leftover'] });
    // The database exists, so CREATEDB is not needed for it.
    expect(status(intoExisting, 'target.create_database')).toBe('ok');

    await tgt.query(`ALTER ROLE ${role} CREATEDB; GRANT pg_create_subscription TO ${role}; GRANT CREATE ON DATABASE ${existing} TO ${role}`);
    await tgt.query(`GRANT CREATE ON SCHEMA public TO ${role}`, [], existing);
    const ok = await validate(src.conn(db), tgt.conn(existing, role, 'loader-pw-1'));
    for (const id of ['target.create_database', 'target.create_subscription']) expect(status(ok, id), id).toBe('ok');
    expect(status(ok, 'database.target_privileges', db)).toBe('ok');
  });

  it('fails too few logical replication workers and worker processes for the databases in scope', async () => {
    const a = await createDatabase(src, uniqueDbName('wa'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const b = await createDatabase(src, uniqueDbName('wb'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const r = await validate(src.conn('postgres'), bad.conn('postgres'), { includeDatabases: [a, b] });
    const w = checks(r, 'target.logical_replication_workers')[0]!;
    expect(w.status).toBe('fail');
    expect(w.message).toContain('max_logical_replication_workers = 1: 0 in use, 1 free, 2 needed');
    expect(checks(r, 'target.worker_processes')[0]).toMatchObject({ status: 'fail' });
    expect(checks(r, 'target.worker_processes')[0]!.fix).toMatch(/ALTER SYSTEM SET max_worker_processes = \d+/);
  });

  it('warns when pg_dump or CREATE SUBSCRIPTION would lock more tables at once than a lock table is sized for', async () => {
    const tables = Array.from({ length: 200 }, (_v, i) => `CREATE TABLE t${i} (id int PRIMARY KEY);`).join('\n');
    // Source "bad": pg_dump locks all 200 tables in one transaction, its lock table has 180 entries.
    const a = await createDatabase(bad, uniqueDbName('locks'), tables);
    const r = await validate(bad.conn(a), tgt.conn(a));
    const [s] = checks(r, 'source.lock_table', a);
    expect(s).toMatchObject({ status: 'warn', side: 'source' });
    expect(s!.message).toMatch(/^pg_dump \(init\) locks 200 tables on the source in one transaction, more than its lock table is sized for: about 180 \(max_locks_per_transaction = 10 × 18 /);
    expect(s!.fix).toBe('ALTER SYSTEM SET max_locks_per_transaction = 64;  -- then restart the source server');
    expect(status(r, 'target.lock_table', a)).toBe('ok');
    // Target "bad": CREATE SUBSCRIPTION locks each of the 200 published tables; a schema-only table is not published.
    const b = await createDatabase(src, uniqueDbName('locks'), `${tables} CREATE TABLE lookup (id int PRIMARY KEY);`);
    const t = await validate(src.conn(b), bad.conn(b), { schemaOnlyTables: 'public.lookup' });
    expect(checks(t, 'target.lock_table', b)[0]!.message).toMatch(/^CREATE SUBSCRIPTION \(sync\) locks 200 tables on the target in one transaction, more than its lock table/);
    expect(checks(t, 'source.lock_table', b)[0]).toMatchObject({ status: 'ok', message: expect.stringMatching(/^pg_dump \(init\) locks 201 tables on the source in one transaction; the lock table holds about \d+/) });
  });

  it('compares encoding and locale with an existing target database, and checks a new one can be created', async () => {
    // LATIN1 / C source into an existing UTF8 / C.UTF-8 database: converts, but warns.
    const latin = await createDatabase(bad, uniqueDbName('latin'), 'CREATE TABLE t (id int PRIMARY KEY)');
    await createDatabase(tgt, latin);
    const r = await validate(bad.conn(latin), tgt.conn(latin));
    expect(checks(r, 'database.encoding', latin)[0]).toMatchObject({ status: 'warn' });
    const coll = checks(r, 'database.collation', latin)[0]!;
    expect(coll.status).toBe('warn');
    expect(coll.message).toContain('LC_COLLATE C → C.UTF-8');
    expect(coll.fix).toContain(`CREATE DATABASE "${latin}" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';`);

    // UTF8 source into an existing LATIN1 database: characters may not fit, fails.
    const utf = await createDatabase(src, uniqueDbName('utf'), 'CREATE TABLE t (id int PRIMARY KEY)');
    await createDatabase(bad, utf);
    const u = await validate(src.conn(utf), bad.conn(utf));
    expect(checks(u, 'database.encoding', utf)[0]).toMatchObject({ status: 'fail' });
    expect(checks(u, 'database.encoding', utf)[0]!.message).toContain('UTF8 on the source, LATIN1 on the target');

    // Same settings on both sides pass; a database that does not exist yet can be created with them.
    const same = await createDatabase(src, uniqueDbName('same'));
    await createDatabase(tgt, same);
    const s = await validate(src.conn(same), tgt.conn(same));
    expect(status(s, 'database.encoding', same)).toBe('ok');
    expect(status(s, 'database.collation', same)).toBe('ok');
    const fresh = await validate(src.conn(utf), tgt.conn(utf));
    expect(checks(fresh, 'database.collation', utf)[0]!.message).toContain('does not exist yet; init creates it with UTF8');

    // An ICU database on the source is creatable on 17 (built with ICU).
    const icu = uniqueDbName('icu');
    await src.query(`CREATE DATABASE ${icu} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'`);
    const i = await validate(src.conn(icu), tgt.conn(icu));
    expect(i.databases[0]).toMatchObject({ localeProvider: 'icu', locale: 'en-US' });
    expect(status(i, 'database.collation', icu)).toBe('ok');
  });
});

describe('validate: reaching the sides', () => {
  it('refuses the same database reached under two spellings (address and Unix socket): exit 2', async () => {
    const db = await createDatabase(src, uniqueDbName('self'), 'CREATE TABLE t (id int PRIMARY KEY)');
    const viaSocket = conn(`host=${src.socketDir} port=${src.port} user=postgres dbname=${db}`);
    const r = await validate(src.conn(db), viaSocket);
    expect(r.exitCode).toBe(2);
    const d = checks(r, 'pair.distinct')[0]!;
    expect(d.status).toBe('fail');
    expect(d.message).toContain(`same database: "${db}"`);
    // Same server, another database: allowed.
    const other = await validate(src.conn(db), conn(`host=${src.socketDir} port=${src.port} user=postgres dbname=${db}_copy`));
    expect(checks(other, 'pair.distinct')[0]).toMatchObject({ status: 'ok' });
    expect(other.exitCode).toBe(0);
  });

  it('reports a wrong password as unreachable (exit 3) without the password, and still checks the other side', async () => {
    const secret = 'Wr0ng-Secret-9731';
    const r = await validate(src.conn('postgres', 'postgres', secret), tgt.conn('postgres'));
    expect(r.exitCode).toBe(3);
    expect(r.source).toBeNull();
    const reach = checks(r, 'source.reachable')[0]!;
    expect(reach.status).toBe('fail');
    expect(reach.message).toContain('password authentication failed');
    expect(reach.fix).toContain('check the password');
    expect(status(r, 'target.reachable')).toBe('ok');
    expect(status(r, 'target.create_subscription')).toBe('ok');
    expect(status(r, 'tools.pg_dump')).toBe('ok');
    expect(JSON.stringify(r)).not.toContain(secret);
  });

  it('reports an unreachable port as unreachable (exit 3) and still checks the source', async () => {
    const r = await validate(src.conn('postgres'), conn('postgresql://postgres@127.0.0.1:1/shop?sslmode=disable&connect_timeout=5'));
    expect(r.exitCode).toBe(3);
    expect(r.target).toBeNull();
    expect(checks(r, 'target.reachable')[0]).toMatchObject({ status: 'fail' });
    expect(checks(r, 'target.reachable')[0]!.fix).toContain('is the server running');
    expect(status(r, 'source.wal_level')).toBe('ok');
    expect(r.databases).toEqual([expect.objectContaining({ name: 'postgres', targetExists: null })]);
  });
});
