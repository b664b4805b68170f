/**
 * The built CLI as a runbook uses it, with no terminal: init, sync (under a
 * writer), status (plain text without escape sequences, --json, exit codes
 * 0 / 2 / 3), verify, cleanup (refused without --yes, then done, then a
 * second time with nothing left).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, waitFor, WRITER_FILTER_FLAG, writerSchemaSql } from '../support/writer.js';

const ESC = new RegExp(String.fromCharCode(27));
const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;
let db: string;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'cli-sync-src' }), clusters.start({ name: 'cli-sync-tgt' })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cli-sync-'));
  db = await createDatabase(src, uniqueDbName('cli'), writerSchemaSql(1000));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const conns = () => ['--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir];
const pgferry = (...args: string[]) => runCliProcess([...args, ...conns()]);

describe('sync, status, cleanup through the built CLI', () => {
  it('runs the whole runbook', async () => {
    const writer = startWriter(src.conn(db), { pauseMs: 5 });
    const init = await pgferry('init', '--yes', '--no-roles', '--table-filter', WRITER_FILTER_FLAG);
    expect(init.exitCode, init.stderr).toBe(0);

    const sync = await pgferry('sync', '--wait-timeout', '120');
    expect(sync.exitCode, sync.stderr).toBe(0);
    expect(sync.stdout).toMatch(/in sync · lag/);
    expect(sync.stdout).toMatch(/public\.w_region: streams from init's snapshot · WHERE region = 'eu'/);
    expect(sync.stderr).toMatch(/stores the source password/);
    expect(sync.stdout + sync.stderr).not.toMatch(ESC);
    expect(sync.stdout + sync.stderr).not.toContain(src.password);

    const ok = await pgferry('status');
    expect(ok.exitCode, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout.split('\n')[0]).toMatch(/^in sync · lag \S+ \S+ \/ \d+\.\d s$/);
    expect(ok.stdout + ok.stderr).not.toMatch(ESC);

    const json = await pgferry('status', '--json');
    expect(json.exitCode).toBe(0);
    const doc = JSON.parse(json.stdout) as { health: string; exitCode: number; databases: { tables: { total: number } }[] };
    expect(doc).toMatchObject({ health: 'healthy', exitCode: 0 });
    expect(doc.databases[0]!.tables.total).toBe(4);

    const sub = (await tgt.query<{ n: string }>("SELECT subname AS n FROM pg_subscription WHERE subname LIKE 'pgferry%'"))[0]!.n;
    await tgt.query(`ALTER SUBSCRIPTION ${sub} DISABLE`, [], db);
    const broken = await pgferry('status');
    expect(broken.exitCode).toBe(2);
    expect(broken.stdout.split('\n')[0]).toMatch(/^BROKEN · subscription \S+ is disabled/);
    // sync again re-enables it and waits until in sync.
    const resync = await pgferry('sync', '--wait-timeout', '120');
    expect(resync.exitCode, resync.stderr).toBe(0);

    await writer.stop();
    await waitFor('status in sync', async () => (await pgferry('status', '--max-lag', '64kB,5s')).exitCode === 0);
    // Logical replication carries no sequences (they are set at cutover): verify the rows.
    const verify = await pgferry('verify', '--no-sequences');
    expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);

    const refused = await pgferry('cleanup');
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    expect(refused.stdout).toMatch(/subscription pgferry_/);
    expect(await tgt.query("SELECT 1 FROM pg_subscription WHERE subname LIKE 'pgferry%'")).toHaveLength(1);

    const cleaned = await pgferry('cleanup', '--yes');
    expect(cleaned.exitCode, cleaned.stderr).toBe(0);
    expect(cleaned.stdout).toMatch(/^Dropped:/m);
    expect(cleaned.stdout + cleaned.stderr).not.toMatch(ESC);
    expect(await tgt.query("SELECT 1 FROM pg_subscription WHERE subname LIKE 'pgferry%'")).toHaveLength(0);
    expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'")).toHaveLength(0);
    expect(await src.query("SELECT 1 FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db)).toHaveLength(0);

    const twice = await pgferry('cleanup', '--yes', '--json');
    expect(twice.exitCode).toBe(0);
    expect(JSON.parse(twice.stdout)).toMatchObject({ command: 'cleanup', items: [] });

    const none = await pgferry('status');
    expect(none.exitCode).toBe(2);
    expect(none.stdout.split('\n')[0]).toMatch(/^BROKEN · no replication is set up/);
  });

  it('status exits 3 when a side cannot be reached', async () => {
    const r = await runCliProcess(['status', '--source', src.url(db), '--target', 'postgresql://postgres:x@127.0.0.1:1/none?connect_timeout=2', '--state-dir', dir]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).not.toMatch(ESC);
  });
});
