/**
 * cutover without a native subscription, with the built CLI and an
 * application writer running (as a normal role) until the fence stops it:
 *
 * - the client applier running in the background (sync --applier client):
 *   cutover stops it, applies up to the fence LSN itself, drops the slot and
 *   the origin; the target equals the source exactly;
 * - the client applier not running (a backlog waits in the slot), with a
 *   kill -9 after the fence and a rerun;
 * - the timestamp method (source with wal_level = replica): a final round
 *   with delete detection, sequences, gate; exact equality including deletes
 *   and sequences; a later round is refused on the fenced source.
 *
 * In every case: exit 0, no subscription at any point, no pgferry slot or
 * origin left, and the application's writes refused by the source after.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { lsnToBigInt } from '../../src/postgres/lsn.js';
import { runCliProcess, startCli } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startLoad, startWriter, waitFor, WRITER_TABLES, writerSchemaSql, type Writer } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tsSrc: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];
const APP_PASSWORD = 'app-secret-pw';

beforeAll(async () => {
  [src, tsSrc, tgt] = await Promise.all([
    clusters.start({ name: 'cutm-src' }),
    clusters.start({ name: 'cutm-ts-src', settings: { wal_level: 'replica' } }),
    clusters.start({ name: 'cutm-tgt' }),
  ]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Setup {
  source: LocalCluster;
  db: string;
  app: string;
  dir: string;
  cli: (...args: string[]) => ReturnType<typeof runCliProcess>;
  args: string[];
}

async function setup(source: LocalCluster, prefix: string, sql: string): Promise<Setup> {
  const db = await createDatabase(source, uniqueDbName(prefix), sql);
  const app = `app_${db}`.slice(0, 60);
  await source.query(`CREATE ROLE ${app} LOGIN PASSWORD '${APP_PASSWORD}'`);
  await source.query(`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${app}; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO ${app}`, [], db);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cutover-methods-'));
  tmpDirs.push(dir);
  const args = ['--source', source.url(db), '--target', tgt.url(db), '--state-dir', dir];
  return { source, db, app, dir, args, cli: (...a: string[]) => runCliProcess([...a, ...args]) };
}

async function appCan(c: LocalCluster, s: Setup, sql: string): Promise<string> {
  const client = new pg.Client({ host: '127.0.0.1', port: c.port, user: s.app, password: APP_PASSWORD, database: s.db });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return `connect: ${(err as Error).message}`;
  }
  try {
    const { rows } = await client.query<{ id: string }>(sql);
    return `inserted ${rows[0]!.id}`;
  } catch (err) {
    return `insert: ${(err as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
}

async function stopWriter(w: Writer): Promise<number> {
  return w.stop().catch(() => w.commits());
}

function cutoverState(dir: string): { phase: string; options: { method?: string } } | undefined {
  const f = path.join(dir, 'cutover.json');
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : undefined;
}

async function subscriptions(): Promise<number> {
  return (await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription'))[0]!.n;
}

async function leftovers(s: Setup): Promise<{ slots: unknown[]; origins: unknown[] }> {
  return {
    slots: await s.source.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' AND database = $1", [s.db]),
    // Origins are per cluster: the one of this migration bears its slot's name, and the slot name carries the database name.
    origins: await tgt.query('SELECT roname FROM pg_replication_origin WHERE roname LIKE $1', [`%${s.db}%`]),
  };
}

interface Report {
  ok: boolean;
  method: string;
  outcome: string;
  sourceFenced: boolean;
  phases: { name: string }[];
  databases: { fenceLsn: string; appliedLsn: string | null; sequencesMoved: number; finalRound: { upserted: number; deleted: number } | null }[];
}

/** The client applier's setup: the writer's tables, init, and the applier once up to date. */
async function clientSetup(prefix: string): Promise<Setup> {
  const s = await setup(src, prefix, writerSchemaSql(500));
  const init = await s.cli('init', '--yes');
  expect(init.exitCode, init.stderr).toBe(0);
  // Roles are copied without passwords: the application gets its password on the new server.
  await tgt.query(`ALTER ROLE ${s.app} PASSWORD '${APP_PASSWORD}'`);
  const sync = await s.cli('sync', '--applier', 'client', '--until-caught-up');
  expect(sync.exitCode, sync.stderr).toBe(0);
  return s;
}

