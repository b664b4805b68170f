/**
 * Server and network faults under a running writer, through the built CLI:
 *
 * - the source, then the target, crashed (`pg_ctl -m immediate`) and started
 *   again while init copies, and while sync waits for catch-up;
 * - every connection to the source, then to the target, cut by a TCP proxy
 *   (tests/support/proxy.ts) in the middle of init's COPY, and the
 *   replication stream (the subscription connects through the proxy) cut
 *   while sync waits and again while it streams.
 *
 * Each run either finishes by itself, or stops with a clear error (an exit
 * code of 3 or 4 and a message naming the side) and the same command run
 * again finishes. Either way the pipeline ends in an exact comparison of
 * every table and sequence, and cleanup leaves nothing behind. Each case
 * prints its outcome ("outcome: …") for docs/reliability.md.
 *
 * One table is slow to load on the target on purpose (a generated column
 * that sleeps while a role setting is on), so that the fault lands while the
 * copy is in flight.
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { runCliProcess, startCli, type CliResult } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { sequenceValues, tableHashes } from '../support/compare.js';
import { crashRestart } from '../support/crash.js';
import { startProxy, viaProxy, type TcpProxy } from '../support/proxy.js';
import { waitFor } from '../support/wait.js';
import { startWriter, untilCaughtUp, writerSchemaSql, type Writer } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];
const proxies: TcpProxy[] = [];

const SCHEMA = `${writerSchemaSql(2000)}
  CREATE FUNCTION slow_gate(i bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$
  BEGIN
    IF current_setting('pgferry_test.slow', true) = 'on' THEN PERFORM pg_sleep(0.003); END IF;
    RETURN i;
  END $$;
  CREATE TABLE slow (id bigserial PRIMARY KEY, g bigint GENERATED ALWAYS AS (slow_gate(id)) STORED, pad text NOT NULL);
  INSERT INTO slow (pad) SELECT repeat('p', 200) FROM generate_series(1, 1500) g;
  ANALYZE;`;

/**
 * Test clusters run with synchronous_commit = off for speed; a crash then loses the last
 * commits, which a production server does not (init's checkpoint trusts the target's
 * COMMIT: see docs/reliability.md). These servers commit durably, as production ones do.
 */
const DURABLE = { settings: { synchronous_commit: 'on' } };

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'srvfault-src', ...DURABLE }), clusters.start({ name: 'srvfault-tgt', ...DURABLE })]);
});
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Loading "slow" takes ~3 ms a row on the target while this is on (new sessions only). */
async function slowTarget(on: boolean): Promise<void> {
  await tgt.query(on ? "ALTER ROLE postgres SET pgferry_test.slow = 'on'" : 'ALTER ROLE postgres RESET pgferry_test.slow');
}

interface Case {
  db: string;
  dir: string;
  source: string;
  target: string;
  writer: Writer;
}

async function newCase(opts: { sourceProxy?: TcpProxy; targetProxy?: TcpProxy } = {}): Promise<Case> {
  const db = await createDatabase(src, uniqueDbName('srvfault'), SCHEMA);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-srvfault-'));
  tmpDirs.push(dir);
  const source = opts.sourceProxy ? viaProxy(src.url(db), opts.sourceProxy) : src.url(db);
  const target = opts.targetProxy ? viaProxy(tgt.url(db), opts.targetProxy) : tgt.url(db);
  return { db, dir, source, target, writer: startWriter(src.conn(db), { pauseMs: 5 }) };
}

async function proxyTo(c: LocalCluster): Promise<TcpProxy> {
  const p = await startProxy('127.0.0.1', c.port);
  proxies.push(p);
  return p;
}

const conns = (c: Case) => ['--source', c.source, '--target', c.target, '--state-dir', c.dir];
const initArgs = (c: Case) => ['init', '--yes', '--no-roles', '--jobs', '2', ...conns(c)];
const syncArgs = (c: Case) => ['sync', '--wait-timeout', '150', '--max-lag', '1MB', ...conns(c)];

