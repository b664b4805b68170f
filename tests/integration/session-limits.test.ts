/**
 * The limits a database or role sets for its applications (a statement_timeout, a lock_timeout, an idle-in-
 * transaction timeout, a read-only default) must not stop pgferry's own sessions, nor the tools it runs: pg_dump
 * ignores them too. Here the role pgferry connects as carries all four, with limits no statement meets. And a
 * row-level security policy must not make verify compare fewer rows than there are.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCleanup } from '../../src/pipeline/cleanup/run.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runSync } from '../../src/pipeline/sync/run.js';
import { verify, VERIFY_DEFAULTS } from '../../src/pipeline/verify/index.js';
import { runTool } from '../../src/postgres/tools.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const dirs: string[] = [];
const ROLE = 'pgf_limited';
const PASSWORD = 'limited-pw-1';

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'limits-src' }), clusters.start({ name: 'limits-tgt' })]);
  await Promise.all([src, tgt].map(limit));
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** The role pgferry connects as, with limits no statement meets. */
async function limit(c: LocalCluster): Promise<void> {
  await c.query(`CREATE ROLE ${ROLE} SUPERUSER LOGIN PASSWORD '${PASSWORD}';
    ALTER ROLE ${ROLE} SET statement_timeout = '1ms';
    ALTER ROLE ${ROLE} SET lock_timeout = '1ms';
    ALTER ROLE ${ROLE} SET idle_in_transaction_session_timeout = '1ms';
    ALTER ROLE ${ROLE} SET default_transaction_read_only = on;`);
}

/** init (with its slot) and verify of a new database, connecting as the limited role on both sides. */
async function initAndVerify(tgt: LocalCluster, o: { sync: boolean }): Promise<void> {
  const db = await createDatabase(src, uniqueDbName('limits'), `CREATE TABLE t (id int PRIMARY KEY, v text);
    INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g; CREATE INDEX t_v ON t (v);`);
  const [source, target] = [src.conn(db, ROLE, PASSWORD), tgt.conn(db, ROLE, PASSWORD)];
  // The role's settings, which hold for any session that does not override them (a plain session of the role has 1 ms to live).
  expect((await src.query<{ c: string[] }>(`SELECT setconfig AS c FROM pg_db_role_setting WHERE setrole = '${ROLE}'::regrole AND setdatabase = 0`))[0]!.c)
    .toEqual(expect.arrayContaining(['statement_timeout=1ms', 'default_transaction_read_only=on']));
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
  dirs.push(stateDir);
  const report = await runInit({
    source, target, scope: emptyScope(), stateDir, jobs: 2, noSync: false, noOwner: true, noPrivileges: false, noRoles: true,
    fkNotValid: false, dropExisting: false, restart: false, dryRun: false, signal: new AbortController().signal,
  });
  const d = report.databases[0]!;
  expect(d.phase).toBe('done');
  expect(await tgt.query('SELECT count(*)::int AS n FROM t', [], db)).toEqual([{ n: 20000 }]);
  if (o.sync) {
    // The subscription's walsender is a session of the role too (before, CREATE SUBSCRIPTION's look at the publication was cancelled).
    const sync = await runSync({ source, target, stateDir, waitTimeoutSeconds: 120, pollMs: 250, signal: new AbortController().signal });
    expect(sync.final?.inSync).toBe(true);
    await src.query("INSERT INTO t SELECT g, 'later' FROM generate_series(20001, 20500) g", [], db);
    await waitFor('the rows on the target', async () => (await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM t', [], db))[0]!.n === 20500, 60_000);
  }
  const v = await verify({
    source, target, scope: emptyScope(), jobs: 2, chunkRows: 2000, maxDiffs: VERIFY_DEFAULTS.maxDiffs, recheck: VERIFY_DEFAULTS.recheck,
    lagTimeoutMs: 20_000, sequences: true,
  });
  expect(v.databases[0]!.tables.map((t) => [t.name, t.status])).toEqual([['t', 'equal']]);
  const cleanup = await runCleanup({ source, target, stateDir, confirm: async () => true });
  expect(cleanup.items.length).toBeGreaterThan(0);
  expect(await src.query('SELECT slot_name FROM pg_replication_slots WHERE database = $1', [db])).toEqual([]);
}

describe('limits a role sets for applications', () => {
  it('stop neither init (its publication, slot, copy and restore), sync (its subscription), verify nor cleanup', async () => {
    await initAndVerify(tgt, { sync: true });
  });

  it('nor, on PostgreSQL 17, a transaction_timeout (which older servers refuse at login)', async () => {
    const tgt17 = await clusters.startMajor(17, { name: 'limits-tgt17' });
    await limit(tgt17);
    await tgt17.query(`ALTER ROLE ${ROLE} SET transaction_timeout = '1ms'`);
    // No sync here: the subscription's apply worker on the target runs with its owner's settings, which no client can override.
    await initAndVerify(tgt17, { sync: false });
  });

  it("reach the tools pgferry runs too, with the connection string's own options and a caller's settings and name", async () => {
    const db = await createDatabase(src, uniqueDbName('limtool'));
    const show = "SELECT current_setting('application_name'), current_setting('statement_timeout'), current_setting('transaction_read_only'), current_setting('synchronous_commit')";
    const conn = src.conn(db, ROLE, PASSWORD);
    const plain = await runTool('psql', ['-XAtc', show], { conn });
    expect(plain.stdout.trim()).toMatch(/^pgferry\|0\|off\|(on|off)$/); // the server's own synchronous_commit
    const named = await runTool('psql', ['-XAtc', show], { conn, applicationName: 'pgferry_restore', settings: { synchronous_commit: 'local' } });
    expect(named.stdout.trim()).toBe('pgferry_restore|0|off|local');
    // The connection string's options come after the defaults, the caller's settings after them (in PGOPTIONS, libpq dropped them).
    const own = await runTool('psql', ['-XAtc', show], { conn: { ...conn, params: { ...conn.params, options: '-c statement_timeout=5s' } }, settings: { synchronous_commit: 'local' } });
    expect(own.stdout.trim()).toBe('pgferry|5s|off|local');
  });

  it('row-level security hides no row from verify: a policy that would is an error naming the fix, never a smaller comparison', async () => {
    const db = uniqueDbName('rlsverify');
    const owner = `own_${db}`.slice(0, 60);
    for (const c of [src, tgt]) {
      await c.query(`CREATE ROLE ${owner} LOGIN PASSWORD 'rls-owner-1'`);
      await createDatabase(c, db, `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g;
        ALTER TABLE t OWNER TO ${owner}; ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY;
        CREATE POLICY few ON t USING (id <= 5);`);
    }
    // A difference the policy hides from the owner.
    await tgt.query("UPDATE t SET v = 'changed' WHERE id = 10", [], db);
    const v = await verify({
      source: src.conn(db, owner, 'rls-owner-1'), target: tgt.conn(db, owner, 'rls-owner-1'), scope: emptyScope(), jobs: 1, chunkRows: 2000,
      maxDiffs: VERIFY_DEFAULTS.maxDiffs, recheck: VERIFY_DEFAULTS.recheck, lagTimeoutMs: 20_000, sequences: true,
    });
    const t = v.databases[0]!.tables[0]!;
    expect(t.status).toBe('error');
    expect(t.error).toMatch(/row-level security policy for table "t".*BYPASSRLS/);
  });
});