async function expectEqual(s: Setup, tables: string[]): Promise<void> {
  const only = tables.map((name) => ({ schema: 'public', name }));
  const [source, target] = await Promise.all([tableHashes(s.source.conn(s.db), only), tableHashes(tgt.conn(s.db), only)]);
  expect(Object.keys(source).length).toBe(tables.length);
  expect(target).toEqual(source);
}

describe('cutover with the client applier', () => {
  it('stops the applier running in the background, applies up to the fence itself, drops slot and origin; target equal, writes refused', async () => {
    const s = await clientSetup('cutcl');
    const bg = startCli(['sync', '--applier', 'client', ...s.args]);
    let err = '';
    bg.stderr!.on('data', (d: Buffer) => (err += String(d)));
    await waitFor('the applier running', async () => existsSync(path.join(s.dir, 'client-applier.json')));
    const dry = await s.cli('cutover', '--dry-run', '--json');
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout).plan).toMatchObject({ method: 'client', stopsApplier: bg.pid });
    const writer = startWriter(s.source.conn(s.db, s.app, APP_PASSWORD), { pauseMs: 2 });
    await waitFor('some commits', async () => writer.commits() > 50);
    const r = await s.cli('cutover', '--yes', '--json');
    const commits = await stopWriter(writer);
    const applier = (await bg) as unknown as { exitCode: number };
    expect(r.exitCode, r.stderr + err).toBe(0);
    expect(applier.exitCode, err).toBe(143);
    expect(commits).toBeGreaterThan(50);
    const doc = JSON.parse(r.stdout) as Report;
    expect(doc).toMatchObject({ ok: true, method: 'client', outcome: 'handed-over', sourceFenced: true });
    expect(doc.phases.map((p) => p.name)).toEqual(['preconditions', 'stop-applier', 'fence', 'catch-up', 'sequences', 'large-objects', 'gate', 'hand-over']);
    expect(lsnToBigInt(doc.databases[0]!.appliedLsn!)).toBeGreaterThanOrEqual(lsnToBigInt(doc.databases[0]!.fenceLsn));

    // Writes after the fence are refused: the application cannot log in, and the trigger refuses even a superuser.
    expect(await appCan(s.source, s, "INSERT INTO w_items (qty, note) VALUES (1, 'late') RETURNING id::text AS id")).toMatch(/^connect: .*permission denied/);
    await expect(s.source.query("INSERT INTO w_items (qty, note) VALUES (1, 'late')", [], s.db)).rejects.toThrow(/fenced by pgferry/);
    await expectEqual(s, [...WRITER_TABLES]);
    expect(await leftovers(s)).toEqual({ slots: [], origins: [] });
    expect(await subscriptions()).toBe(0);
    expect(cutoverState(s.dir)).toMatchObject({ phase: 'done', options: { method: 'client' } });
    // The sequence moved with the rest: the application's next insert on the target gets a fresh key.
    const maxSrc = BigInt((await s.source.query<{ m: string }>('SELECT max(id)::text AS m FROM w_items', [], s.db))[0]!.m);
    const ins = await appCan(tgt, s, "INSERT INTO w_items (qty, note) VALUES (1, 'after') RETURNING id::text AS id");
    expect(ins).toMatch(/^inserted \d+$/);
    expect(BigInt(ins.split(' ')[1]!)).toBeGreaterThan(maxSrc);
  });

  it('without a running applier: --reverse refused, kill -9 after the fence, a rerun applies the backlog up to the fence and hands over', async () => {
    const s = await clientSetup('cutcl2');
    const reverse = await s.cli('cutover', '--yes', '--reverse');
    expect(reverse.exitCode).toBe(2);
    expect(reverse.stderr).toMatch(/--reverse is not available with the client applier/);
    expect(cutoverState(s.dir)).toBeUndefined();

    // A backlog in the slot that no applier reads, and the writer still going when the fence comes.
    const writer = startWriter(s.source.conn(s.db, s.app, APP_PASSWORD), { pauseMs: 2 });
    await waitFor('some commits', async () => writer.commits() > 100);
    const killed = await runCliProcess(['cutover', '--yes', ...s.args], { env: { PGFERRY_FAULT_POINT: 'cutover.after-fence' } });
    const commits = await stopWriter(writer);
    expect(killed.exitCode, killed.stderr).toBe(-1);
    expect(commits).toBeGreaterThan(100);
    expect(cutoverState(s.dir)?.phase).toBe('fence');

    const dry = await s.cli('cutover', '--dry-run');
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/apply slot \S+ up to the fence LSN \(client applier\)/);

    const r = await s.cli('cutover', '--yes', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as Report;
    expect(doc).toMatchObject({ ok: true, method: 'client', outcome: 'handed-over' });
    expect(doc.phases.map((p) => p.name)).not.toContain('stop-applier');
    await expect(s.source.query("INSERT INTO w_items (qty, note) VALUES (1, 'late')", [], s.db)).rejects.toThrow(/fenced by pgferry/);
    await expectEqual(s, [...WRITER_TABLES]);
    expect(await leftovers(s)).toEqual({ slots: [], origins: [] });
    expect(await subscriptions()).toBe(0);

    // cleanup afterwards finds nothing of the stream left to drop, and succeeds.
    const cleanup = await s.cli('cleanup', '--yes');
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
  });
});