/** The writer died with the source: start it again (what it had committed stays). */
async function restartWriter(c: Case): Promise<void> {
  await c.writer.stop().catch(() => {});
  c.writer = startWriter(src.conn(c.db), { pauseMs: 5 });
}

async function readState(dir: string): Promise<RunState | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, 'state.json'), 'utf8')) as RunState;
  } catch {
    return undefined;
  }
}

async function untilCopyingSlow(c: Case): Promise<void> {
  await waitFor('init to copy the slow table', async () => (await readState(c.dir))?.databases[c.db]?.tables['public.slow']?.status === 'copying', 60_000, 50);
}

async function untilSubscribed(): Promise<void> {
  await waitFor('the subscription to be enabled', async () => {
    const r = await tgt.query<{ ok: boolean }>('SELECT bool_or(subenabled) AS ok FROM pg_subscription WHERE subname LIKE $1', ['pgferry%']);
    return !!r[0]?.ok;
  }, 60_000, 50);
}

/**
 * A run that met a fault: it finished (exit 0), or it stopped with a clear
 * error naming the side, and the same command then finishes. Returns the outcome line.
 */
async function finishes(what: string, first: CliResult, again: () => Promise<CliResult>, side: RegExp): Promise<string> {
  if (first.exitCode === 0) return `${what}: finished by itself`;
  const message = first.stderr.split('\n').find((l) => l.startsWith('error:')) ?? '';
  expect([3, 4], `${what}: exit ${first.exitCode}\n${first.stdout}\n${first.stderr}`).toContain(first.exitCode);
  expect(first.stderr, what).toMatch(side);
  const second = await again();
  expect(second.exitCode, `${what} again\n${second.stdout}\n${second.stderr}`).toBe(0);
  return `${what}: exit ${first.exitCode} ("${message}"), rerun finished`;
}

