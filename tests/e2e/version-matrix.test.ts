/**
 * PostgreSQL majors old → new and same-major, through the built CLI as a
 * runbook uses it: init and sync under a running writer, verify, cleanup, and
 * an independent comparison of every writer table at the end. Pairs across
 * majors also run with the client applier (sync --applier client), with a
 * transaction big enough to arrive streamed from 14 on.
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

function startMajor(major: number, name: string, settings?: Record<string, string>): Promise<LocalCluster> {
  return major === SYSTEM_MAJOR ? clusters.start({ name, settings }) : clusters.startMajor(major, { name, settings });
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

/**
 * The client applier across majors: pgoutput protocol 1 from a 12 source, streamed transactions
 * (protocol 2) from 14 and newer, applied to a newer target over plain connections.
 */
async function migrateWithClientApplier(pair: VersionPair): Promise<void> {
  const tag = `c${pair.source}to${pair.target}`;
  // 64 kB: from 14 on, the big transaction below arrives streamed (spooled by the applier) before its commit.
  const [src, tgt] = await Promise.all([startMajor(pair.source, `${tag}src`, pair.source >= 14 ? { logical_decoding_work_mem: "'64kB'" } : undefined), startMajor(pair.target, `${tag}tgt`)]);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-matrix-'));
  try {
    const db = await createDatabase(src, uniqueDbName('mc'), writerSchemaSql(2000));
    const pgferry = (...args: string[]) => runCliProcess([...args, '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir]);
    const writer = startWriter(src.conn(db), { pauseMs: 5 });
    let stopped = false;
    try {
      const init = await pgferry('init', '--yes');
      expect(init.exitCode, init.stdout + init.stderr).toBe(0);
      const first = await pgferry('sync', '--applier', 'client', '--until-caught-up');
      expect(first.exitCode, first.stdout + first.stderr).toBe(0);
      const after = writer.commits();
      // The writer's transactions each touch two w_items rows: this whole-table UPDATE may be a deadlock's victim; again then.
      for (let attempt = 0; ; attempt++) {
        try {
          await src.query("UPDATE w_items SET note = note || ' (big transaction)'", [], db);
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== '40P01' || attempt >= 5) throw err;
        }
      }
      await waitFor('more writer commits', async () => writer.commits() >= after + 50);
      await writer.stop();
      stopped = true;
      // Everything the source had when it started, which is now all of it.
      const last = await pgferry('sync', '--applier', 'client', '--until-caught-up');
      expect(last.exitCode, last.stdout + last.stderr).toBe(0);
      const verify = await pgferry('verify', '--no-sequences');
      expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);
      const { source, target } = await writerTableHashes(src, tgt, db, false);
      expect(target).toEqual(source);
      expect(await tgt.query('SELECT 1 FROM pg_subscription')).toHaveLength(0);
      if (pair.source >= 14) {
        await waitFor('the big transaction counted as streamed', async () =>
          (await src.query<{ n: string }>("SELECT coalesce(sum(stream_txns), 0)::text AS n FROM pg_stat_replication_slots WHERE slot_name LIKE 'pgferry%'"))[0]!.n !== '0');
      }
      const cleanup = await pgferry('cleanup', '--yes');
      expect(cleanup.exitCode, cleanup.stdout + cleanup.stderr).toBe(0);
      expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'")).toHaveLength(0);
      expect(await tgt.query("SELECT 1 FROM pg_replication_origin WHERE roname LIKE 'pgferry%'")).toHaveLength(0);
    } finally {
      if (!stopped) await writer.stop().catch(() => {});
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    await Promise.allSettled([src.stop(), tgt.stop()]);
  }
}

describe('version matrix (init + sync under a writer + verify + cleanup)', () => {
  for (const pair of selectedPairs()) {
    it(`PostgreSQL ${pair.source} → ${pair.target} (${pairName(pair)})`, () => migrate(pair), 300_000);
  }
  // Across majors only: a same-major pair adds nothing the client applier's own tests do not cover.
  for (const pair of selectedPairs().filter((p) => p.source !== p.target)) {
    it(`PostgreSQL ${pair.source} → ${pair.target} (${pairName(pair)}) with sync --applier client`, () => migrateWithClientApplier(pair), 300_000);
  }
});
