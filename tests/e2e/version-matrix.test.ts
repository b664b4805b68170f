/**
 * PostgreSQL majors old → new and same-major, through the built CLI as a
 * runbook uses it: init and sync under a running writer, verify, cleanup, and
 * an independent comparison of every writer table at the end.
 *
 * The normal run takes a representative subset (tests/support/matrix.ts);
 * PGFERRY_FULL_MATRIX=1 (scripts/version-matrix.sh) runs every pair.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { pairName, selectedPairs, SYSTEM_MAJOR, type VersionPair } from '../support/matrix.js';
import { startWriter, untilCaughtUp, waitFor, writerSchemaSql, writerTableHashes } from '../support/writer.js';

const clusters = useClusters();

function startMajor(major: number, name: string): Promise<LocalCluster> {
  return major === SYSTEM_MAJOR ? clusters.start({ name }) : clusters.startMajor(major, { name });
}

async function migrate(pair: VersionPair): Promise<void> {
  const tag = `m${pair.source}to${pair.target}`;
  const [src, tgt] = await Promise.all([startMajor(pair.source, `${tag}src`), startMajor(pair.target, `${tag}tgt`)]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-matrix-'));
  try {
    expect([src.major, tgt.major]).toEqual([pair.source, pair.target]);
    const db = await createDatabase(src, uniqueDbName('mx'), writerSchemaSql(3000));
    const pgferry = (...args: string[]) => runCliProcess([...args, '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir]);
    const secrets = (r: { stdout: string; stderr: string }) => {
      expect(r.stdout + r.stderr).not.toContain(src.password);
      expect(r.stdout + r.stderr).not.toContain(tgt.password);
    };

    const writer = startWriter(src.conn(db), { pauseMs: 5 });
    let stopped = false;
    try {
      const validate = await pgferry('validate');
      secrets(validate);
      // Warnings are allowed (exit 0); nothing may fail.
      expect(validate.exitCode, validate.stdout + validate.stderr).toBe(0);

      const init = await pgferry('init', '--yes');
      secrets(init);
      expect(init.exitCode, init.stdout + init.stderr).toBe(0);

      const sync = await pgferry('sync', '--wait-timeout', '120');
      secrets(sync);
      expect(sync.exitCode, sync.stdout + sync.stderr).toBe(0);
      expect(sync.stdout).toMatch(/in sync · lag/);

      // The writer keeps going while replication runs: changes after sync reached "in sync" travel too.
      const after = writer.commits();
      await waitFor('more writer commits', async () => writer.commits() >= after + 50);
      const commits = await writer.stop();
      stopped = true;
      expect(commits).toBeGreaterThan(after);
      await untilCaughtUp(src, tgt, db, dir);

      // Logical replication carries no sequences (cutover sets them): compare the rows.
      const verify = await pgferry('verify', '--no-sequences');
      secrets(verify);
      expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);
      expect(verify.stdout).toMatch(/^EQUAL: 4 tables/m);

      const { source, target } = await writerTableHashes(src, tgt, db, false);
      expect(source['public.w_items']!.rows).toBeGreaterThan(3000);
      expect(target).toEqual(source);

      const cleanup = await pgferry('cleanup', '--yes');
      secrets(cleanup);
      expect(cleanup.exitCode, cleanup.stdout + cleanup.stderr).toBe(0);
      expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'")).toHaveLength(0);
      expect(await src.query("SELECT 1 FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db)).toHaveLength(0);
      expect(await tgt.query("SELECT 1 FROM pg_subscription WHERE subname LIKE 'pgferry%'")).toHaveLength(0);
    } finally {
      if (!stopped) await writer.stop().catch(() => {});
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    // Free the machine for the next pair (stop() is idempotent; afterAll stops them again on failure paths).
    await Promise.allSettled([src.stop(), tgt.stop()]);
  }
}

describe('version matrix (init + sync under a writer + verify + cleanup)', () => {
  for (const pair of selectedPairs()) {
    it(`PostgreSQL ${pair.source} → ${pair.target} (${pairName(pair)})`, () => migrate(pair), 300_000);
  }
});
