/**
 * sync's wait for catch-up rides out server restarts: both servers are
 * stopped (`pg_ctl -m immediate`) the moment the wait begins and started
 * again a few seconds apart. The wait reconnects and ends in sync instead of
 * exiting with "cannot connect"; a writer runs before and after the restart,
 * and at the end every writer table on the target equals the source.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runSync } from '../../src/pipeline/sync/index.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, untilCaughtUp, waitFor, writerSchemaSql, writerTableHashes } from '../support/writer.js';
import { stopImmediately } from '../support/crash.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;

beforeAll(async () => {
  // Commits must survive the immediate stops below (the test clusters default to synchronous_commit = off,
  // which can lose a commit made just before a crash, such as the subscription sync has just created).
  const settings = { synchronous_commit: 'on' };
  [src, tgt] = await Promise.all([clusters.start({ name: 'restart-src', settings }), clusters.start({ name: 'restart-tgt', settings })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-sync-restart-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sync waiting for catch-up', () => {
  it('reconnects through a restart of both servers and ends in sync', async () => {
    const db = await createDatabase(src, uniqueDbName('restart'), writerSchemaSql(2000));
    const first = startWriter(src.conn(db), { pauseMs: 5 });
    await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: false, noOwner: false,
      noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
      signal: new AbortController().signal,
    });

    let restarted: Promise<void> | undefined;
    const updates: string[] = [];
    const progress = (e: ProgressEvent) => {
      if (e.kind === 'update' && e.id === 'sync/wait' && e.detail) updates.push(e.detail);
      if (e.kind !== 'start' || e.id !== 'sync/wait' || restarted) return;
      // Synchronously, before the wait's first poll: both servers are down when it polls.
      stopImmediately(src);
      stopImmediately(tgt);
      restarted = (async () => {
        await new Promise((r) => setTimeout(r, 3000));
        await src.restart();
        await new Promise((r) => setTimeout(r, 3000));
        await tgt.restart();
      })();
    };
    const report = await runSync({
      source: src.conn(db), target: tgt.conn(db), stateDir: dir, waitTimeoutSeconds: 150, pollMs: 250, signal: new AbortController().signal, progress,
    });
    await restarted;
    expect(report.final?.inSync).toBe(true);
    expect(updates.some((u) => /^reconnecting: cannot connect to the (source|target) \(postgres@127\.0\.0\.1:\d+\/restart_\w+\): connect ECONNREFUSED/.test(u)), updates.join('\n')).toBe(true);
    // The first writer's connection died with the source.
    await first.stop().catch(() => {});
    expect(first.commits()).toBeGreaterThan(0);

    // Changes after the restart travel too.
    const second = startWriter(src.conn(db), { pauseMs: 5 });
    await waitFor('writes after the restart', async () => second.commits() >= 100);
    await second.stop();
    await untilCaughtUp(src, tgt, db, dir);
    const { source, target } = await writerTableHashes(src, tgt, db, false);
    expect(target).toEqual(source);
  });
});
