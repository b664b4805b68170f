/**
 * `pgferry init` as a user runs it: the built CLI, no TTY. Exit codes, plain
 * output without escape sequences, the --json summary (per table rows, bytes,
 * seconds; per phase seconds), --dry-run, refusals, and no password in the
 * output or in the state directory. One cluster holds source and target
 * databases (a copy into another database of the same server is allowed).
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const { start } = useClusters();
let pg: LocalCluster;
const dirs: string[] = [];
const ESC = '\u001b';

beforeAll(async () => {
  pg = await start({ name: 'icli' });
  await createDatabase(
    pg,
    'shop',
    `CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
     CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, total numeric(10, 2));
     INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
     INSERT INTO orders (customer_id, total) SELECT 1 + g % 100, g / 7.0 FROM generate_series(1, 1000) g;
     ANALYZE;`,
  );
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
  dirs.push(d);
  return d;
}

function args(target: string, dir: string, ...extra: string[]): string[] {
  return ['init', '--source', pg.url('shop'), '--target', pg.url(target), '--state-dir', dir, ...extra];
}

describe('pgferry init (built CLI)', () => {
  it('--dry-run prints the plan in plain text and writes nothing', async () => {
    const dir = await stateDir();
    const r = await runCliProcess(args('shop_dry', dir, '--dry-run'));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(ESC);
    expect(r.stdout).toContain('Plan (dry run: nothing is written)');
    expect(r.stdout).toContain('Database shop → shop_dry (will be created)');
    expect(r.stdout).toMatch(/public\.orders .*~1000 rows · 1 part · binary/);
    expect(r.stdout).toMatch(/Estimated: .* roughly/);
    expect(await readdir(dir)).toEqual([]);
    expect(await pg.query('SELECT 1 FROM pg_database WHERE datname = $1', ['shop_dry'])).toEqual([]);
  });

  it('--dry-run --json: with 64 MB or more to copy the estimate uses a sampled read rate of the largest table', async () => {
    await createDatabase(pg, 'big', `CREATE TABLE small (id int PRIMARY KEY);
      CREATE TABLE wide (id int PRIMARY KEY, v text);
      INSERT INTO wide SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 75000) g; ANALYZE;`);
    const dir = await stateDir();
    const r = await runCliProcess(['init', '--source', pg.url('big'), '--target', pg.url('big_dry'), '--state-dir', dir, '--dry-run', '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const plan = (JSON.parse(r.stdout) as { plan: { estimatedBytes: number; estimatedSeconds: number; estimateBasis: { kind: string; table?: string; bytesPerSecondPerJob: number } } }).plan;
    expect(plan.estimatedBytes).toBeGreaterThanOrEqual(64 * 1024 * 1024);
    expect(plan.estimateBasis).toMatchObject({ kind: 'sampled', table: 'public.wide' });
    expect(plan.estimatedSeconds).toBe(Math.ceil(plan.estimatedBytes / plan.estimateBasis.bytesPerSecondPerJob));
    const text = await runCliProcess(['init', '--source', pg.url('big'), '--target', pg.url('big_dry'), '--state-dir', dir, '--dry-run']);
    expect(text.stdout).toMatch(/Estimated: .* at least .* the source read public\.wide at .*\/s per stream in a sample/);
  });

  it('runs unattended with --no-sync --jobs 2 --yes and prints a JSON summary', async () => {
    const dir = await stateDir();
    const r = await runCliProcess(args('shop_json', dir, '--no-sync', '--jobs', '2', '--yes', '--json'));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toContain(ESC);
    const doc = JSON.parse(r.stdout) as {
      command: string; ok: boolean; seconds: number; phases: Record<string, number>;
      databases: { source: string; target: string; slot: unknown; tables: { schema: string; name: string; rows: number; bytes: number; seconds: number }[] }[];
    };
    expect(doc).toMatchObject({ command: 'init', ok: true });
    for (const phase of ['target', 'schema', 'data', 'post-data', 'sequences', 'analyze']) expect(doc.phases[phase]).toBeGreaterThanOrEqual(0);
    expect(doc.seconds).toBeGreaterThan(0);
    const db = doc.databases[0]!;
    expect(db).toMatchObject({ source: 'shop', target: 'shop_json', slot: null });
    const orders = db.tables.find((t) => t.name === 'orders')!;
    expect(orders.rows).toBe(1000);
    expect(orders.bytes).toBeGreaterThan(0);
    expect(orders.seconds).toBeGreaterThanOrEqual(0);
    expect(await pg.query('SELECT count(*)::int AS n FROM orders', [], 'shop_json')).toEqual([{ n: 1000 }]);
    expect(await pg.query("SELECT last_value::int AS v FROM orders_id_seq", [], 'shop_json')).toEqual([{ v: 1000 }]);
    expect(await pg.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
    const state = await readFile(path.join(dir, 'state.json'), 'utf8');
    expect(state).not.toContain(pg.password);
    expect(r.stdout + r.stderr).not.toContain(pg.password);
  });

  it('with a slot: plain progress on stderr, a summary on stdout; a second run finds nothing to do', async () => {
    const dir = await stateDir();
    const r = await runCliProcess(args('shop_sync', dir));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(ESC);
    expect(r.stdout).toMatch(/^✓ init done in .*: 1 database, 2 tables, 1100 rows/m);
    expect(r.stdout).toMatch(/replication slot pgferry_shop_[0-9a-f]{10}, consistent point [0-9A-F]+\/[0-9A-F]+/);
    expect(r.stdout).toContain('Next: pgferry sync');
    expect(r.stderr).toMatch(/✓ shop: schema \(pre-data\)/);
    const again = await runCliProcess(args('shop_sync', dir));
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/resumed and done/);
    const [slot] = await pg.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots');
    await pg.query('SELECT pg_drop_replication_slot($1)', [slot!.slot_name]);
  });

  it('exit codes: 2 for usage and refusals (also as JSON), 3 when a side cannot be reached', async () => {
    const dir = await stateDir();
    const noTarget = await runCliProcess(['init', '--source', pg.url('shop'), '--state-dir', dir]);
    expect(noTarget.exitCode).toBe(2);
    expect(noTarget.stderr).toMatch(/no target connection given/);

    await createDatabase(pg, 'shop_full', 'CREATE TABLE keep (id int)');
    const refused = await runCliProcess(args('shop_full', dir, '--no-sync', '--json'));
    expect(refused.exitCode).toBe(2);
    const doc = JSON.parse(refused.stdout) as { ok: boolean; error: { message: string; hint: string; exitCode: number } };
    expect(doc.ok).toBe(false);
    expect(doc.error.message).toMatch(/target database "shop_full" already exists and is not empty/);
    expect(doc.error.hint).toMatch(/--drop-existing/);
    await expect(readFile(path.join(dir, 'state.json'))).rejects.toThrow(/ENOENT/); // refused before anything was written

    // --drop-existing without a terminal and without --yes: exit 2 naming the flag to add.
    const unconfirmed = await runCliProcess(args('shop_full', await stateDir(), '--no-sync', '--drop-existing'));
    expect(unconfirmed.exitCode).toBe(2);
    expect(unconfirmed.stderr).toMatch(/hint: add --yes/);
    expect(await pg.query('SELECT count(*)::int AS n FROM keep', [], 'shop_full')).toEqual([{ n: 0 }]);

    const unreachable = await runCliProcess(['init', '--source', pg.url('shop').replace(`:${pg.port}/`, ':1/'), '--target', pg.url('x'), '--state-dir', dir]);
    expect(unreachable.exitCode).toBe(3);
    expect(unreachable.stderr).not.toContain(pg.password);
  });
});
