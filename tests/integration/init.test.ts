/**
 * init against real clusters: the rich schema arrives whole (schema dump and
 * every table's rows equal) while a writer changes the source, and the target
 * is exactly the source as of the slot's snapshot — proven directly (the
 * transactions the slot holds are exactly those whose rows are missing) and
 * end to end (a subscription on that slot brings the target to the source's
 * final state, with no duplicate and no gap). Filters, time filters,
 * schema-only tables, foreign keys the scope breaks, an existing target
 * database, --dry-run.
 */
import { chownSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope, scopeFromFlags, type ScopeFlags } from '../../src/config/scope.js';
import { ExitCode, UsageError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit, type InitOptions } from '../../src/pipeline/init/run.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { dumpSchemaText, largeObjects, sequenceValues, tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';
import { startLoad, type Writer } from '../support/writer.js';

const RICH = readFileSync(new URL('../fixtures/rich-schema.sql', import.meta.url), 'utf8');
const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'init-src' }), clusters.start({ name: 'init-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
  tmpDirs.push(d);
  return d;
}

async function options(db: string, flags: ScopeFlags = {}, extra: Partial<InitOptions> = {}): Promise<InitOptions> {
  return {
    source: src.conn(db),
    target: tgt.conn(db),
    scope: Object.keys(flags).length ? scopeFromFlags(flags) : emptyScope(),
    stateDir: await stateDir(),
    jobs: 2,
    noSync: false,
    noOwner: false,
    noPrivileges: false,
    noRoles: false,
    fkNotValid: false,
    dropExisting: false,
    restart: false,
    dryRun: false,
    signal: new AbortController().signal,
    ...extra,
  };
}

async function readState(dir: string): Promise<{ text: string; state: RunState }> {
  const text = await readFile(path.join(dir, 'state.json'), 'utf8');
  return { text, state: JSON.parse(text) as RunState };
}

/** Inserts, updates and deletes on `w` in small transactions until stopped; each row records the xid that inserted it. */
function startWriter(db: string): Writer {
  return startLoad(src.conn(db), async (c) => {
    await c.query(`INSERT INTO w (xid, val) SELECT txid_current() % 4294967296, g FROM generate_series(1, 5) g`);
    await c.query(`UPDATE w SET val = val + 1 WHERE id IN (SELECT id FROM w ORDER BY random() LIMIT 3)`);
    await c.query(`DELETE FROM w WHERE id = (SELECT id FROM w ORDER BY random() LIMIT 1)`);
  });
}

describe('init', () => {
  it('copies the rich schema exactly, under a writer, as of the slot snapshot', async () => {
    const db = await createDatabase(src, uniqueDbName('rich'), RICH);
    await src.query(
      `CREATE TABLE w (id bigserial PRIMARY KEY, xid bigint NOT NULL, val int NOT NULL);
       INSERT INTO w (xid, val) SELECT 0, g FROM generate_series(1, 2000) g;
       CREATE PUBLICATION test_pub FOR TABLE w;`,
      undefined,
      db,
    );
    // shop.audit_log has no key: with sync it is published, so it needs REPLICA IDENTITY FULL (on both sides).
    const events: ProgressEvent[] = [];
    const o = await options(db, {}, { setReplicaIdentityFull: true, progress: (e) => events.push(e) });
    const writer = startWriter(db);
    await new Promise((r) => setTimeout(r, 300));
    const report = await runInit(o);
    const commits = await writer.stop();
    expect(commits).toBeGreaterThan(5);

    const dbReport = report.databases[0]!;
    expect(dbReport.phase).toBe('done');
    expect(dbReport.slot?.name).toMatch(/^pgferry_/);
    expect(dbReport.snapshotsUsed).toBe(1);
    expect(report.phaseSeconds.data).toBeGreaterThan(0);
    // The small tables (w among them) were read while the schema was restored (read-ahead.ts); what follows checks their rows.
    const data = events.find((e) => e.kind === 'end' && e.id.endsWith('/data'));
    expect(data?.kind === 'end' && data.detail).toMatch(/; [1-9]\d* read while the schema was restored/);

    // The state: everything consistent with the slot, and never a password.
    const { text, state } = await readState(o.stateDir);
    expect(text).not.toContain(src.password);
    expect(text).not.toContain(tgt.password);
    const d = state.databases[db]!;
    expect(d.slot?.consistentLsn).toBe(dbReport.slot?.consistentLsn);
    expect(Object.values(d.tables).every((t) => t.status === 'done' && t.consistentWithSlot)).toBe(true);
    const [slot] = await src.query<{ confirmed_flush_lsn: string }>(
      'SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1',
      [d.slot!.name],
    );
    expect(slot?.confirmed_flush_lsn).toBe(d.slot!.consistentLsn);

    // Schema: pg_dump --schema-only of both sides is identical. Accepted differences: what
    // normaliseSchemaDump drops (comment lines with versions and times, \restrict keys), and pgferry's
    // own publication, which exists on the source only.
    const own = d.slot!.name;
    const srcSchema = (await dumpSchemaText(src.conn(db))).split('\n').filter((l) => !l.includes(own)).join('\n');
    expect(srcSchema).toContain('ALTER TABLE ONLY shop.audit_log REPLICA IDENTITY FULL');
    expect(srcSchema).toContain('CREATE TABLE "Sales Data"."Order"');
    expect(srcSchema).toContain('CREATE POLICY secrets_owner');
    expect(await dumpSchemaText(tgt.conn(db))).toEqual(srcSchema);

    // Rows of every table that the writer did not touch, large objects, sequences.
    const untouched = (h: Record<string, unknown>) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'public.w'));
    const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
    expect(Object.keys(srcRows).length).toBeGreaterThan(15);
    expect(untouched(tgtRows)).toEqual(untouched(srcRows));
    expect(srcRows['shop.documents']!.rows).toBe(40);
    expect(await largeObjects(tgt.conn(db))).toEqual(await largeObjects(src.conn(db)));
    const seq = await sequenceValues(tgt.conn(db));
    expect(seq['shop.invoice_no']).toBe('1777 true');
    expect(seq['shop.orders_id_seq']).toBe((await sequenceValues(src.conn(db)))['shop.orders_id_seq']);
    // The NOT VALID key with orphans stayed NOT VALID, and the orphans are there.
    const [fk] = await tgt.query<{ convalidated: boolean }>("SELECT convalidated FROM pg_constraint WHERE conname = 'legacy_notes_customer_fk'", [], db);
    expect(fk?.convalidated).toBe(false);
    const [roleOwner] = await tgt.query<{ owner: string }>("SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'products'", [], db);
    expect(roleOwner?.owner).toBe('pgferry_app');

    // As of the snapshot, directly: the transactions the slot holds are exactly the ones after the snapshot.
    // The writer commits with synchronous_commit = off (the clusters' setting) and decoding reads only
    // flushed WAL: a checkpoint first flushes every commit before it.
    await src.query('CHECKPOINT');
    const after = new Set(
      (
        await src.query<{ xid: string }>(
          `SELECT DISTINCT xid::text FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', 'test_pub')`,
          [d.slot!.name],
          db,
        )
      ).map((r) => r.xid),
    );
    expect(after.size).toBeGreaterThan(0);
    const tgtW = await tgt.query<{ id: string; xid: string }>('SELECT id::text, xid::text FROM w', [], db);
    const srcW = await src.query<{ id: string; xid: string }>('SELECT id::text, xid::text FROM w', [], db);
    expect(tgtW.filter((r) => after.has(r.xid))).toEqual([]); // nothing committed after the snapshot was copied
    const onTarget = new Set(tgtW.map((r) => r.id));
    expect(srcW.filter((r) => !after.has(r.xid) && !onTarget.has(r.id))).toEqual([]); // nothing committed before it is missing

    // End to end: a subscription on the slot (copy_data = false) brings the target to the source's final state.
    await tgt.query(
      `CREATE SUBSCRIPTION test_sub CONNECTION '${src.url(db).replace(/'/g, "''")}' PUBLICATION test_pub
         WITH (create_slot = false, slot_name = '${d.slot!.name}', copy_data = false)`,
      [],
      db,
    );
    try {
      const want = (await tableHashes(src.conn(db), [{ schema: 'public', name: 'w' }]))['public.w'];
      await waitFor('the subscription to catch up', async () => {
        const got = (await tableHashes(tgt.conn(db), [{ schema: 'public', name: 'w' }]))['public.w'];
        return got?.hash === want?.hash;
      });
      const [errors] = await tgt.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_subscription_stats WHERE subname = 'test_sub' AND apply_error_count > 0",
        [],
        db,
      );
      expect(errors?.n).toBe(0);
    } finally {
      await tgt.query('ALTER SUBSCRIPTION test_sub DISABLE', [], db);
      await tgt.query('ALTER SUBSCRIPTION test_sub SET (slot_name = NONE)', [], db);
      await tgt.query('DROP SUBSCRIPTION test_sub', [], db);
      await src.query('SELECT pg_drop_replication_slot($1)', [d.slot!.name]);
    }
  });

  it('honours filters, time filters and schema-only tables; refuses a filter that breaks a foreign key', async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('filters'),
      `CREATE TABLE customers (id int PRIMARY KEY, region text NOT NULL);
       CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, placed timestamptz NOT NULL);
       CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL);
       CREATE TABLE lookup (code text PRIMARY KEY);
       CREATE TABLE uses_lookup (id int PRIMARY KEY, code text REFERENCES lookup);
       CREATE TABLE skipped (id int PRIMARY KEY);
       INSERT INTO customers SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 100) i;
       INSERT INTO orders SELECT i, 1 + i % 100, now() - i * interval '1 day' FROM generate_series(1, 300) i;
       INSERT INTO events SELECT i, now() - i * interval '1 day' FROM generate_series(1, 400) i;
       INSERT INTO lookup VALUES ('a'), ('b');
       INSERT INTO uses_lookup VALUES (1, NULL);
       INSERT INTO skipped VALUES (1);`,
    );

    // The filter on customers leaves orders of "us" customers without their customer.
    const broken = await options(db, { tableFilter: ["public.customers:region = 'eu'"] });
    const err = await runInit(broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(ExitCode.usage);
    expect((err as UsageError).message).toMatch(/"orders_customer_id_fkey" on public\.orders references public\.customers/);
    expect((err as UsageError).hint).toMatch(/--fk-not-valid/);
    const [noSlot] = await src.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_slots');
    expect(noSlot?.n).toBe(0); // refused before anything was created
    expect((await tgt.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).length).toBe(0);

    // A filter PostgreSQL cannot plan: refused by name, also with --no-sync, before anything is created.
    for (const noSync of [false, true]) {
      const invalid = await runInit(await options(db, { tableFilter: ['public.events:at > = now()'] }, { noSync })).catch((e: unknown) => e);
      expect(invalid).toBeInstanceOf(UsageError);
      expect((invalid as UsageError).message).toMatch(/^the row filter of public\.events \(at > = now\(\)\) is not valid: syntax error/);
      expect((await src.query('SELECT 1 FROM pg_replication_slots')).length).toBe(0);
      expect((await tgt.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).length).toBe(0);
    }
    await expect(runInit(await options(db, { timeFilter: ['public.customers:region:30 days'] }))).rejects.toThrow(
      /^time filter on public\.customers: column region is text, not a date or timestamp$/,
    );

    // Filtering the referencing table along, a time filter, a schema-only table and an exclusion.
    const flags: ScopeFlags = {
      tableFilter: ["public.customers:region = 'eu'", 'public.orders:customer_id % 2 = 0'],
      timeFilter: ['public.events:at:30 days'],
      schemaOnlyTables: ['lookup'],
      excludeTables: ['skipped'],
    };
    const o = await options(db, flags, { noSync: true });
    const report = await runInit(o);
    expect(report.databases[0]!.slot).toBeNull();
    const rows = await tableHashes(tgt.conn(db));
    expect(Object.keys(rows).sort()).toEqual(['public.customers', 'public.events', 'public.lookup', 'public.orders', 'public.uses_lookup']);
    const want = await tableHashes(src.conn(db), [
      { schema: 'public', name: 'customers', where: "region = 'eu'" },
      { schema: 'public', name: 'orders', where: 'customer_id % 2 = 0' },
      { schema: 'public', name: 'uses_lookup' },
    ]);
    expect(rows['public.customers']).toEqual(want['public.customers']);
    expect(rows['public.orders']).toEqual(want['public.orders']);
    expect(rows['public.uses_lookup']).toEqual(want['public.uses_lookup']);
    expect(rows['public.lookup']!.rows).toBe(0);
    expect(rows['public.events']!.rows).toBe(29); // days 1 … 29 ago: the cutoff (30 days before init) is taken a moment after the rows were written
    const { state } = await readState(o.stateDir);
    const cutoff = state.databases[db]!.timeFilterCutoffs['public.events'];
    expect(cutoff).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(state.databases[db]!.filters['public.events']).toBe(`"at" >= '${cutoff}'::timestamptz`);

    // --fk-not-valid gets past the broken key: it is created NOT VALID and recorded.
    const db2 = uniqueDbName('fknv');
    await src.query(`CREATE DATABASE ${db2} TEMPLATE ${db}`);
    const nv = await options(db2, { tableFilter: ["public.customers:region = 'eu'"] }, { fkNotValid: true, noSync: true });
    const r2 = await runInit(nv);
    expect(r2.warnings.join('\n')).toMatch(/orders_customer_id_fkey.*NOT VALID/);
    expect(r2.databases[0]!.notValidForeignKeys).toEqual([{ schema: 'public', table: 'orders', name: 'orders_customer_id_fkey', reason: 'filter' }]);
    const [fk] = await tgt.query<{ convalidated: boolean }>("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'", [], db2);
    expect(fk?.convalidated).toBe(false);
    expect((await tableHashes(tgt.conn(db2), [{ schema: 'public', name: 'orders' }]))['public.orders']!.rows).toBe(300);
  });

  it('checks the filtered foreign keys again under the snapshot: rows written after the pre-check stop init before any row is copied, or make the key NOT VALID with --fk-not-valid', async () => {
    const schema = `CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent);
       INSERT INTO parent SELECT generate_series(1, 200); INSERT INTO child SELECT i, 1 + i % 100 FROM generate_series(1, 50) i;`;
    const flags = { tableFilter: ['public.parent:id <= 100'] };
    // The pre-check passes (every child references a kept parent); then, before the snapshot, a child of a filtered-out parent arrives.
    const racing = (db: string, id: number) => async () => {
      await src.query('INSERT INTO child VALUES ($1, 150)', [id], db);
      return true;
    };
    const db = await createDatabase(src, uniqueDbName('fkrace'), schema);
    const err = await runInit(await options(db, flags, { confirm: { startCopy: racing(db, 1000) } })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/since the foreign-key check.*child_parent_id_fkey/);
    expect((err as UsageError).hint).toMatch(/--fk-not-valid/);
    expect(await tgt.query('SELECT count(*)::int AS n FROM child', [], db)).toEqual([{ n: 0 }]);

    const db2 = await createDatabase(src, uniqueDbName('fkrace'), schema);
    const warnings: string[] = [];
    await runInit(
      await options(db2, flags, {
        fkNotValid: true,
        confirm: { startCopy: racing(db2, 1000) },
        progress: (e) => void (e.kind === 'log' && e.level === 'warn' && warnings.push(e.message)),
      }),
    );
    expect(warnings.join('\n')).toMatch(/child_parent_id_fkey.*created NOT VALID/);
    expect(await tgt.query("SELECT convalidated FROM pg_constraint WHERE conname = 'child_parent_id_fkey'", [], db2)).toEqual([{ convalidated: false }]);
    expect(await tgt.query('SELECT count(*)::int AS n FROM child', [], db2)).toEqual([{ n: 51 }]);
    // Later tests expect no slot on the source.
    await src.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ANY($1)', [[db, db2]]);
  });

  it('refuses a non-empty target database unless --drop-existing, and replaces it with it', async () => {
    const db = await createDatabase(src, uniqueDbName('exists'), 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);');
    await createDatabase(tgt, db, 'CREATE TABLE precious (id int); INSERT INTO precious VALUES (42);');
    const err = await runInit(await options(db, {}, { noSync: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/already exists and is not empty \(1 relations\)/);
    expect((err as UsageError).hint).toMatch(/--drop-existing/);
    expect(await tgt.query('SELECT * FROM precious', [], db)).toEqual([{ id: 42 }]);

    // --drop-existing, but the question is answered "no": nothing is dropped.
    const asked: string[] = [];
    const no = await options(db, {}, { noSync: true, dropExisting: true, confirm: { dropDatabase: async (name) => (asked.push(name), false) } });
    await expect(runInit(no)).rejects.toThrow(/not dropping/);
    expect(asked).toEqual([db]);
    expect(await tgt.query('SELECT * FROM precious', [], db)).toEqual([{ id: 42 }]);

    // A session on the target database does not stop --drop-existing.
    const holder = new pg.Client({ host: '127.0.0.1', port: tgt.port, user: 'postgres', password: tgt.password, database: db });
    holder.on('error', () => {});
    await holder.connect();
    const yes = await options(db, {}, { noSync: true, dropExisting: true, confirm: { dropDatabase: async () => true } });
    await runInit(yes);
    await holder.end().catch(() => {});
    expect((await tgt.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'precious'", [], db))[0]).toEqual({ n: 0 });
    expect((await tableHashes(tgt.conn(db)))['public.t']).toEqual((await tableHashes(src.conn(db)))['public.t']);
  });

  it('a target database that cannot be created leaves no slot on the source (the snapshot is taken beside it)', async () => {
    await tgt.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgf_nocreate') THEN CREATE ROLE pgf_nocreate LOGIN NOCREATEDB PASSWORD 'nocreate-secret'; END IF;
    END $$`);
    const db = await createDatabase(src, uniqueDbName('nocreate'), 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000);');
    const o = await options(db, {}, { noRoles: true, noOwner: true, target: tgt.conn(db, 'pgf_nocreate', 'nocreate-secret') });
    await expect(runInit(o)).rejects.toThrow(/permission denied to create database/);
    expect(await src.query(`SELECT slot_name FROM pg_replication_slots WHERE database = $1`, [db])).toEqual([]);
    const { state } = await readState(o.stateDir);
    expect(state.databases[db]).toMatchObject({ slot: null, targetPrepared: false, phase: 'pending' });
    // Once the role may create databases, the same command goes through from the start.
    await tgt.query('ALTER ROLE pgf_nocreate CREATEDB');
    try {
      const report = await runInit(o);
      expect(report.databases[0]!.phase).toBe('done');
      expect(await tgt.query('SELECT count(*)::int AS n FROM t', [], db)).toEqual([{ n: 1000 }]);
      await src.query('SELECT pg_drop_replication_slot($1)', [report.databases[0]!.slot!.name]);
    } finally {
      await tgt.query('ALTER ROLE pgf_nocreate NOCREATEDB');
    }
  });

  it('refuses up front when the source has no room for its replication slot, and writes nothing', async () => {
    const db = await createDatabase(src, uniqueDbName('noslot'), 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);');
    const [room] = await src.query<{ max: number; used: number }>(
      "SELECT current_setting('max_replication_slots')::int AS max, (SELECT count(*)::int FROM pg_replication_slots) AS used",
    );
    const hogs = Array.from({ length: room!.max - room!.used }, (_, i) => `hog${i}_${db}`.slice(0, 63));
    for (const h of hogs) await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [h], db);
    try {
      const o = await options(db, {}, { noRoles: true });
      const err = (await runInit(o).catch((e: unknown) => e)) as UsageError;
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toMatch(/^the source has room for 0 more replication slots and init creates 1 \(one per database\): max_replication_slots = \d+, \d+ in use \(/);
      expect(err.hint).toMatch(/^ALTER SYSTEM SET max_replication_slots = \d+ on the source, then restart it; or drop slots nobody uses: SELECT pg_drop_replication_slot\('hog/);
      // Nothing written: no publication, no target database, no state.
      expect(await src.query('SELECT pubname FROM pg_publication', [], db)).toEqual([]);
      expect(await tgt.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).toEqual([]);
      await expect(readFile(path.join(o.stateDir, 'state.json'))).rejects.toThrow(/ENOENT/);
      // --dry-run lists it among its refusals; --no-sync needs no slot.
      expect((await runInit({ ...o, dryRun: true })).refusals.join('\n')).toContain('the source has room for 0 more replication slots');
      expect((await runInit({ ...o, noSync: true })).databases[0]!.phase).toBe('done');
    } finally {
      for (const h of hogs) await src.query('SELECT pg_drop_replication_slot($1)', [h]);
    }
  });

  it('names the step that failed, not only the phase: the snapshot, with every WAL sender taken', async () => {
    const db = await createDatabase(src, uniqueDbName('nosender'), 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100);');
    const [room] = await src.query<{ free: number }>(
      "SELECT current_setting('max_wal_senders')::int - (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'walsender') AS free",
    );
    const c = src.conn(db);
    // Replication connections (pg passes `replication` through; its types do not list it): each holds a WAL sender.
    const senders = Array.from({ length: room!.free }, () => new pg.Client({ host: c.host, port: c.port, user: c.user, password: c.password, database: db, replication: 'database' } as pg.ClientConfig));
    try {
      for (const s of senders) await s.connect();
      const events: ProgressEvent[] = [];
      const o = await options(db, {}, { noRoles: true, progress: (e) => events.push(e) });
      await expect(runInit(o)).rejects.toThrow(/max_wal_senders/);
      const end = events.find((e) => e.kind === 'end' && e.id === `init/${db}`);
      expect(end).toMatchObject({ status: 'fail', detail: 'stopped at snapshot; run init again to resume' });
    } finally {
      await Promise.all(senders.map((s) => s.end().catch(() => {})));
    }
  });

  it("carries the database's settings, privileges, comment and connection limit over, last (a read-only default stops neither the copy nor the publication)", async () => {
    const db = await createDatabase(src, uniqueDbName('dbprops'), 'CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY); INSERT INTO app.t SELECT generate_series(1, 100);');
    const role = `dbp_${db}`.slice(0, 60);
    await src.query(`CREATE ROLE ${role} NOLOGIN`);
    await src.query(`ALTER DATABASE ${db} SET search_path = "$user", app, public;
      ALTER DATABASE ${db} SET default_transaction_read_only = on;
      ALTER ROLE ${role} IN DATABASE ${db} SET work_mem = '64MB';
      COMMENT ON DATABASE ${db} IS 'carried over';
      REVOKE CONNECT, TEMPORARY ON DATABASE ${db} FROM PUBLIC;
      GRANT CONNECT ON DATABASE ${db} TO ${role};
      ALTER DATABASE ${db} CONNECTION LIMIT 40;`);
    // With the slot and publication for sync: pgferry's own statements on the source are read-write whatever its default.
    const report = await runInit(await options(db));
    const d = report.databases[0]!;
    expect(d.phase).toBe('done');
    expect(await src.query('SELECT count(*)::int AS n FROM pg_publication', [], db)).toEqual([{ n: 1 }]);
    await src.query('SELECT pg_drop_replication_slot($1)', [d.slot!.name]);
    expect(await tgt.query('SELECT count(*)::int AS n FROM app.t', [], db)).toEqual([{ n: 100 }]);
    const settings = `SELECT coalesce(s.setrole::regrole::text, '-') AS role, s.setconfig FROM pg_db_role_setting s
                       WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) ORDER BY 1`;
    expect(await tgt.query(settings, [db])).toEqual(await src.query(settings, [db]));
    expect(await tgt.query(settings, [db])).toHaveLength(2);
    const props = `SELECT d.datconnlimit, shobj_description(d.oid, 'pg_database') AS comment,
                          has_database_privilege('public', d.oid, 'CONNECT') AS public_connect, has_database_privilege($2, d.oid, 'CONNECT') AS role_connect
                     FROM pg_database d WHERE d.datname = $1`;
    expect(await tgt.query(props, [db, role])).toEqual([{ datconnlimit: 40, comment: 'carried over', public_connect: false, role_connect: true }]);
  });

  it('populates the materialized views the source has populated, each after those it reads (a schema-only archive carries no view data)', async () => {
    const db = await createDatabase(src, uniqueDbName('matviews'), `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 30);
      CREATE MATERIALIZED VIEW z_total AS SELECT count(*)::int AS n FROM t;
      CREATE VIEW v_total AS SELECT n FROM z_total;
      CREATE MATERIALIZED VIEW a_double AS SELECT n * 2 AS n2 FROM v_total;
      CREATE UNIQUE INDEX a_double_n2 ON a_double (n2);
      CREATE MATERIALIZED VIEW later AS SELECT 1 AS x WITH NO DATA;`);
    const report = await runInit(await options(db, {}, { noSync: true, noRoles: true }));
    expect(report.databases[0]!.phase).toBe('done');
    const views = `SELECT relname AS name, relispopulated AS populated FROM pg_class WHERE relkind = 'm' ORDER BY 1`;
    expect(await tgt.query(views, [], db)).toEqual([{ name: 'a_double', populated: true }, { name: 'later', populated: false }, { name: 'z_total', populated: true }]);
    // a_double reads z_total through a plain view: populated after it, whatever the names' order.
    expect(await tgt.query('SELECT (SELECT n FROM z_total) AS n, (SELECT n2 FROM a_double) AS n2', [], db)).toEqual([{ n: 30, n2: 60 }]);
  });

  it('--keep-tablespaces puts each table and index where the source has it, and is refused while the target lacks one', async () => {
    const db = uniqueDbName('keepts');
    const hotSpace = `tsh_${db}`.slice(0, 60);
    const coldSpace = `tsc_${db}`.slice(0, 60);
    const made: [LocalCluster, string][] = [];
    // A tablespace's directory belongs to the server's user.
    const tablespace = async (c: LocalCluster, name: string) => {
      const dir = path.join(c.rootDir, name);
      mkdirSync(dir);
      const owner = statSync(c.rootDir);
      chownSync(dir, owner.uid, owner.gid);
      await c.query(`CREATE TABLESPACE ${name} LOCATION '${dir}'`);
      made.push([c, name]);
    };
    await tablespace(src, hotSpace);
    await tablespace(src, coldSpace);
    await tablespace(tgt, hotSpace);
    try {
      await createDatabase(src, db, `CREATE TABLE hot (id int, v text, CONSTRAINT hot_pkey PRIMARY KEY (id) USING INDEX TABLESPACE ${hotSpace});
        INSERT INTO hot SELECT g, 'v' || g FROM generate_series(1, 500) g;
        CREATE TABLE cold (id int PRIMARY KEY) TABLESPACE ${coldSpace}; INSERT INTO cold SELECT generate_series(1, 10);`);
      const o = await options(db, {}, { noSync: true, noRoles: true, keepTablespaces: true });
      await expect(runInit(o)).rejects.toThrow(`--keep-tablespaces: the target has no tablespace ${coldSpace}, which the source's relations use; nothing was written`);
      expect(await tgt.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).toEqual([]);
      // Once the target has it too, each relation lands where it is on the source.
      await tablespace(tgt, coldSpace);
      expect((await runInit(o)).databases[0]!.phase).toBe('done');
      const where = `SELECT c.relname AS name, coalesce(t.spcname, '-') AS space FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
                      WHERE c.relname IN ('hot', 'hot_pkey', 'cold', 'cold_pkey') ORDER BY 1`;
      expect(await tgt.query(where, [], db)).toEqual([
        { name: 'cold', space: coldSpace }, { name: 'cold_pkey', space: '-' }, { name: 'hot', space: '-' }, { name: 'hot_pkey', space: hotSpace },
      ]);
      expect(await tgt.query(where, [], db)).toEqual(await src.query(where, [], db));
      expect(await tgt.query('SELECT count(*)::int AS n FROM hot', [], db)).toEqual([{ n: 500 }]);
    } finally {
      await Promise.all([src, tgt].map((c) => c.query(`DROP DATABASE IF EXISTS ${db}`)));
      for (const [c, name] of made) await c.query(`DROP TABLESPACE IF EXISTS ${name}`);
    }
  });

  it('copies roles, skipping what a non-superuser target refuses, as warnings', async () => {
    await src.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgf_power') THEN CREATE ROLE pgf_power SUPERUSER; END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgf_repl') THEN CREATE ROLE pgf_repl LOGIN REPLICATION; END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgf_all_reader') THEN CREATE ROLE pgf_all_reader; GRANT pg_read_all_data TO pgf_all_reader; END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser') THEN CREATE ROLE rds_superuser; END IF;
    END $$`);
    await tgt.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'migrator') THEN CREATE ROLE migrator LOGIN CREATEDB CREATEROLE PASSWORD 'migrator-secret'; END IF;
    END $$`);
    // And an event trigger with a comment, which only a superuser may create: named, the copy not held up.
    const db = await createDatabase(src, uniqueDbName('roles'), `CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1); GRANT SELECT ON t TO pgf_all_reader;
      CREATE FUNCTION noop_evt() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
      CREATE EVENT TRIGGER audit_x ON ddl_command_end EXECUTE FUNCTION noop_evt(); COMMENT ON EVENT TRIGGER audit_x IS 'audit';`);
    const o = await options(db, {}, { noSync: true, noOwner: true, target: tgt.conn(db, 'migrator', 'migrator-secret') });
    const report = await runInit(o);
    const skipped = report.roles!.skipped.map((x) => x.reason).join('\n');
    expect(skipped).toMatch(/attributes SUPERUSER of role pgf_power need a superuser/);
    expect(skipped).toMatch(/attributes REPLICATION of role pgf_repl/);
    expect(skipped).toMatch(/predefined role pg_read_all_data needs a superuser/);
    expect(report.warnings.some((w) => w.startsWith('role statement skipped'))).toBe(true);
    expect(report.databases[0]!.phase).toBe('done');
    expect(report.warnings.join('\n')).toContain('event triggers not created on the target (only a superuser may): audit_x;');
    expect(await tgt.query('SELECT evtname FROM pg_event_trigger', [], db)).toEqual([]);
    const roles = await tgt.query<{ rolname: string; rolsuper: boolean; rolreplication: boolean; rolcanlogin: boolean }>(
      "SELECT rolname, rolsuper, rolreplication, rolcanlogin FROM pg_roles WHERE rolname IN ('pgf_power', 'pgf_repl', 'pgf_all_reader', 'rds_superuser') ORDER BY 1",
    );
    expect(roles).toEqual([
      { rolname: 'pgf_all_reader', rolsuper: false, rolreplication: false, rolcanlogin: false },
      { rolname: 'pgf_power', rolsuper: false, rolreplication: false, rolcanlogin: false },
      { rolname: 'pgf_repl', rolsuper: false, rolreplication: false, rolcanlogin: true },
    ]);
    // The grant to the copied role arrived with the schema.
    expect(await tgt.query("SELECT has_table_privilege('pgf_all_reader', 't', 'SELECT') AS ok", [], db)).toEqual([{ ok: true }]);
  });

  it('copies several databases, each with its own slot', async () => {
    const [m1, m2] = [uniqueDbName('multi'), uniqueDbName('multi')];
    await createDatabase(src, m1, 'CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 10);');
    await createDatabase(src, m2, 'CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 20);');
    const o = await options(m1, { includeDatabases: [m1, m2] }, { target: tgt.conn('postgres') });
    const report = await runInit(o);
    expect(report.databases.map((d) => [d.source, d.target])).toEqual([[m1, m1], [m2, m2]]);
    const slots = report.databases.map((d) => d.slot!.name);
    expect(new Set(slots).size).toBe(2);
    expect(await tgt.query('SELECT count(*)::int AS n FROM a', [], m1)).toEqual([{ n: 10 }]);
    expect(await tgt.query('SELECT count(*)::int AS n FROM b', [], m2)).toEqual([{ n: 20 }]);
    for (const slot of slots) await src.query('SELECT pg_drop_replication_slot($1)', [slot]);
  });

  it("builds each table's own indexes and constraints once its last part is in, and everything else after the copy", async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('postdata'),
      `CREATE EXTENSION btree_gist;
       CREATE TABLE big (id int PRIMARY KEY, code text NOT NULL, during tsrange, v int);
       INSERT INTO big SELECT g, 'c' || g, tsrange('2020-01-01'::timestamp + g * interval '1 hour', '2020-01-01'::timestamp + (g + 1) * interval '1 hour'), g % 97
         FROM generate_series(1, 20000) g;
       ALTER TABLE big ADD CONSTRAINT big_code_key UNIQUE (code);
       ALTER TABLE big ADD CONSTRAINT big_no_overlap EXCLUDE USING gist (v WITH =, during WITH &&);
       ALTER TABLE big ADD CONSTRAINT big_v_check CHECK (v >= 0) NOT VALID;
       CREATE INDEX big_lower_code ON big (lower(code)) WHERE v > 10;
       CREATE TABLE child (id int PRIMARY KEY, big_id int NOT NULL REFERENCES big (id), note text);
       INSERT INTO child SELECT g, g, 'n' FROM generate_series(1, 500) g;
       CREATE INDEX child_big_id ON child (big_id);
       CREATE TABLE part (k int, v int, PRIMARY KEY (k)) PARTITION BY RANGE (k);
       CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (0) TO (100);
       CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (100) TO (200);
       INSERT INTO part SELECT g, g FROM generate_series(0, 199) g;
       CREATE TABLE keyless (v int);
       INSERT INTO keyless SELECT generate_series(1, 100);
       CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
       CREATE TRIGGER child_touch BEFORE UPDATE ON child FOR EACH ROW EXECUTE FUNCTION touch();
       ANALYZE;`,
    );
    const events: ProgressEvent[] = [];
    const o = await options(db, {}, { noSync: true, splitThresholdBytes: 64 * 1024, maxParts: 4, progress: (e) => events.push(e) });
    const report = await runInit(o);
    expect(report.databases[0]!.phase).toBe('done');
    const { state } = await readState(o.stateDir);
    expect(state.databases[db]!.tables['public.big']!.parts.length).toBeGreaterThan(1);

    // The split table's own items (at least the split threshold big) start after its last part; the small tables'
    // (below it), and everything of a partitioned table, wait for the post-data and ANALYZE phases.
    const at = (kind: string, id: string) => events.findIndex((e) => e.kind === kind && 'id' in e && e.id === id);
    const data = `init/${db}/data`;
    expect(events[at('start', `${data}/public.big/post-data`)]).toMatchObject({ title: 'public.big: indexes, ANALYZE' });
    expect(at('start', `${data}/public.big/post-data`)).toBeGreaterThan(at('end', `${data}/public.big`));
    expect(events[at('end', `${data}/public.big/post-data`)]).toMatchObject({ status: 'ok' });
    for (const t of ['public.child', 'public.part', 'public.keyless']) expect(at('start', `${data}/${t}/post-data`), t).toBe(-1);
    expect(events[at('end', data)]).toMatchObject({ status: 'ok', detail: expect.stringMatching(/; 5 indexes and constraints built as tables finished/) });
    // big after its items; the small plain tables (child, keyless) possibly as their copy finished (early-analyze.ts); part in the ANALYZE phase.
    const analyzeEnd = events[at('end', `init/${db}/analyze`)] as { status: string; detail: string };
    expect(analyzeEnd.status).toBe('ok');
    const [, left, early] = /^(\d+) tables \((\d+) as their copy finished\)$/.exec(analyzeEnd.detail) ?? [];
    expect(Number(left) + Number(early)).toBe(4);
    expect(Number(early)).toBeGreaterThanOrEqual(1);
    expect(Number(left)).toBeGreaterThanOrEqual(1);
    const stats = `SELECT relname, reltuples::int AS n FROM pg_class WHERE relname IN ('big', 'child', 'keyless', 'part_1') ORDER BY 1`;
    expect(await tgt.query(stats, [], db)).toEqual([
      { relname: 'big', n: 20000 }, { relname: 'child', n: 500 }, { relname: 'keyless', n: 100 }, { relname: 'part_1', n: 100 },
    ]);

    // The outcome: the same schema, every index valid and ready, every constraint as validated as on the source.
    expect(await dumpSchemaText(tgt.conn(db))).toEqual(await dumpSchemaText(src.conn(db)));
    const indexes = `SELECT c.relname, i.indisvalid AND i.indisready AS ok FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1`;
    const constraints = `SELECT conname, contype, convalidated FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1`;
    const tgtIndexes = await tgt.query<{ relname: string; ok: boolean }>(indexes, [], db);
    expect(tgtIndexes.length).toBe(9);
    expect(tgtIndexes.filter((r) => !r.ok)).toEqual([]);
    expect(tgtIndexes).toEqual(await src.query(indexes, [], db));
    expect(await tgt.query(constraints, [], db)).toEqual(await src.query(constraints, [], db));
    const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
    expect(tgtRows).toEqual(srcRows);
  });

  it("builds a leaf partition's own indexes once its parts are in, under a writer; the partitioned indexes come whole after the copy", async () => {
    const db = await createDatabase(
      src,
      uniqueDbName('leaves'),
      `CREATE TABLE ev (id bigint, at date NOT NULL, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
       CREATE TABLE ev_2020 PARTITION OF ev FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
       CREATE TABLE ev_2021 PARTITION OF ev FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
       CREATE INDEX ev_note ON ev (note);
       INSERT INTO ev SELECT g, '2020-01-01'::date + g % 730, md5(g::text) FROM generate_series(1, 40000) g;
       CREATE TABLE w (id bigserial PRIMARY KEY, xid bigint NOT NULL, val int NOT NULL);
       INSERT INTO w (xid, val) SELECT 0, g FROM generate_series(1, 100) g;
       ANALYZE;`,
    );
    const events: ProgressEvent[] = [];
    // Leaves of ~1.6 MB, split into parts at 256 kB: each leaf's items wait for all of its parts.
    const o = await options(db, {}, { noSync: true, splitThresholdBytes: 256 * 1024, maxParts: 4, progress: (e) => events.push(e) });
    const writer = startWriter(db);
    let report;
    try {
      report = await runInit(o);
    } finally {
      await writer.stop();
    }
    expect(report.databases[0]!.phase).toBe('done');
    const { state } = await readState(o.stateDir);
    expect(state.databases[db]!.tables['public.ev']!.parts.length).toBeGreaterThan(2);

    const at = (kind: string, id: string) => events.findIndex((e) => e.kind === kind && 'id' in e && e.id === id);
    const data = `init/${db}/data`;
    for (const leaf of ['public.ev_2020', 'public.ev_2021']) {
      // A leaf is analysed after its indexes; the root's ANALYZE then passes over it (analyze.ts).
      expect(events[at('start', `${data}/${leaf}/post-data`)], leaf).toMatchObject({ title: `${leaf}: indexes, ANALYZE` });
      expect(at('start', `${data}/${leaf}/post-data`)).toBeLessThan(at('end', data));
      expect(events[at('end', `${data}/${leaf}/post-data`)]).toMatchObject({ status: 'ok', detail: '2 indexes and constraints' });
    }
    expect(events[at('end', data)]).toMatchObject({ status: 'ok', detail: expect.stringMatching(/; 4 indexes and constraints built as tables finished/) });
    expect(events[at('end', `init/${db}/post-data`)]).toMatchObject({ status: 'ok', detail: expect.stringMatching(/, 4 already present$/) });

    // The partitioned indexes are valid (every leaf's index attached), the schema is the source's, the rows too.
    const invalid = `SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                      WHERE c.relnamespace = 'public'::regnamespace AND NOT (i.indisvalid AND i.indisready)`;
    expect(await tgt.query(invalid, [], db)).toEqual([]);
    expect(await dumpSchemaText(tgt.conn(db))).toEqual(await dumpSchemaText(src.conn(db)));
    const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
    expect(tgtRows['public.ev']).toEqual(srcRows['public.ev']);
    // Every leaf analysed (whole: each holds fewer rows than ANALYZE samples), and the root's inherited statistics.
    const stats = `SELECT c.relname, c.reltuples::int AS n, (SELECT count(*)::int FROM ev WHERE tableoid = c.oid) AS rows FROM pg_class c
                    WHERE c.relname LIKE 'ev_20%' AND c.relkind = 'r' ORDER BY 1`;
    const leaves = await tgt.query<{ relname: string; n: number; rows: number }>(stats, [], db);
    expect(leaves.map((l) => l.relname)).toEqual(['ev_2020', 'ev_2021']);
    for (const l of leaves) expect(l.n, l.relname).toBe(l.rows);
    expect(await tgt.query(`SELECT count(*)::int AS n FROM pg_stats WHERE tablename = 'ev' AND inherited`, [], db)).toEqual([{ n: 3 }]);
  });

  it('--dry-run plans and writes nothing', async () => {
    const db = await createDatabase(src, uniqueDbName('dry'), 'CREATE TABLE a (id int PRIMARY KEY, v text); INSERT INTO a SELECT g, repeat(\'x\', 100) FROM generate_series(1, 5000) g; ANALYZE a;');
    const o = await options(db, {}, { dryRun: true });
    const r = await runInit(o);
    expect(r.dryRun).toBe(true);
    const plan = r.plan!;
    expect(plan.databases[0]!.targetStatus).toBe('missing');
    expect(plan.databases[0]!.tables.map((t) => t.name)).toEqual(['a']);
    expect(plan.databases[0]!.tables[0]!.estimatedRows).toBe(5000);
    expect(plan.estimatedBytes).toBeGreaterThan(500_000);
    expect(await src.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
    expect(await tgt.query('SELECT 1 FROM pg_database WHERE datname = $1', [db])).toEqual([]);
    await expect(readFile(path.join(o.stateDir, 'state.json'))).rejects.toThrow(/ENOENT/);
    await expect(readFile(path.join(o.stateDir, 'lock'))).rejects.toThrow(/ENOENT/);
  });
});
