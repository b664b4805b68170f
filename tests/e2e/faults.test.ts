/**
 * kill -9 at every named fault point (src/fault.ts), under a running writer,
 * through the built CLI: the command dies by SIGKILL at the point, the same
 * command run again resumes or redoes cleanly, the pipeline is finished
 * (init → sync → caught up), the writer stops, and an independent comparison
 * finds every table exactly equal (nothing lost, nothing doubled: the keyless
 * table w_log counts its copies) and the sequences equal after `pgferry
 * sequences`. Then `cleanup` leaves no pgferry object on either side: no
 * slot, publication, subscription, replication origin, state file or lock.
 *
 * Cutover's points are exercised by tests/integration/cutover.test.ts, the
 * timestamp method's and the client applier's by their own sync tests; every
 * other point of FAULT_POINTS is a case here, so a new point is a new case.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_ENV, FAULT_POINTS, type FaultPointName } from '../../src/fault.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess, startCli, type CliResult } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { sequenceValues, tableHashes } from '../support/compare.js';
import { startWriter, untilCaughtUp, writerSchemaSql, type Writer } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

/** The writer's tables, a table nobody writes (verify and repair get their differences there) and a role to copy. */
const SCHEMA = `${writerSchemaSql(3000)}
  CREATE TABLE quiet (id int PRIMARY KEY, v text NOT NULL);
  INSERT INTO quiet SELECT g, 'q' || g FROM generate_series(1, 300) g;
  ANALYZE;`;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'faults-src' }), clusters.start({ name: 'faults-tgt' })]);
  await src.query('DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = \'faults_app\') THEN CREATE ROLE faults_app NOLOGIN; END IF; END $$');
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Case {
  db: string;
  dir: string;
  writer: Writer;
}

const conns = (c: Case) => ['--source', src.url(c.db), '--target', tgt.url(c.db), '--state-dir', c.dir];
/** w_items (≈ 400 kB) is copied in parts, so that a split table is in flight. */
const initArgs = (c: Case, point?: FaultPointName) =>
  ['init', '--yes', '--jobs', '2', '--split-tables-larger-than', '64kB', '--max-parts', '4', ...(point === 'init.roles' ? [] : ['--no-roles']), ...conns(c)];
const syncArgs = (c: Case) => ['sync', '--wait-timeout', '120', ...conns(c)];
/**
 * Only the quiet table: the writer's tables change all the time, and the final
 * comparison (after the writer stopped) checks every table anyway.
 */
const verifyArgs = (c: Case, repair: boolean) =>
  ['verify', '--tables', 'public.quiet', '--no-sequences', ...(repair ? ['--repair', '--yes'] : []), ...conns(c)];

async function run(args: string[]): Promise<CliResult> {
  return runCliProcess(args);
}

/** Run the command with the fault point set: it must die by SIGKILL (not exit by itself). */
async function killedAt(point: FaultPointName, args: string[]): Promise<void> {
  const r = (await startCli(args, { env: { [FAULT_ENV]: point } })) as unknown as { signal?: string; exitCode?: number; stderr: string };
  expect({ signal: r.signal, exitCode: r.exitCode }, String(r.stderr)).toEqual({ signal: 'SIGKILL', exitCode: undefined });
}

function expectOk(r: CliResult, what: string): void {
  expect(r.exitCode, `${what}\n${r.stdout}\n${r.stderr}`).toBe(0);
}

/** Rows the target gets wrong on purpose, in a table the writer never touches: verify finds them, repair fixes them. */
async function spoilTarget(c: Case): Promise<void> {
  await tgt.query("UPDATE quiet SET v = 'spoiled' WHERE id = 5; DELETE FROM quiet WHERE id IN (7, 8); INSERT INTO quiet VALUES (1000, 'extra')", [], c.db);
}

