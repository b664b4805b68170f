/**
 * sync against real clusters, with a writer on the source the whole time:
 * init, then sync on init's slot, then the writer stops and every table on
 * the target equals the source exactly (the filtered table: the source's rows
 * that match the filter) — no row lost, none applied twice. Also: an init
 * killed with SIGKILL and resumed, whose late tables PostgreSQL's table
 * synchronisation copies again; a rerun and --force (also eight times while the
 * apply worker is busy); a filter changed on a replicating table; the refusals
 * that come before anything is created; several databases at once; 13 → 17.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope, scopeFromFlags, type ScopeSpec } from '../../src/config/scope.js';
import { ExitCode, PgferryError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit, type InitOptions } from '../../src/pipeline/init/run.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { runSync, type SyncOptions } from '../../src/pipeline/sync/index.js';
import { loadState } from '../../src/state/checkpoint.js';
import { startCli } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import {
  startWriter, untilCaughtUp, waitFor, WRITER_FILTER, WRITER_FILTER_FLAG, WRITER_TABLES, writerSchemaSql, writerTableHashes,
} from '../support/writer.js';

const clusters = useClusters();
/** pg_subscription is shared by all databases: only this database's. */
const OWN_SUBSCRIPTIONS = 'SELECT 1 FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())';
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'sync-src' }), clusters.start({ name: 'sync-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-sync-'));
  tmpDirs.push(d);
  return d;
}

function initOptions(s: LocalCluster, t: LocalCluster, db: string, dir: string, scope: ScopeSpec): InitOptions {
  return {
    source: s.conn(db), target: t.conn(db), scope, stateDir: dir, jobs: 2, noSync: false, noOwner: false, noPrivileges: false,
    noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false, signal: new AbortController().signal,
  };
}

function syncOptions(s: LocalCluster, t: LocalCluster, db: string, dir: string, extra: Partial<SyncOptions> = {}): SyncOptions {
  return { source: s.conn(db), target: t.conn(db), stateDir: dir, waitTimeoutSeconds: 120, pollMs: 250, signal: new AbortController().signal, ...extra };
}

/** Every writer table equal on both sides (w_region: the source's rows that match the filter). */
async function expectEqual(s: LocalCluster, t: LocalCluster, db: string, filtered: boolean): Promise<void> {
  const { source: a, target: b } = await writerTableHashes(s, t, db, filtered);
  for (const name of WRITER_TABLES) {
    const key = `public.${name}`;
    expect(b[key], `${key} on the target`).toEqual(a[key]);
  }
  // The comparison can fail: the source really has rows outside the filter, and they are absent on the target.
  if (filtered) {
    const us = await t.query<{ n: number }>("SELECT count(*)::int AS n FROM w_region WHERE region <> 'eu'", [], db);
    expect(us[0]!.n).toBe(0);
    const srcUs = await s.query<{ n: number }>("SELECT count(*)::int AS n FROM w_region WHERE region <> 'eu'", [], db);
    expect(srcUs[0]!.n).toBeGreaterThan(0);
  }
}

