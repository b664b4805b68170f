import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runCliProcess } from '../support/cli.js';

const cwd = mkdtempSync(path.join(os.tmpdir(), 'pgferry-demo-test-'));
const demoDir = path.join(cwd, '.pgferry-demo');

function demoClusters(): string[] {
  return readdirSync(os.tmpdir()).filter((e) => e.startsWith('pgferry-cluster-demo-'));
}

describe('pgferry demo', () => {
  afterAll(async () => {
    // Whatever happened, leave no kept cluster behind.
    await runCliProcess(['demo', '--stop', '--dir', demoDir], { cwd });
    rmSync(cwd, { recursive: true, force: true });
  });

  it('says how to install PostgreSQL and exits 2 when server binaries are missing', async () => {
    const r = await runCliProcess(['demo', '--pg-bin-dir', path.join(cwd, 'no-such-dir')], { cwd, env: { CI: 'true' } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/apt-get install postgresql/);
    expect(r.stderr).toMatch(/--pg-bin-dir/);
  });

  it('runs validate → init → sync → status → sequences → verify under writes, keeps the clusters with --keep, and --stop removes them', async () => {
    const before = new Set(demoClusters());
    const r = await runCliProcess(['demo', '--keep', '--watch', '2', '--dir', demoDir], { cwd, env: { CI: 'true' }, timeoutMs: 240_000 });
    expect(r.stderr).not.toContain("\u001b[");
    expect(r.stdout).not.toContain("\u001b[");
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    for (const cmd of ['validate', 'init --jobs 2', 'sync', 'status', 'sequences', 'verify']) expect(r.stdout).toContain(`$ pgferry ${cmd}`);
    expect(r.stdout).toMatch(/EQUAL: 6 tables \(6 equal, 0 different\)/);
    expect(r.stdout).toContain('verify passed');

    // Kept: the target answers through the connection file the demo wrote (mode 0600), and has the rows.
    const targetFile = path.join(demoDir, 'target.conn');
    expect(existsSync(targetFile)).toBe(true);
    const password = new URL(readFileSync(targetFile, 'utf8').trim()).password;
    expect(password.length).toBeGreaterThan(3);
    expect(r.stdout + r.stderr).not.toContain(decodeURIComponent(password));
    const client = new pg.Client({ connectionString: readFileSync(targetFile, 'utf8').trim() });
    await client.connect();
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM orders');
    await client.end();
    expect(rows[0]!.n).toBeGreaterThan(10_000);
    expect(demoClusters().filter((c) => !before.has(c)).length).toBe(2);

    const stop = await runCliProcess(['demo', '--stop', '--dir', demoDir], { cwd });
    expect(stop.exitCode).toBe(0);
    expect(demoClusters().filter((c) => !before.has(c))).toEqual([]);
    expect(existsSync(demoDir)).toBe(false);
  });
});
