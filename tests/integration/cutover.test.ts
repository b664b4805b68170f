/**
 * cutover against real clusters, with a pgbench-style writer running as a
 * normal application role (not a superuser) until the fence stops it:
 * the hand-over (source refuses the application, target equals the source at
 * the fence, sequences at or ahead, the application inserts on the target at
 * once), --reverse (a row written on the target reaches the old source), a
 * gate failure (exit 1, source writable again, replication still running),
 * and kill -9 at every phase followed by --abort or a rerun: the state always
 * knows about a fence, and there is never a half hand-over.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { runCliProcess } from '../support/cli.js';
import { largeObjects, tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, untilCaughtUp, waitFor, WRITER_TABLES, writerSchemaSql, type Writer } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];
const APP_PASSWORD = 'app-secret-pw';

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'cut-src' }), clusters.start({ name: 'cut-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Setup {
  db: string;
  app: string;
  dir: string;
  cli: (...args: string[]) => ReturnType<typeof runCliProcess>;
}

/** A database with the writer's tables and a quiet table, an application role, init and sync done. */
async function prepare(prefix: string, extraSql = ''): Promise<Setup> {
  const db = await createDatabase(src, uniqueDbName(prefix), writerSchemaSql(500) + "CREATE TABLE quiet (id int PRIMARY KEY, v text); INSERT INTO quiet SELECT g, 'q' || g FROM generate_series(1, 200) g;" + extraSql);
  const app = `app_${db}`.slice(0, 60);
  await src.query(`CREATE ROLE ${app} LOGIN PASSWORD '${APP_PASSWORD}'`);
  await src.query(`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${app}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${app}`, [], db);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cutover-'));
  tmpDirs.push(dir);
  const cli = (...args: string[]) => runCliProcess([...args, '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir]);
  const init = await cli('init', '--yes');
  expect(init.exitCode, init.stderr).toBe(0);
  const sync = await cli('sync', '--wait-timeout', '120');
  expect(sync.exitCode, sync.stderr).toBe(0);
  // Roles are copied without passwords: the application gets its password on the new server.
  await tgt.query(`ALTER ROLE ${app} PASSWORD '${APP_PASSWORD}'`);
  return { db, app, dir, cli };
}

function appWriter(s: Setup): Writer {
  return startWriter(src.conn(s.db, s.app, APP_PASSWORD), { pauseMs: 2 });
}

async function appCan(c: LocalCluster, s: Setup): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port: c.port, user: s.app, password: APP_PASSWORD, database: s.db });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return `connect: ${(err as Error).message}`;
  }
  try {
    const { rows } = await client.query<{ id: string }>("INSERT INTO w_items (qty, note) VALUES (1, 'after') RETURNING id::text AS id");
    return `inserted ${rows[0]!.id}`;
  } catch (err) {
    return `insert: ${(err as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
}

async function fenceSchemaExists(db: string): Promise<boolean> {
  return (await src.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry_fence'", [], db)).length > 0;
}

function cutoverState(dir: string): { phase: string; databases: Record<string, { fence: { status: string } | null; handOver: string }> } | undefined {
  const f = path.join(dir, 'cutover.json');
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}

async function stopWriter(w: Writer): Promise<number> {
  return w.stop().catch(() => w.commits());
}

const OWN_SUB = 'SELECT subenabled FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())';

describe('cutover', () => {
  it('hands over under an application writer: source refuses it, target equal at the fence, sequences ahead, large objects mirrored, inserts work at once', async () => {
    // Large objects: two copied by init, then one changed and one added on the source, one removed, and a stray one on the target.
    const s = await prepare('cut', "SELECT lo_from_bytea(910001, 'kept'), lo_from_bytea(910002, 'before'), lo_from_bytea(910003, 'dropped later');");
    expect(Object.keys(await largeObjects(tgt.conn(s.db)))).toEqual(['910001', '910002', '910003']);
    await src.query("SELECT lo_put(910002, 0, 'after!'), lo_from_bytea(910004, 'new since init'), lo_unlink(910003)", [], s.db);
    await tgt.query("SELECT lo_from_bytea(920001, 'stray')", [], s.db);
    const writer = appWriter(s);
    await waitFor('some commits', async () => writer.commits() > 50);
    const r = await s.cli('cutover', '--yes', '--json');
    const commits = await stopWriter(writer);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(commits).toBeGreaterThan(50);
    const doc = JSON.parse(r.stdout) as {
      ok: boolean; outcome: string; writeUnavailableMs: number; fenceLsn: string; phases: { name: string; ms: number }[]; sourceFenced: boolean;
      databases: { sessionsEnded: number; sequencesMoved: number; tablesFenced: number; largeObjects: { copied: number; removed: number } }[];
    };
    expect(doc).toMatchObject({ ok: true, outcome: 'handed-over', sourceFenced: true });
    expect(doc.databases[0]!.largeObjects).toMatchObject({ copied: 2, removed: 2 });
    expect(await largeObjects(tgt.conn(s.db))).toEqual(await largeObjects(src.conn(s.db)));
    expect(doc.fenceLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(typeof doc.writeUnavailableMs).toBe('number');
    expect(doc.phases.map((p) => p.name)).toEqual(['preconditions', 'fence', 'catch-up', 'sequences', 'large-objects', 'gate', 'hand-over']);
    expect(doc.databases[0]!.sessionsEnded).toBeGreaterThanOrEqual(1);
    expect(doc.databases[0]!.tablesFenced).toBe(5);
    expect(r.stdout).not.toContain(src.password);

    // The application can no longer write on the source: no login, and the trigger refuses even a superuser.
    expect(await appCan(src, s)).toMatch(/^connect: .*permission denied/);
    await expect(src.query("INSERT INTO w_items (qty, note) VALUES (1, 'late')", [], s.db)).rejects.toThrow(/fenced by pgferry/);
    await expect(src.query('TRUNCATE quiet', [], s.db)).rejects.toThrow(/fenced by pgferry/);

    // Every table on the target equals the source at the fence (the source cannot have changed since).
    const [source, target] = await Promise.all([tableHashes(src.conn(s.db)), tableHashes(tgt.conn(s.db))]);
    expect(Object.keys(source).sort()).toEqual([...WRITER_TABLES.map((t) => `public.${t}`), 'public.quiet'].sort());
    expect(target).toEqual(source);
    const seq = async (c: LocalCluster) => BigInt((await c.query<{ v: string }>('SELECT last_value::text AS v FROM w_items_id_seq', [], s.db))[0]!.v);
    expect(await seq(tgt)).toBeGreaterThanOrEqual(await seq(src));
    const maxSrc = BigInt((await src.query<{ m: string }>('SELECT max(id)::text AS m FROM w_items', [], s.db))[0]!.m);

    // Replication is gone: subscription on the target, slot on the source.
    expect(await tgt.query(OWN_SUB, [], s.db)).toEqual([]);
    expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' AND database = $1", [s.db])).toEqual([]);
    expect(cutoverState(s.dir)?.phase).toBe('done');

    // The application inserts on the target right away; its serial key continues past every source key.
    const ins = await appCan(tgt, s);
    expect(ins).toMatch(/^inserted \d+$/);
    expect(BigInt(ins.split(' ')[1]!)).toBeGreaterThan(maxSrc);

    // Running it again says it is done; --abort refuses to undo a hand-over.
    const again = await s.cli('cutover', '--yes');
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already handed over/);
    const abort = await s.cli('cutover', '--abort');
    expect(abort.exitCode).toBe(2);
    expect(await fenceSchemaExists(s.db)).toBe(true);
  });

  it("event triggers: init creates them disabled (none fires on pgferry's DDL, the log table replicates without a collision), the hand-over gives each the source's state, and the database's properties changed since init", async () => {
    // An audit trigger logging every DDL command into a table with a serial key, and a disabled one; foreign keys for init to create.
    const s = await prepare('cutevt', `CREATE TABLE ddl_log (id bigserial PRIMARY KEY, tag text NOT NULL);
      CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ddl_log (tag) VALUES (tg_tag); END $$;
      CREATE TABLE parent_t (id int PRIMARY KEY); CREATE TABLE child_t (id int PRIMARY KEY, parent_id int REFERENCES parent_t);
      CREATE INDEX child_parent ON child_t (parent_id);
      INSERT INTO parent_t SELECT generate_series(1, 50); INSERT INTO child_t SELECT g, g FROM generate_series(1, 50) g;
      CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
      CREATE EVENT TRIGGER noisy ON ddl_command_start EXECUTE FUNCTION log_ddl(); ALTER EVENT TRIGGER noisy DISABLE;`);
    const states = 'SELECT evtname, evtenabled FROM pg_event_trigger ORDER BY 1';
    expect(await tgt.query(states, [], s.db)).toEqual([{ evtname: 'audit_ddl', evtenabled: 'D' }, { evtname: 'noisy', evtenabled: 'D' }]);
    // DDL on the source logs a row there, which replication carries into the target's log under the source's key.
    await src.query('CREATE TABLE later_t (id int)', [], s.db);
    const log = 'SELECT id::int, tag FROM ddl_log ORDER BY id';
    const expected = await src.query(log, [], s.db);
    expect(expected.at(-1)).toMatchObject({ tag: 'CREATE TABLE' });
    await waitFor('the log row on the target', async () => JSON.stringify(await tgt.query(log, [], s.db)) === JSON.stringify(expected), 60_000);
    // The database's own properties, changed on the source since init (replication carries none), and a setting of the target's own.
    await src.query(`ALTER DATABASE ${s.db} SET work_mem = '8MB'; COMMENT ON DATABASE ${s.db} IS 'changed since init';
      REVOKE CONNECT ON DATABASE ${s.db} FROM PUBLIC; GRANT CONNECT ON DATABASE ${s.db} TO ${s.app}`);
    await tgt.query(`ALTER DATABASE ${s.db} SET maintenance_work_mem = '99MB'`);
    const writer = appWriter(s);
    await waitFor('some commits', async () => writer.commits() > 20);
    const r = await s.cli('cutover', '--yes');
    await stopWriter(writer);
    expect(r.exitCode, r.stderr + r.stdout).toBe(0);
    expect(await tgt.query(states, [], s.db)).toEqual([{ evtname: 'audit_ddl', evtenabled: 'O' }, { evtname: 'noisy', evtenabled: 'D' }]);
    const props = `SELECT shobj_description(d.oid, 'pg_database') AS comment, has_database_privilege('public', d.oid, 'CONNECT') AS public_connect,
                          has_database_privilege($2, d.oid, 'CONNECT') AS app_connect,
                          (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) AS settings
                     FROM pg_database d WHERE d.datname = $1`;
    // As the source had them before its fence revoked CONNECT; the target's own setting kept.
    expect(await tgt.query(props, [s.db, s.app])).toEqual([{ comment: 'changed since init', public_connect: false, app_connect: true, settings: ['maintenance_work_mem=99MB', 'work_mem=8MB'] }]);
    expect(await appCan(tgt, s)).toMatch(/^inserted \d+$/);
    // The new primary logs its DDL again, under keys past the source's (the sequence moved at cutover).
    await tgt.query('CREATE TABLE after_t (id int)', [], s.db);
    const after = await tgt.query<{ id: number; tag: string }>(log, [], s.db);
    expect(after.slice(0, expected.length)).toEqual(expected);
    expect(after.at(-1)).toMatchObject({ tag: 'CREATE TABLE' });
    // pgferry's own DDL on the source (publication, fence, cleanup) fired none of its triggers: only the set-up's grants and the
    // application's table are logged (before, the fence's CREATE TRIGGER made the audit trigger write into a table the fence had
    // just closed).
    const cleanup = await s.cli('cleanup', '--yes');
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
    expect((await src.query<{ tag: string }>(log, [], s.db)).map((r) => r.tag)).toEqual(['GRANT', 'GRANT', 'CREATE TABLE']);
  });

  it("--refresh-materialized-views refreshes the populated ones before the fence, each after the views it reads; the source's own subscriptions are named", async () => {
    const s = await prepare('cutmv', `CREATE MATERIALIZED VIEW mv_total AS SELECT count(*) AS n FROM quiet;
      CREATE VIEW v_total AS SELECT n FROM mv_total;
      CREATE MATERIALIZED VIEW a_double AS SELECT n * 2 AS n2 FROM v_total;
      CREATE MATERIALIZED VIEW mv_later AS SELECT 1 AS x WITH NO DATA;`);
    // Rows that replication carries, and a REFRESH it does not.
    await src.query("INSERT INTO quiet SELECT g, 'later' FROM generate_series(201, 260) g; REFRESH MATERIALIZED VIEW mv_total; REFRESH MATERIALIZED VIEW a_double", [], s.db);
    const views = 'SELECT (SELECT n::int FROM mv_total) AS total, (SELECT n2::int FROM a_double) AS doubled, (SELECT relispopulated FROM pg_class WHERE relname = $1) AS later';
    expect(await tgt.query(views, ['mv_later'], s.db)).toEqual([{ total: 200, doubled: 400, later: false }]);
    // A subscription of the source's own (made without connecting): named, since it would go on feeding the old source alone.
    await src.query("CREATE SUBSCRIPTION feed_in CONNECTION 'host=127.0.0.1 port=1 dbname=elsewhere' PUBLICATION upstream_pub WITH (connect = false)", [], s.db);
    const r = await s.cli('cutover', '--yes', '--json', '--refresh-materialized-views');
    await src.query('ALTER SUBSCRIPTION feed_in SET (slot_name = NONE); DROP SUBSCRIPTION feed_in', [], s.db);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { phases: { name: string }[]; warnings: string[] };
    expect(doc.phases.map((p) => p.name).slice(0, 2)).toEqual(['preconditions', 'refresh-views']);
    expect(doc.warnings.join('\n')).toContain(`database "${s.db}": the source subscribes to publications elsewhere (feed_in): after the hand-over they go on applying to the fenced source only`);
    // a_double reads mv_total through a plain view: refreshed after it, whatever the names' order.
    expect(await tgt.query(views, ['mv_later'], s.db)).toEqual([{ total: 260, doubled: 520, later: false }]);
  });

  it('--reverse is refused before anything is fenced when the target has no room for the reverse slot', async () => {
    const s = await prepare('revroom');
    const [room] = await tgt.query<{ free: number }>("SELECT current_setting('max_replication_slots')::int - (SELECT count(*)::int FROM pg_replication_slots) AS free");
    const hogs = Array.from({ length: room!.free }, (_, i) => `hog${i}_${s.db}`.slice(0, 63));
    for (const h of hogs) await tgt.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [h], s.db);
    try {
      const r = await s.cli('cutover', '--yes', '--reverse', '--verify', 'none');
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--reverse replicates from the target back to the old source after the hand-over, and the target cannot: max_replication_slots = \d+ with \d+ in use, and 1 more needed \(one per database\); nothing was fenced/);
      expect(r.stderr).toMatch(/hint: on the target: ALTER SYSTEM SET max_replication_slots = \d+; then restart it and run cutover again \(or leave out --reverse\)/);
      expect(await fenceSchemaExists(s.db)).toBe(false);
      expect(await appCan(src, s)).toMatch(/^inserted \d+$/);
    } finally {
      for (const h of hogs) await tgt.query('SELECT pg_drop_replication_slot($1)', [h]);
    }
  });

  it('--reverse: a row written on the new primary reaches the old source', async () => {
    const s = await prepare('rev');
    const writer = appWriter(s);
    await waitFor('some commits', async () => writer.commits() > 20);
    const r = await s.cli('cutover', '--yes', '--reverse', '--verify', 'none');
    await stopWriter(writer);
    expect(r.exitCode, r.stderr + r.stdout).toBe(0);
    const ins = await appCan(tgt, s);
    expect(ins).toMatch(/^inserted \d+$/);
    const id = ins.split(' ')[1]!;
    await waitFor('the row on the old source', async () => (await src.query('SELECT 1 FROM w_items WHERE id = $1', [id], s.db)).length === 1, 60_000);
    // The old source still refuses the application itself.
    expect(await appCan(src, s)).toMatch(/^connect: .*permission denied/);

    // cleanup ends the reverse replication too (the fence stays).
    const cleanup = await s.cli('cleanup', '--yes');
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
    expect(await src.query(OWN_SUB, [], s.db)).toEqual([]);
    expect(await tgt.query("SELECT 1 FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], s.db)).toEqual([]);
    expect(await tgt.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' AND database = $1", [s.db])).toEqual([]);
    expect(await fenceSchemaExists(s.db)).toBe(true);
  });

  it('a difference on the target fails the gate: exit 1 with the located row, source writable again, replication still running', async () => {
    const s = await prepare('gate');
    // Changed behind replication's back, in a table nobody writes.
    await tgt.query("SET session_replication_role = replica; UPDATE quiet SET v = 'changed' WHERE id = 42", [], s.db);
    const writer = appWriter(s);
    await waitFor('some commits', async () => writer.commits() > 20);
    const r = await s.cli('cutover', '--yes', '--json');
    await stopWriter(writer);
    expect(r.exitCode, r.stderr).toBe(1);
    const doc = JSON.parse(r.stdout) as { ok: boolean; outcome: string; sourceFenced: boolean; gate: { verify: { databases: { tables: { name: string; diffs: { kind: string; key: Record<string, string> }[] }[] }[] } } };
    expect(doc).toMatchObject({ ok: false, outcome: 'gate-failed', sourceFenced: false });
    const quiet = doc.gate.verify.databases[0]!.tables.find((t) => t.name === 'quiet')!;
    expect(quiet.diffs).toEqual([{ kind: 'different', key: { id: '42' } }]);

    expect(await fenceSchemaExists(s.db)).toBe(false);
    expect(await appCan(src, s)).toMatch(/^inserted \d+$/);
    expect(cutoverState(s.dir)).toBeUndefined();
    expect(await tgt.query(OWN_SUB, [], s.db)).toEqual([{ subenabled: true }]);
    const w2 = appWriter(s);
    await waitFor('more commits', async () => w2.commits() > 20);
    await stopWriter(w2);
    await untilCaughtUp(src, tgt, s.db, s.dir);
    const st = await runStatus({ source: src.conn(s.db), target: tgt.conn(s.db), stateDir: s.dir });
    expect(st.health).toBe('healthy');
  });

  it('kill -9 at every phase: the state knows every fence, --abort lifts it, a rerun finishes; never a half hand-over', async () => {
    const s = await prepare('kill');
    const points = ['cutover.fence-recorded', 'cutover.after-fence', 'cutover.after-catch-up', 'cutover.after-sequences', 'cutover.after-gate'];
    for (const point of points) {
      const writer = appWriter(s);
      await waitFor('some commits', async () => writer.commits() > 10);
      const r = await runCliProcess(['cutover', '--yes', '--source', src.url(s.db), '--target', tgt.url(s.db), '--state-dir', s.dir], { env: { PGFERRY_FAULT_POINT: point } });
      await stopWriter(writer);
      expect(r.exitCode, `${point}: ${r.stderr}`).toBe(-1);
      // A fence in place is always in the state; nothing was handed over.
      const st = cutoverState(s.dir);
      expect(st, point).toBeDefined();
      const rec = Object.values(st!.databases)[0]!;
      if (await fenceSchemaExists(s.db)) expect(rec.fence?.status, point).toMatch(/^(fencing|fenced)$/);
      expect(rec.handOver).toBe('none');
      expect(await tgt.query(OWN_SUB, [], s.db), point).toEqual([{ subenabled: true }]);

      if (point !== 'cutover.after-fence') {
        const abort = await s.cli('cutover', '--abort');
        expect(abort.exitCode, `${point}: ${abort.stderr}`).toBe(0);
      } else {
        // A rerun that stops at the gate's fault point again, then --abort.
        const again = await runCliProcess(['cutover', '--yes', '--source', src.url(s.db), '--target', tgt.url(s.db), '--state-dir', s.dir], { env: { PGFERRY_FAULT_POINT: 'cutover.after-gate' } });
        expect(again.exitCode, again.stderr).toBe(-1);
        const abort = await s.cli('cutover', '--abort', '--json');
        expect(abort.exitCode, abort.stderr).toBe(0);
        expect(JSON.parse(abort.stdout)).toMatchObject({ ok: true, unfenced: [s.db] });
      }
      expect(await fenceSchemaExists(s.db), point).toBe(false);
      expect(cutoverState(s.dir), point).toBeUndefined();
      expect(await appCan(src, s), point).toMatch(/^inserted \d+$/);
    }

    // Killed in the middle of the hand-over: --abort refuses, a rerun finishes it.
    const writer = appWriter(s);
    await waitFor('some commits', async () => writer.commits() > 10);
    const r = await runCliProcess(['cutover', '--yes', '--source', src.url(s.db), '--target', tgt.url(s.db), '--state-dir', s.dir], { env: { PGFERRY_FAULT_POINT: 'cutover.after-subscription-drop' } });
    await stopWriter(writer);
    expect(r.exitCode, r.stderr).toBe(-1);
    expect(cutoverState(s.dir)!.phase).toBe('hand-over');
    expect(await tgt.query(OWN_SUB, [], s.db)).toEqual([]);
    const abort = await s.cli('cutover', '--abort');
    expect(abort.exitCode).toBe(2);
    expect(abort.stderr).toMatch(/hand-over has begun/);
    const rerun = await s.cli('cutover', '--yes');
    expect(rerun.exitCode, rerun.stderr).toBe(0);
    expect(cutoverState(s.dir)!.phase).toBe('done');
    expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' AND database = $1", [s.db])).toEqual([]);
    const [source, target] = await Promise.all([tableHashes(src.conn(s.db)), tableHashes(tgt.conn(s.db))]);
    expect(target).toEqual(source);
    expect(await appCan(src, s)).toMatch(/^connect: /);
  });
});
