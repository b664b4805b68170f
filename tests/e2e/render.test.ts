/**
 * Progress renderers as people see them: a task tree in a real terminal
 * (tmux), plain lines through a pipe or with CI set — and never an escape
 * sequence in piped output.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';
import { killAll, openTerminal, tmuxAvailable } from './wizard-tmux.js';

const dist = (p: string) => pathToFileURL(path.join(repoRoot, 'dist', p)).href;

/** Emits the events a copy of two tables in one database would, then prints a result on stdout. */
const DRIVER = `
import { setTimeout as sleep } from 'node:timers/promises';
import { Output } from '${dist('cli/render/output.js')}';
import { createProgress, preloadProgress } from '${dist('cli/render/tasks.js')}';
const out = new Output({ env: process.env, json: process.argv.includes('--json') });
await preloadProgress({ out, env: process.env });
const p = createProgress({ out, env: process.env });
const pause = Number(process.env.PAUSE_MS ?? 0);
p({ kind: 'start', id: 'db', title: 'Database shop' });
p({ kind: 'start', id: 'orders', parent: 'db', title: 'public.orders' });
p({ kind: 'start', id: 'customers', parent: 'db', title: 'public.customers' });
p({ kind: 'update', id: 'orders', detail: '500 of 1000 rows', done: 500, total: 1000 });
await sleep(pause);
p({ kind: 'end', id: 'customers', status: 'ok', detail: '20 rows' });
p({ kind: 'log', level: 'warn', message: 'orders has no primary key' });
await sleep(pause);
p({ kind: 'end', id: 'orders', status: 'ok', detail: '1000 rows' });
p({ kind: 'end', id: 'db', status: 'ok', detail: '2 tables' });
p.done();
if (out.json) out.emitJson({ ok: true }); else out.print('copy finished (' + p.kind + ')');
`;

describe('progress renderers', () => {
  let dir: string;
  let driver: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-render-'));
    driver = path.join(dir, 'driver.mjs');
    writeFileSync(driver, DRIVER);
  });
  afterAll(() => {
    killAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('through a pipe: plain lines on stderr, the result alone on stdout, no escape sequences', async () => {
    const r = await execa(process.execPath, [driver], { reject: false, env: { NO_COLOR: undefined, FORCE_COLOR: undefined, CI: undefined }, extendEnv: true });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toBe('copy finished (plain)');
    expect(r.stderr).toContain('… Database shop');
    expect(r.stderr).toMatch(/✓ public\.customers: 20 rows \(\d+\.\ds\)/);
    expect(r.stderr).toContain('warning: orders has no primary key');
    expect(r.stdout + r.stderr).not.toContain('\x1b');
  });

  it('with --json: stdout is exactly the JSON document', async () => {
    const r = await execa(process.execPath, [driver, '--json'], { reject: false });
    expect(JSON.parse(r.stdout)).toEqual({ ok: true });
    expect(r.stdout).not.toContain('\x1b');
  });

  it.skipIf(!tmuxAvailable())('in a terminal: a nested task tree that updates in place', async () => {
    const t = openTerminal(`${process.execPath} ${driver}`, { env: { PAUSE_MS: '1500' }, width: 120, height: 30 });
    const running = await t.waitFor(/public\.orders · 500 of 1000 rows \(50%\)/);
    const lines = running.split('\n');
    const parent = lines.findIndex((l) => l.includes('Database shop'));
    const child = lines.findIndex((l) => l.includes('public.orders ·'));
    expect(parent).toBeGreaterThanOrEqual(0);
    expect(child).toBeGreaterThan(parent);
    // nested: the table is indented under its database
    expect(lines[child]!.search(/\S/)).toBeGreaterThan(lines[parent]!.search(/\S/));
    const done = await t.waitFor('EXIT:0');
    expect(done).toMatch(/✔ Database shop: 2 tables \(\d+\.\ds\)/);
    expect(done).toContain('copy finished (tree)');
    expect(done).toContain('orders has no primary key');
    // updated in place: the running line is gone from the final screen
    expect(done).not.toContain('500 of 1000 rows');
    t.kill();
  });

  it.skipIf(!tmuxAvailable())('in a terminal with CI set: plain lines (listr2 alone would draw the tree)', async () => {
    const t = openTerminal(`${process.execPath} ${driver}`, { env: { CI: 'true' }, width: 120, height: 30 });
    const done = await t.waitFor('EXIT:0');
    expect(done).toContain('… Database shop');
    expect(done).toMatch(/✓ Database shop: 2 tables/);
    expect(done).toContain('copy finished (plain)');
    t.kill();
  });
});