/** Once `table` exists in target database `db`, hold ACCESS SHARE on it until release() (undefined if `gaveUp` first). */
async function holdTargetTable(t: LocalCluster, db: string, table: string, gaveUp: () => boolean): Promise<{ release: () => Promise<void> } | undefined> {
  let c: pg.Client | undefined;
  while (!c) {
    if (gaveUp()) return undefined;
    const attempt = new pg.Client({ host: '127.0.0.1', port: t.port, user: 'postgres', password: t.password, database: db });
    attempt.on('error', () => {});
    try {
      await attempt.connect();
      c = attempt;
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  for (;;) {
    const { rows } = await c.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [table]);
    if (rows[0]!.ok) break;
    if (gaveUp()) {
      await c.end();
      return undefined;
    }
  }
  await c.query('BEGIN');
  await c.query(`LOCK TABLE ${table} IN ACCESS SHARE MODE`);
  return {
    release: async () => {
      await c.query('ROLLBACK').catch(() => {});
      await c.end().catch(() => {});
    },
  };
}

describe('sync', () => {
  it('continues exactly where init\'s snapshot ended, under a writer the whole time', async () => {
    const db = await createDatabase(src, uniqueDbName('sync'), writerSchemaSql(3000));
    const dir = await stateDir();
    const scope = scopeFromFlags({ tableFilter: [WRITER_FILTER_FLAG] });
    const writer = startWriter(src.conn(db));
    await new Promise((r) => setTimeout(r, 300));
    const init = await runInit(initOptions(src, tgt, db, dir, scope));
    expect(init.databases[0]!.phase).toBe('done');
    await new Promise((r) => setTimeout(r, 500));

    // init created the publication, with the row filter, before its slot: sync finds nothing to change.
    const report = await runSync(syncOptions(src, tgt, db, dir));
    const d = report.databases[0]!;
    expect(d.publication.change).toBe('unchanged');
    expect(d.subscription.action).toBe('created');
    expect(d.tables.map((x) => x.route)).toEqual(['snapshot', 'snapshot', 'snapshot', 'snapshot']);
    expect(d.tables.find((x) => x.name === 'w_region')!.filter).toBe(WRITER_FILTER.where);
    expect(report.final?.inSync).toBe(true);
    // The source password sits in the target's catalog: said so.
    expect(report.warnings.join('\n')).toMatch(/stores the source password/);

    // Idempotent: again, nothing changes and nothing is copied.
    const again = await runSync(syncOptions(src, tgt, db, dir, { wait: false }));
    expect(again.databases[0]!.subscription.action).toBe('existing');
    expect(again.databases[0]!.tables.every((x) => x.route === 'kept')).toBe(true);
    expect(again.databases[0]!.publication.change).toBe('unchanged');

    // --force: a new subscription continues from the old one's applied position (nothing applied twice).
    await new Promise((r) => setTimeout(r, 500));
    const forced = await runSync(syncOptions(src, tgt, db, dir, { force: true }));
    expect(forced.databases[0]!.subscription.action).toBe('recreated');
    await new Promise((r) => setTimeout(r, 500));

    const commits = await writer.stop();
    expect(commits).toBeGreaterThan(20);
    await untilCaughtUp(src, tgt, db, dir);
    await expectEqual(src, tgt, db, true);
    const st = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(st.exitCode).toBe(0);
    expect(st.verdict).toMatch(/^in sync · lag /);
  });

  it('--force again and again while a writer runs flat out: the new subscription never applies a transaction twice', async () => {
    // The old subscription's applied position must be read once its workers have stopped: read while the
    // apply worker still runs, the transactions it applies in between are streamed and applied again.
    const db = await createDatabase(src, uniqueDbName('force'), writerSchemaSql(500));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db));
    await runInit(initOptions(src, tgt, db, dir, emptyScope()));
    await runSync(syncOptions(src, tgt, db, dir));
    const errors = async () => (await tgt.query<{ n: number }>(
      `SELECT coalesce(sum(apply_error_count), 0)::int AS n FROM pg_stat_subscription_stats s JOIN pg_subscription p ON p.oid = s.subid
        WHERE p.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, [], db))[0]!.n;
    const applied = async () => (await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM w_items', [], db))[0]!.n;
    for (let i = 0; i < 8; i++) {
      // Recreate while the worker is busy: wait until it has applied something new since the last round.
      const before = await applied();
      await waitFor('the apply worker to apply new rows', async () => {
        expect(await errors(), `apply errors on the target after ${i} recreations (a transaction applied twice?)`).toBe(0);
        return (await applied()) > before;
      }, 30_000, 20);
      const forced = await runSync(syncOptions(src, tgt, db, dir, { force: true, wait: false }));
      expect(forced.databases[0]!.subscription.action).toBe('recreated');
    }
    await writer.stop();
    // A transaction applied twice stops the apply worker on a duplicate key, over and over: fail on the first error.
    await untilCaughtUp(src, tgt, db, dir, async () => {
      expect(await errors(), 'apply errors on the target (a transaction applied twice?)').toBe(0);
    });
    expect(await errors()).toBe(0);
    await expectEqual(src, tgt, db, false);
  });

  it('a replicating table whose filter changes is emptied and copied again by table synchronisation, under a writer', async () => {
    const db = await createDatabase(src, uniqueDbName('refilter'), writerSchemaSql(500));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await runInit(initOptions(src, tgt, db, dir, scopeFromFlags({ tableFilter: [WRITER_FILTER_FLAG] })));
    await runSync(syncOptions(src, tgt, db, dir));

    const us = "region = 'us'";
    const scope = scopeFromFlags({ tableFilter: [`public.w_region:${us}`] });
    const changed = await runSync(syncOptions(src, tgt, db, dir, { scope, copyData: true }));
    const routes = Object.fromEntries(changed.databases[0]!.tables.map((x) => [x.name, x.route]));
    expect(routes).toEqual({ w_items: 'kept', w_docs: 'kept', w_log: 'kept', w_region: 'resync' });
    expect(changed.final?.inSync).toBe(true);

    await writer.stop();
    await untilCaughtUp(src, tgt, db, dir);
    const rest = WRITER_TABLES.filter((n) => n !== 'w_region').map((name) => ({ schema: 'public', name }));
    const [a, b] = await Promise.all([
      tableHashes(src.conn(db), [...rest, { schema: 'public', name: 'w_region', where: us }]),
      tableHashes(tgt.conn(db), [...rest, { schema: 'public', name: 'w_region' }]),
    ]);
    expect(b).toEqual(a);
    // Can fail: the target held only 'eu' rows before, and the source still has them.
    const eu = await tgt.query<{ n: number }>("SELECT count(*)::int AS n FROM w_region WHERE region = 'eu'", [], db);
    expect(eu[0]!.n).toBe(0);
    expect(a['public.w_region']!.rows).toBeGreaterThan(0);
  });

  it('after init was killed and resumed, PostgreSQL copies the late tables again with an exact hand-off', async () => {
    const db = await createDatabase(src, uniqueDbName('resume'), writerSchemaSql(200_000));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    const args = ['init', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--jobs', '2', '--max-parts', '1', '--no-roles', '--yes', '--table-filter', WRITER_FILTER_FLAG];
    // Kill init -9 once the small tables are done and w_items is still copying. To make that certain on a
    // busy machine, a session on the target holds w_items (ACCESS SHARE) from the moment it exists, so the
    // copy's TRUNCATE + COPY of w_items waits while the other worker finishes the small tables.
    const child = startCli(args, { timeoutMs: 120_000 });
    const holder = await holdTargetTable(tgt, db, 'w_items', () => (child as unknown as { exitCode: number | null }).exitCode !== null);
    let killedMidway = false;
    try {
      await waitFor('init to finish the small tables', async () => {
        const s = await loadState(dir).catch(() => undefined);
        const tables = Object.values(s?.databases[db]?.tables ?? {});
        const small = tables.filter((t) => t.name !== 'w_items');
        killedMidway = small.length > 0 && small.every((t) => t.status === 'done') && tables.some((t) => t.name === 'w_items' && t.status !== 'done');
        return killedMidway || (child as unknown as { exitCode: number | null }).exitCode !== null;
      }, 60_000, 10);
      child.kill('SIGKILL');
    } finally {
      await holder?.release();
    }
    const first = (await (child as unknown as Promise<{ exitCode?: number; stderr?: string }>).catch((e: unknown) => e)) as { exitCode?: number; stderr?: string };
    expect(killedMidway, `init was killed while w_items was copying (init exited ${first.exitCode}: ${String(first.stderr).slice(-1500)})`).toBe(true);
    const resumed = await startCli(args, { timeoutMs: 150_000 });
    expect(resumed.exitCode, String(resumed.stderr)).toBe(0);
    const state = (await loadState(dir))!;
    const late = Object.values(state.databases[db]!.tables).filter((t) => !t.consistentWithSlot);
    expect(late.map((t) => t.name)).toContain('w_items');

    const report = await runSync(syncOptions(src, tgt, db, dir));
    const routes = Object.fromEntries(report.databases[0]!.tables.map((x) => [x.name, x.route]));
    expect(routes.w_items).toBe('resync');
    expect(Object.values(routes)).toContain('snapshot');
    expect(report.final?.inSync).toBe(true);

    const commits = await writer.stop();
    expect(commits).toBeGreaterThan(20);
    await untilCaughtUp(src, tgt, db, dir);
    await expectEqual(src, tgt, db, true);
  });

  it('without init, --copy-data: refuses a keyless table before creating anything; with --set-replica-identity-full PostgreSQL copies it', async () => {
    const db = await createDatabase(src, uniqueDbName('keyless'), `CREATE TABLE bare (a int, b text); INSERT INTO bare VALUES (1, 'x'), (1, 'x'), (2, 'y');`);
    await createDatabase(tgt, db, 'CREATE TABLE bare (a int, b text);');
    const dir = await stateDir();
    const err = await runSync(syncOptions(src, tgt, db, dir, { copyData: true })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgferryError);
    expect((err as PgferryError).exitCode).toBe(ExitCode.usage);
    expect((err as Error).message).toMatch(/public\.bare/);
    expect((err as PgferryError).hint).toMatch(/--set-replica-identity-full/);
    expect(await tgt.query(OWN_SUBSCRIPTIONS, [], db)).toHaveLength(0);
    expect(await src.query('SELECT 1 FROM pg_publication', [], db)).toHaveLength(0);

    const ok = await runSync(syncOptions(src, tgt, db, dir, { copyData: true, setReplicaIdentityFull: true }));
    expect(ok.databases[0]!.replicaIdentityFull).toEqual(['public.bare']);
    expect(ok.databases[0]!.slot.createdBySubscription).toBe(true);
    expect(ok.databases[0]!.tables.map((t) => t.route)).toEqual(['copy']);
    await src.query("UPDATE bare SET b = 'z' WHERE a = 2; DELETE FROM bare WHERE a = 1 AND ctid = (SELECT min(ctid) FROM bare WHERE a = 1)", [], db);
    await untilCaughtUp(src, tgt, db, dir);
    const rows = await tgt.query<{ a: number; b: string }>('SELECT a, b FROM bare ORDER BY a, b', [], db);
    expect(rows).toEqual([{ a: 1, b: 'x' }, { a: 2, b: 'z' }]);
  });

  it('refuses a slot that cannot be read with the publication (changes older than it), and a sync without init', async () => {
    const db = await createDatabase(src, uniqueDbName('late_pub'), 'CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;');
    const dir = await stateDir();
    await runInit(initOptions(src, tgt, db, dir, emptyScope()));
    // The publication disappears after the slot was made, and a change is committed before sync re-creates it.
    const pub = (await src.query<{ n: string }>("SELECT pubname AS n FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db))[0]!.n;
    await src.query(`DROP PUBLICATION ${pub}`, [], db);
    await src.query('UPDATE t SET v = v + 1 WHERE id = 1', [], db);
    const err = await runSync(syncOptions(src, tgt, db, dir)).catch((e: unknown) => e);
    expect((err as PgferryError).exitCode).toBe(ExitCode.usage);
    expect((err as Error).message).toMatch(/cannot be read with publication .*does not exist/);
    expect((err as PgferryError).hint).toMatch(/pgferry init --restart/);
    expect(await tgt.query(OWN_SUBSCRIPTIONS, [], db)).toHaveLength(0);

    const none = await runSync(syncOptions(src, tgt, db, await stateDir())).catch((e: unknown) => e);
    expect((none as PgferryError).exitCode).toBe(ExitCode.usage);
    expect((none as Error).message).toMatch(/no init of this migration/);
  });
});

describe('sync 13 → 17', () => {
  let s13: LocalCluster;
  let t17: LocalCluster;
  beforeAll(async () => {
    [s13, t17] = await Promise.all([clusters.startMajor(13, { name: 'sync-13' }), clusters.startMajor(17, { name: 'sync-17' })]);
  });

  it('replicates several databases at once, each with its own slot, publication and subscription, under writers', async () => {
    const [a, b] = [uniqueDbName('multi_a'), uniqueDbName('multi_b')];
    await Promise.all([createDatabase(src, a, writerSchemaSql(1500)), createDatabase(src, b, writerSchemaSql(1500))]);
    const dir = await stateDir();
    const scope = scopeFromFlags({ includeDatabases: [a, b] });
    const writers = [startWriter(src.conn(a)), startWriter(src.conn(b))];
    await new Promise((r) => setTimeout(r, 300));
    const init = await runInit({ ...initOptions(src, tgt, a, dir, scope), target: tgt.conn('postgres') });
    expect(init.databases.map((d) => d.phase)).toEqual(['done', 'done']);
    const report = await runSync({ ...syncOptions(src, tgt, a, dir), target: tgt.conn('postgres') });
    expect(report.databases.map((d) => [d.sourceDatabase, d.targetDatabase, d.subscription.action]).sort()).toEqual([[a, a, 'created'], [b, b, 'created']].sort());
    expect(new Set(report.databases.map((d) => d.slot.name)).size).toBe(2);
    expect(new Set(report.databases.map((d) => d.subscription.name)).size).toBe(2);
    await new Promise((r) => setTimeout(r, 500));
    for (const w of writers) expect(await w.stop()).toBeGreaterThan(5);
    for (const db of [a, b]) {
      await untilCaughtUp(src, tgt, db, dir);
      await expectEqual(src, tgt, db, false);
    }
    const st = await runStatus({ source: src.conn(a), target: tgt.conn('postgres'), stateDir: dir });
    expect(st.exitCode).toBe(0);
    expect(st.databases.map((d) => d.sourceDatabase).sort()).toEqual([a, b].sort());
  });

  it('replicates from an old source to a new target under a writer', async () => {
    const db = await createDatabase(s13, uniqueDbName('x'), writerSchemaSql(2000));
    const dir = await stateDir();
    const scope = emptyScope();
    const writer = startWriter(s13.conn(db));
    const init = await runInit({ ...initOptions(s13, t17, db, dir, scope), pgBinDir: undefined });
    expect(init.databases[0]!.phase).toBe('done');
    const report = await runSync(syncOptions(s13, t17, db, dir));
    expect(report.databases[0]!.subscription.binary).toBe(false);
    expect(report.databases[0]!.subscription.streaming).toBeNull();
    const commits = await writer.stop();
    expect(commits).toBeGreaterThan(10);
    await untilCaughtUp(s13, t17, db, dir);
    await expectEqual(s13, t17, db, false);
  });
});