const STAMPED = `
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
  CREATE TABLE ts_customers (id int PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_customers FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO ts_customers SELECT g, 'c' || g FROM generate_series(1, 200) g;
  CREATE TABLE ts_orders (id bigserial PRIMARY KEY, customer int NOT NULL REFERENCES ts_customers, total numeric(12,2) NOT NULL,
                          "Mixed Case" text, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_orders FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO ts_orders (customer, total) SELECT 1 + g % 200, g * 1.5 FROM generate_series(1, 2000) g;
  CREATE TABLE ts_plain (id int PRIMARY KEY, v int NOT NULL);
  INSERT INTO ts_plain SELECT g, 0 FROM generate_series(1, 500) g;
  CREATE SEQUENCE ts_tickets;
`;
const TS_TABLES = ['ts_customers', 'ts_orders', 'ts_plain'];

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

describe('cutover with --method timestamp', () => {
  it('fences, runs a final round with delete detection, moves sequences: exact equality including deletes; --abort after kill -9; later rounds refused', async () => {
    const s = await setup(tsSrc, 'cutts', STAMPED);
    const init = await s.cli('init', '--method', 'timestamp', '--yes');
    expect(init.exitCode, init.stderr).toBe(0);
    const writer = startLoad(s.source.conn(s.db, s.app, APP_PASSWORD), async (c, i) => {
      await c.query('INSERT INTO ts_orders (customer, total, "Mixed Case") VALUES ($1, $2, $3)', [1 + rnd(200), rnd(1000), `o${i}`]);
      await c.query('UPDATE ts_orders SET total = total + 1 WHERE id = (SELECT max(id) - $1 FROM ts_orders)', [rnd(40)]);
      if (i % 3 === 0) await c.query('DELETE FROM ts_orders WHERE id = (SELECT min(id) + $1 FROM ts_orders)', [rnd(30)]);
      if (i % 5 === 0) await c.query('UPDATE ts_customers SET name = name || $1 WHERE id = $2', ['+', 1 + rnd(200)]);
      await c.query('UPDATE ts_plain SET v = v + 1 WHERE id = $1', [1 + rnd(500)]);
      if (i % 6 === 0) await c.query('DELETE FROM ts_plain WHERE id = (SELECT max(id) - $1 FROM ts_plain)', [rnd(10)]);
      await c.query("SELECT nextval('ts_tickets')");
    }, { pauseMs: 3 });
    await waitFor('some commits', async () => writer.commits() > 30);
    const ticket = async (c: LocalCluster) => BigInt((await c.query<{ v: string }>('SELECT last_value::text AS v FROM ts_tickets', [], s.db))[0]!.v);
    const ticketBefore = await ticket(s.source);
    const round = await s.cli('sync', '--method', 'timestamp', '--once', '--json');
    expect(round.exitCode, round.stderr).toBe(0);
    // Rounds carry sequences too (never lowered).
    expect(JSON.parse(round.stdout).databases[0].sequencesMoved).toBeGreaterThanOrEqual(1);
    expect(await ticket(tgt)).toBeGreaterThanOrEqual(ticketBefore);

    // status --watch works with the method: one JSON document per refresh until interrupted.
    const watch = startCli(['status', '--watch', '1', '--json', ...s.args]);
    let out = '';
    watch.stdout!.on('data', (d: Buffer) => (out += String(d)));
    await waitFor('two refreshes', async () => out.split('\n').filter((l) => l.trim()).length >= 2);
    watch.kill('SIGINT');
    const watched = (await watch) as unknown as { exitCode: number };
    expect(watched.exitCode).toBe(130);
    const first = JSON.parse(out.split('\n')[0]!) as { method: string };
    expect(first).toMatchObject({ method: 'timestamp' });
    await waitFor('more commits', async () => writer.commits() > 80);

    const reverse = await s.cli('cutover', '--yes', '--reverse');
    expect(reverse.exitCode).toBe(2);
    expect(reverse.stderr).toMatch(/--reverse is not available with --method timestamp/);
    const dry = await s.cli('cutover', '--dry-run');
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/write trigger on 3 tables/);
    expect(dry.stdout).toMatch(/a final timestamp round with delete detection/);

    // Killed once the fence stands: --abort lifts it, the application writes again, rounds continue.
    const killed = await runCliProcess(['cutover', '--yes', ...s.args], { env: { PGFERRY_FAULT_POINT: 'cutover.after-fence' } });
    expect(killed.exitCode, killed.stderr).toBe(-1);
    expect(cutoverState(s.dir)).toMatchObject({ phase: 'fence', options: { method: 'timestamp' } });
    const abort = await s.cli('cutover', '--abort', '--json');
    expect(abort.exitCode, abort.stderr).toBe(0);
    expect(JSON.parse(abort.stdout)).toMatchObject({ ok: true, method: 'timestamp', unfenced: [s.db] });
    expect(await appCan(s.source, s, "INSERT INTO ts_customers (id, name) VALUES (100001, 'between') RETURNING id::text AS id")).toBe('inserted 100001');
    const writerBefore = await stopWriter(writer);
    const writer2 = startLoad(s.source.conn(s.db, s.app, APP_PASSWORD), async (c, i) => {
      await c.query('INSERT INTO ts_orders (customer, total) VALUES ($1, $2)', [1 + rnd(200), rnd(1000)]);
      if (i % 2 === 0) await c.query('DELETE FROM ts_orders WHERE id = (SELECT min(id) + $1 FROM ts_orders)', [rnd(30)]);
      await c.query('UPDATE ts_plain SET v = v + 1 WHERE id = $1', [1 + rnd(500)]);
      await c.query("SELECT nextval('ts_tickets')");
    }, { pauseMs: 3 });
    await waitFor('commits after the abort', async () => writer2.commits() > 30);

    const r = await s.cli('cutover', '--yes', '--json', '--verify', 'full');
    const commits = writerBefore + (await stopWriter(writer2));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(commits).toBeGreaterThan(110);
    const doc = JSON.parse(r.stdout) as Report;
    expect(doc).toMatchObject({ ok: true, method: 'timestamp', outcome: 'handed-over', sourceFenced: true });
    expect(doc.phases.map((p) => p.name)).toEqual(['preconditions', 'fence', 'final-round', 'sequences', 'large-objects', 'gate', 'hand-over']);
    expect(doc.databases[0]!.finalRound!.deleted).toBeGreaterThan(0);

    // Writes after the fence are refused.
    expect(await appCan(s.source, s, "INSERT INTO ts_customers (id, name) VALUES (100000, 'late') RETURNING id::text AS id")).toMatch(/^connect: .*permission denied/);
    await expect(s.source.query('DELETE FROM ts_plain', [], s.db)).rejects.toThrow(/fenced by pgferry/);
    // Exact equality (deletes included), and every sequence at or ahead of the source.
    await expectEqual(s, TS_TABLES);
    for (const seq of ['ts_tickets', 'ts_orders_id_seq']) {
      const value = async (c: LocalCluster) => BigInt((await c.query<{ v: string }>(`SELECT last_value::text AS v FROM ${seq}`, [], s.db))[0]!.v);
      expect(await value(tgt), seq).toBeGreaterThanOrEqual(await value(s.source));
    }
    expect(await s.source.query("SELECT 1 FROM pg_replication_slots WHERE database = $1", [s.db])).toEqual([]);
    expect(await subscriptions()).toBe(0);

    // The target is the primary now: a round from the fenced source would overwrite it, so it is refused.
    const late = await s.cli('sync', '--method', 'timestamp', '--once', '--detect-deletes');
    expect(late.exitCode).toBe(2);
    expect(late.stderr).toMatch(/fenced by pgferry cutover/);
    const again = await s.cli('cutover', '--yes');
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already handed over/);

    // cleanup drops the round state that the hand-over kept; the fence stays.
    const cleanup = await s.cli('cleanup', '--yes');
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
    expect(await tgt.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'", [], s.db)).toEqual([]);
    await expect(s.source.query('DELETE FROM ts_plain', [], s.db)).rejects.toThrow(/fenced by pgferry/);
  });
  it('kill -9 in the final round, after sequences and after the gate: each rerun continues, the last hands over; exact equality', async () => {
    const s = await setup(tsSrc, 'cutts2', STAMPED);
    const init = await s.cli('init', '--method', 'timestamp', '--yes');
    expect(init.exitCode, init.stderr).toBe(0);
    const writer = startLoad(s.source.conn(s.db, s.app, APP_PASSWORD), async (c, i) => {
      await c.query('INSERT INTO ts_orders (customer, total) VALUES ($1, $2)', [1 + rnd(200), rnd(1000)]);
      await c.query('UPDATE ts_orders SET total = total + 1 WHERE id = (SELECT max(id) - $1 FROM ts_orders)', [rnd(40)]);
      if (i % 2 === 0) await c.query('DELETE FROM ts_orders WHERE id = (SELECT min(id) + $1 FROM ts_orders)', [rnd(30)]);
      await c.query('UPDATE ts_plain SET v = v + 1 WHERE id = $1', [1 + rnd(500)]);
      await c.query("SELECT nextval('ts_tickets')");
    }, { pauseMs: 3 });
    await waitFor('some commits', async () => writer.commits() > 50);

    // In the final round (a batch committed on the target, the table's mark not moved), with the writer still going.
    const midRound = await runCliProcess(['cutover', '--yes', ...s.args], { env: { PGFERRY_FAULT_POINT: 'sync.timestamp.mid-round' } });
    const commits = await stopWriter(writer);
    expect(midRound.exitCode, midRound.stderr).toBe(-1);
    expect(commits).toBeGreaterThan(50);
    // The fence is recorded; the round's phase is not (a rerun runs the whole round again: upserts are idempotent).
    expect(cutoverState(s.dir)?.phase).toBe('fence');
    await expect(s.source.query('DELETE FROM ts_plain', [], s.db)).rejects.toThrow(/fenced by pgferry/);

    for (const point of ['cutover.after-sequences', 'cutover.after-gate']) {
      const killed = await runCliProcess(['cutover', '--yes', ...s.args], { env: { PGFERRY_FAULT_POINT: point } });
      expect(killed.exitCode, `${point}: ${killed.stderr}`).toBe(-1);
      expect(cutoverState(s.dir)?.phase, point).toBe(point === 'cutover.after-gate' ? 'gate' : 'fence');
    }

    const r = await s.cli('cutover', '--yes', '--json', '--verify', 'full');
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, method: 'timestamp', outcome: 'handed-over', sourceFenced: true });
    expect(cutoverState(s.dir)?.phase).toBe('done');
    await expectEqual(s, TS_TABLES);
    const value = async (c: LocalCluster) => BigInt((await c.query<{ v: string }>('SELECT last_value::text AS v FROM ts_tickets', [], s.db))[0]!.v);
    expect(await value(tgt)).toBeGreaterThanOrEqual(await value(s.source));
  });
});