/** Caught up, writer stopped, every table and sequence equal, cleanup leaves nothing. */
async function finishAndCompare(c: Case): Promise<void> {
  await untilCaughtUp(src, tgt, c.db, c.dir);
  expect(await c.writer.stop()).toBeGreaterThan(0);
  await untilCaughtUp(src, tgt, c.db, c.dir);
  const [s, t] = await Promise.all([tableHashes(src.conn(c.db)), tableHashes(tgt.conn(c.db))]);
  expect(Object.keys(s)).toHaveLength(5);
  expect(t).toEqual(s);
  const seq = await runCliProcess(['sequences', '--yes', ...conns(c)]);
  expect(seq.exitCode, seq.stderr).toBe(0);
  expect(await sequenceValues(tgt.conn(c.db))).toEqual(await sequenceValues(src.conn(c.db)));
  const clean = await runCliProcess(['cleanup', '--yes', ...conns(c)]);
  expect(clean.exitCode, clean.stderr).toBe(0);
  const left = await Promise.all([
    src.query("SELECT slot_name FROM pg_replication_slots WHERE database = $1 AND (slot_name LIKE 'pgferry%' OR slot_name ~ '^pg_[0-9]+_sync_')", [c.db]),
    src.query("SELECT pubname FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], c.db),
    tgt.query('SELECT subname FROM pg_subscription'),
    tgt.query('SELECT roname FROM pg_replication_origin'),
  ]);
  expect(left.flat(), clean.stdout + clean.stderr).toEqual([]);
}

/** init with a fault injected while the slow table is in flight; then init again if needed, then sync. */
async function initWithFault(c: Case, what: string, fault: () => Promise<void>, side: RegExp): Promise<string> {
  await slowTarget(true);
  let outcome: string;
  try {
    const run = startCli(initArgs(c));
    await untilCopyingSlow(c);
    await fault();
    const first = (await run) as unknown as CliResult;
    if (process.env.FAULTS_DEBUG) console.info(String(first.stdout), String(first.stderr));
    await slowTarget(false);
    outcome = await finishes(what, { exitCode: first.exitCode ?? -1, stdout: String(first.stdout), stderr: String(first.stderr) }, () => runCliProcess(initArgs(c)), side);
  } finally {
    await slowTarget(false);
  }
  const sync = await runCliProcess(syncArgs(c));
  expect(sync.exitCode, sync.stderr).toBe(0);
  return outcome;
}

/** sync with a fault injected once the subscription is enabled (sync is waiting for catch-up). */
async function syncWithFault(c: Case, what: string, fault: () => Promise<void>, side: RegExp): Promise<string> {
  const init = await runCliProcess(initArgs(c));
  expect(init.exitCode, init.stderr).toBe(0);
  const run = startCli(syncArgs(c));
  await untilSubscribed();
  await fault();
  const first = (await run) as unknown as CliResult;
  return finishes(what, { exitCode: first.exitCode ?? -1, stdout: String(first.stdout), stderr: String(first.stderr) }, () => runCliProcess(syncArgs(c)), side);
}

describe('server and network faults', () => {
  it('the source crashes and restarts during init\'s COPY', async () => {
    const c = await newCase();
    const outcome = await initWithFault(c, 'source crash during init COPY', async () => {
      await crashRestart(src);
      await restartWriter(c);
    }, /source/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });

  it('the target crashes and restarts during init\'s COPY', async () => {
    const c = await newCase();
    const outcome = await initWithFault(c, 'target crash during init COPY', () => crashRestart(tgt), /target/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });

  it('the source crashes and restarts while sync waits', async () => {
    const c = await newCase();
    const outcome = await syncWithFault(c, 'source crash during sync', async () => {
      await crashRestart(src);
      await restartWriter(c);
    }, /source/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });

  it('the target crashes and restarts while sync waits', async () => {
    const c = await newCase();
    const outcome = await syncWithFault(c, 'target crash during sync', () => crashRestart(tgt), /target/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });

  it('every source connection is cut mid-COPY, then the replication stream is cut twice', async () => {
    const proxy = await proxyTo(src);
    const c = await newCase({ sourceProxy: proxy });
    const copy = await initWithFault(c, 'source connections cut during init COPY', async () => {
      expect(proxy.cut()).toBeGreaterThan(0);
    }, /source/);
    console.info(`outcome: ${copy}`);

    // The subscription reads the source through the proxy too (its connection string is --source).
    await waitFor('the walsender of the subscription', async () => (await src.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgferry%'")).length > 0);
    const before = proxy.accepted();
    expect(proxy.cut()).toBeGreaterThan(0);
    await waitFor('the apply worker to reconnect', async () => proxy.accepted() > before && (await src.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgferry%'")).length > 0, 90_000);
    console.info('outcome: replication stream cut while streaming: the apply worker reconnected by itself');
    await finishAndCompare(c);
  });

  it('every target connection is cut mid-COPY', async () => {
    const proxy = await proxyTo(tgt);
    const c = await newCase({ targetProxy: proxy });
    const outcome = await initWithFault(c, 'target connections cut during init COPY', async () => {
      // "copying" is recorded just before the workers connect: cut once they are loading rows.
      await waitFor('the copy workers on the target', () => proxy.live() > 0, 30_000, 20);
      await new Promise((r) => setTimeout(r, 300));
      expect(proxy.cut()).toBeGreaterThan(0);
    }, /target/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });

  it('the replication stream is cut while sync waits', async () => {
    const proxy = await proxyTo(src);
    const c = await newCase({ sourceProxy: proxy });
    const outcome = await syncWithFault(c, 'replication stream cut during sync', async () => {
      await waitFor('the walsender of the subscription', async () => (await src.query("SELECT 1 FROM pg_stat_replication WHERE application_name LIKE 'pgferry%'")).length > 0);
      expect(proxy.cut()).toBeGreaterThan(0);
    }, /source/);
    console.info(`outcome: ${outcome}`);
    await finishAndCompare(c);
  });
});
