/**
 * `pgferry cutover` through the built CLI, without a terminal: exit codes for
 * bad flags (2), no connection (3), replication not set up (2), no --yes (2),
 * a dry run that lists what would be fenced and changes nothing, a catch-up
 * that cannot finish within --max-wait (1, source unfenced), then the
 * hand-over in plain text.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, waitFor, writerSchemaSql } from '../support/writer.js';

const ESC = new RegExp(String.fromCharCode(27));
const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;
let db: string;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'cli-cut-src' }), clusters.start({ name: 'cli-cut-tgt' })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cli-cutover-'));
  db = await createDatabase(src, uniqueDbName('clicut'), writerSchemaSql(300));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const conns = () => ['--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir];
const pgferry = (...args: string[]) => runCliProcess([...args, ...conns()]);
const fenced = async () => (await src.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry_fence'", [], db)).length > 0;

describe('pgferry cutover', () => {
  it('refuses bad flags (2) and an unreachable side (3) before touching anything', async () => {
    const bad = await pgferry('cutover', '--verify', 'sometimes', '--yes');
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/verify/);
    const wait = await pgferry('cutover', '--max-wait', '-1', '--yes');
    expect(wait.exitCode).toBe(2);
    const nothing = await runCliProcess(['cutover', '--yes', '--state-dir', dir]);
    expect(nothing.exitCode).toBe(2);
    expect(nothing.stderr).toMatch(/--source/);
    const down = await runCliProcess(['cutover', '--yes', '--json', '--source', 'postgresql://postgres@127.0.0.1:1/x', '--target', tgt.url(db), '--state-dir', dir]);
    expect(down.exitCode).toBe(3);
    expect(JSON.parse(down.stdout)).toMatchObject({ ok: false, error: { exitCode: 3 } });
  });

  it('refuses (2) while replication is not set up, and without --yes when there is no terminal', async () => {
    const init = await pgferry('init', '--yes');
    expect(init.exitCode, init.stderr).toBe(0);
    const noSync = await pgferry('cutover', '--yes');
    expect(noSync.exitCode).toBe(2);
    expect(noSync.stderr).toMatch(/not healthy.*nothing was fenced/);
    expect(await fenced()).toBe(false);

    const sync = await pgferry('sync', '--wait-timeout', '120');
    expect(sync.exitCode, sync.stderr).toBe(0);
    const noYes = await pgferry('cutover');
    expect(noYes.exitCode).toBe(2);
    expect(noYes.stderr).toMatch(/--yes/);
    expect(await fenced()).toBe(false);
  });

  it('--dry-run lists the tables, roles and sessions it would fence, and changes nothing', async () => {
    const held = new pg.Client({ host: '127.0.0.1', port: src.port, user: 'postgres', password: src.password, database: db, application_name: 'someone' });
    await held.connect();
    try {
      await held.query('BEGIN; SELECT 1');
      const r = await pgferry('cutover', '--dry-run', '--json');
      expect(r.exitCode, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout) as { outcome: string; plan: { databases: { tables: string[]; revokeConnect: (string | null)[]; sessions: { application: string; inTransaction: boolean }[] }[] } };
      expect(doc.outcome).toBe('dry-run');
      const d = doc.plan.databases[0]!;
      expect(d.tables).toEqual(['public.w_docs', 'public.w_items', 'public.w_log', 'public.w_region']);
      expect(d.revokeConnect).toContain(null);
      expect(d.sessions).toContainEqual(expect.objectContaining({ application: 'someone', inTransaction: true }));
      const text = await pgferry('cutover', '--dry-run', '--timestamp-column', 'changed_at');
      expect(text.exitCode).toBe(0);
      expect(text.stdout).toMatch(/CONNECT revoked from PUBLIC/);
      // A flag only the timestamp method reads is named, not silently dropped.
      expect(text.stderr).toMatch(/--timestamp-column only applies after init --method timestamp; ignored/);
      expect(text.stdout + text.stderr).not.toMatch(ESC);
      // The session is still there, and nothing was fenced.
      await held.query('SELECT 1');
      expect(await fenced()).toBe(false);
    } finally {
      await held.end().catch(() => {});
    }
    const abort = await pgferry('cutover', '--abort');
    expect(abort.exitCode).toBe(0);
    expect(abort.stdout).toMatch(/nothing to undo/);
  });

  it('exit 1 when the target cannot apply the fence LSN within --max-wait: the source is unfenced', async () => {
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await waitFor('some commits', async () => writer.commits() > 10);
    // A lock on the target stalls the apply worker: the fence LSN cannot be reached.
    const blocker = new pg.Client({ host: '127.0.0.1', port: tgt.port, user: 'postgres', password: tgt.password, database: db });
    await blocker.connect();
    try {
      await blocker.query('BEGIN; LOCK TABLE w_items IN ACCESS EXCLUSIVE MODE');
      await new Promise((r) => setTimeout(r, 500));
      const r = await pgferry('cutover', '--yes', '--max-wait', '2', '--json');
      await writer.stop().catch(() => {});
      expect(r.exitCode, r.stderr).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, outcome: 'catch-up-timeout', sourceFenced: false });
      expect(await fenced()).toBe(false);
    } finally {
      await blocker.end().catch(() => {});
    }
  });

  it('hands over, in plain text', async () => {
    const r = await pgferry('cutover', '--yes', '--verify', 'full');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/phases: preconditions \d+ ms · fence \d+ ms · catch-up \d+ ms/);
    expect(r.stdout).toMatch(/handed over: writes unavailable for \d+ ms \(gate \d+ ms\)/);
    expect(r.stdout + r.stderr).not.toMatch(ESC);
    expect(r.stdout + r.stderr).not.toContain(src.password);
    expect(await fenced()).toBe(true);
  });
});
