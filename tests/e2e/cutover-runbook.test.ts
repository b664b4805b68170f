/**
 * docs/cutover-runbook.md's example script (a thin caller of `pgferry
 * cutover`), run as written against two throwaway clusters after init + sync,
 * with the application still writing: the fence stops the writes, the target
 * catches up, sequences are set, verify gates the switch, cleanup drops
 * pgferry's objects. And the rollback path: when the gate finds a difference,
 * nothing is switched and the source takes writes again.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { startDemoWriter } from '../../src/cli/demo/writer.js';
import { sampleSchemaSql } from '../../src/cli/demo/sample.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { cliPath, repoRoot, runCliProcess } from '../support/cli.js';
import { useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';

const SMALL = { customers: 200, products: 50, orders: 1000, events: 1000 };

describe('cutover runbook script', () => {
  const { start } = useClusters();
  const work = mkdtempSync(path.join(os.tmpdir(), 'pgferry-cutover-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let s: LocalCluster;
  let t: LocalCluster;
  let n = 0;
  let db = '';
  let stateDir = '';
  let env: Record<string, string> = {};

  beforeEach(async () => {
    if (!s) [s, t] = await Promise.all([start({ name: 'cut-src' }), start({ name: 'cut-tgt' })]);
    n++;
    db = `shop${n}`;
    stateDir = path.join(work, `state${n}`);
    await s.query(`CREATE DATABASE ${db}`);
    await s.query(sampleSchemaSql(SMALL), undefined, db);
    // Connection strings without passwords; the passwords are in a private password file.
    const passfile = path.join(work, 'pgpass');
    writeFileSync(passfile, `*:${s.port}:*:postgres:${s.password}\n*:${t.port}:*:postgres:${t.password}\n`, { mode: 0o600 });
    const url = (c: LocalCluster) => `postgresql://postgres@127.0.0.1:${c.port}/${db}?sslmode=disable`;
    env = { PGPASSFILE: passfile, SOURCE: url(s), TARGET: url(t), PGFERRY_STATE_DIR: stateDir, PGFERRY: `${process.execPath} ${cliPath}`, CI: 'true' };
    const common = ['--source', url(s), '--target', url(t), '--state-dir', stateDir, '--yes'];
    const init = await runCliProcess(['init', ...common], { env: { PGPASSFILE: passfile } });
    expect(init.exitCode, init.stderr).toBe(0);
    const sync = await runCliProcess(['sync', ...common], { env: { PGPASSFILE: passfile } });
    expect(sync.exitCode, sync.stderr).toBe(0);
  });

  const runScript = () =>
    execa('bash', [path.join(repoRoot, 'scripts/cutover-example.sh')], { env: { ...process.env, ...env }, reject: false, stdin: 'ignore', timeout: 240_000 });

  it('fences the writing source, waits, sets sequences, verifies, switches and cleans up', async () => {
    const writer = await startDemoWriter(s.conn(db), 10);
    await new Promise((r) => setTimeout(r, 2000));
    const r = await runScript();
    // The fence ended the writer's session: that is how the application learns to stop.
    await writer.stop().catch(() => {});
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('cutover done');
    expect(writer.commits).toBeGreaterThan(10);

    const [src, tgt] = await Promise.all([tableHashes(s.conn(db)), tableHashes(t.conn(db))]);
    expect(tgt).toEqual(src);
    const [seqS] = await s.query<{ v: string }>("SELECT last_value::text AS v FROM invoice_number_seq", undefined, db);
    const [seqT] = await t.query<{ v: string }>("SELECT last_value::text AS v FROM invoice_number_seq", undefined, db);
    expect(seqT!.v).toBe(seqS!.v);
    // The source stays fenced; pgferry's replication objects are gone on both sides.
    await expect(s.query("INSERT INTO customers (name, email) VALUES ('late', 'late@example.com')", undefined, db)).rejects.toThrow(/fenced by pgferry/);
    expect(await s.query("SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'")).toEqual([]);
    expect(await s.query("SELECT 1 FROM pg_publication WHERE pubname LIKE 'pgferry%'", undefined, db)).toEqual([]);
    expect(await t.query("SELECT 1 FROM pg_subscription WHERE subname LIKE 'pgferry%'")).toEqual([]);
  });

  it('rolls back when verify finds a difference: nothing switched, the source writable, replication still running', async () => {
    await t.query('SET session_replication_role = replica; DELETE FROM order_items WHERE order_id = 5 AND line = 1', undefined, db);
    const r = await runScript();
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toContain('verify found differences');
    expect(r.stdout).toContain('cutover abandoned');
    expect(r.stdout).not.toContain('6. switch');
    expect(await s.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry_fence'", undefined, db)).toEqual([]);
    expect((await t.query("SELECT 1 FROM pg_subscription WHERE subname LIKE 'pgferry%'")).length).toBe(1);
    const status = await runCliProcess(['status', '--source', env.SOURCE!, '--target', env.TARGET!, '--state-dir', stateDir], { env: { PGPASSFILE: env.PGPASSFILE } });
    expect(status.exitCode, status.stdout).toBe(0);
  });
});