async function pgferryObjects(db: string): Promise<string[]> {
  const [slots, pubs, subs, origins] = await Promise.all([
    src.query<{ n: string }>("SELECT 'slot ' || slot_name AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' OR slot_name ~ '^pg_[0-9]+_sync_'"),
    src.query<{ n: string }>("SELECT 'publication ' || pubname AS n FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db),
    tgt.query<{ n: string }>("SELECT 'subscription ' || subname AS n FROM pg_subscription"),
    tgt.query<{ n: string }>("SELECT 'origin ' || roname AS n FROM pg_replication_origin"),
  ]);
  return [...slots, ...pubs, ...subs, ...origins].map((r) => r.n);
}

/** Everything equal on both sides: every table's rows and count, and (after `pgferry sequences`) every sequence. */
async function expectSameData(c: Case): Promise<void> {
  const [s, t] = await Promise.all([tableHashes(src.conn(c.db)), tableHashes(tgt.conn(c.db))]);
  expect(Object.keys(s).sort()).toEqual(['public.quiet', 'public.w_docs', 'public.w_items', 'public.w_log', 'public.w_region']);
  expect(t).toEqual(s);
  expectOk(await run(['sequences', '--yes', ...conns(c)]), 'sequences');
  expect(await sequenceValues(tgt.conn(c.db))).toEqual(await sequenceValues(src.conn(c.db)));
}

/** Per point: what dies, how it is rerun, and what finishes the pipeline after it. */
async function exercise(point: FaultPointName, c: Case): Promise<void> {
  if (point.startsWith('init.')) {
    await killedAt(point, initArgs(c, point));
    expectOk(await run(initArgs(c, point)), 'init again');
    expectOk(await run(syncArgs(c)), 'sync');
  } else if (point.startsWith('sync.')) {
    expectOk(await run(initArgs(c)), 'init');
    await killedAt(point, syncArgs(c));
    expectOk(await run(syncArgs(c)), 'sync again');
  } else {
    expectOk(await run(initArgs(c)), 'init');
    expectOk(await run(syncArgs(c)), 'sync');
    await untilCaughtUp(src, tgt, c.db, c.dir);
    await spoilTarget(c);
    const repair = point === 'repair.mid-write';
    await killedAt(point, verifyArgs(c, repair));
    if (repair) {
      // The killed transaction is rolled back whole: the spoiled rows are as they were.
      const rows = await tgt.query<{ r: string }>("SELECT string_agg(id || ':' || v, ',' ORDER BY id) AS r FROM quiet WHERE id IN (5, 7, 8, 1000)", [], c.db);
      expect(rows[0]!.r).toBe('5:spoiled,1000:extra');
    } else {
      const again = await run(verifyArgs(c, false));
      expect(again.exitCode, again.stdout + again.stderr).toBe(1);
      expect(again.stdout).toMatch(/quiet/);
    }
    expectOk(await run(verifyArgs(c, true)), 'verify --repair');
  }
}

// Cutover, the timestamp method and the client applier have their own kill -9 tests (cutover.test.ts,
// sync-timestamp.test.ts, sync-client.test.ts): their pipelines differ from the one run here.
const POINTS = FAULT_POINTS.filter((p) => !p.startsWith('cutover.') && !p.startsWith('sync.timestamp.') && !p.startsWith('sync.client.'));

describe('kill -9 at each fault point, rerun, finish, compare, clean up', () => {
  it.each(POINTS)('%s', async (point) => {
    const c: Case = {
      db: await createDatabase(src, uniqueDbName('fault'), SCHEMA),
      dir: await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-faults-')),
      writer: undefined as unknown as Writer,
    };
    tmpDirs.push(c.dir);
    c.writer = startWriter(src.conn(c.db), { pauseMs: 5 });
    let stopped = false;
    try {
      await exercise(point, c);
      await untilCaughtUp(src, tgt, c.db, c.dir);
      const commits = await c.writer.stop();
      stopped = true;
      expect(commits).toBeGreaterThan(0);
      await untilCaughtUp(src, tgt, c.db, c.dir);
      await expectSameData(c);

      expectOk(await run(['cleanup', '--yes', ...conns(c)]), 'cleanup');
      expect(await pgferryObjects(c.db)).toEqual([]);
      for (const f of ['lock', 'state.json']) expect(existsSync(path.join(c.dir, f)), f).toBe(false);
    } finally {
      if (!stopped) await c.writer.stop().catch(() => {});
    }
  });
});
