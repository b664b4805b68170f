/**
 * --method timestamp through the built CLI, against a source with
 * wal_level = replica: init, sync --once (text and --json), status (exit 0,
 * then 1 with a tight --max-lag, --json), verify after a round, a keyless
 * table refused with exit 2, and cleanup dropping the target's pgferry schema.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;
let db: string;

const SCHEMA = `
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
  CREATE TABLE items (id int PRIMARY KEY, qty int NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO items SELECT g, 0 FROM generate_series(1, 1000) g;
  CREATE TABLE plain (id int PRIMARY KEY, v text);
  INSERT INTO plain SELECT g, 'x' FROM generate_series(1, 100) g;
`;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'cli-ts-src', settings: { wal_level: 'replica' } }), clusters.start({ name: 'cli-ts-tgt' })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cli-ts-'));
  db = await createDatabase(src, uniqueDbName('clits'), SCHEMA);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const conns = () => ['--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir];
const pgferry = (...args: string[]) => runCliProcess([...args, ...conns()]);

describe('--method timestamp through the built CLI', () => {
  it('validate --method timestamp checks this mode, not logical replication', async () => {
    const v = await pgferry('validate', '--method', 'timestamp', '--json');
    expect(v.exitCode, v.stdout).toBe(0);
    const doc = JSON.parse(v.stdout) as { checks: { id: string; status: string; details?: string[] }[] };
    const ids = doc.checks.map((c) => c.id);
    expect(ids).not.toContain('source.wal_level');
    expect(ids).not.toContain('source.replication_privilege');
    expect(doc.checks.find((c) => c.id === 'timestamp.keys')!.status).toBe('ok');
    expect(doc.checks.find((c) => c.id === 'timestamp.columns')).toMatchObject({ status: 'warn', details: ['public.plain'] });
    expect(doc.checks.find((c) => c.id === 'timestamp.activity')!.status).toBe('ok');
    // The logical check on the same source fails on wal_level = replica.
    const logical = await pgferry('validate', '--json');
    expect(logical.exitCode).toBe(1);

    await src.query("CREATE ROLE ts_reader LOGIN PASSWORD 'reader-pw'");
    await src.query('GRANT SELECT ON ALL TABLES IN SCHEMA public TO ts_reader', [], db);
    const r = await runCliProcess(['validate', '--method', 'timestamp', '--source', src.url(db, 'ts_reader', 'reader-pw'), '--target', tgt.url(db), '--json']);
    const activity = (JSON.parse(r.stdout) as { checks: { id: string; status: string; fix?: string }[] }).checks.find((c) => c.id === 'timestamp.activity');
    expect(activity).toMatchObject({ status: 'fail', fix: 'GRANT pg_read_all_stats TO "ts_reader";' });
    expect(r.exitCode).toBe(1);
    await src.query('REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM ts_reader', [], db);
  });

  it('init, rounds, status, verify, cleanup', async () => {
    const init = await pgferry('init', '--method', 'timestamp', '--yes', '--no-roles', '--json');
    expect(init.exitCode, init.stderr).toBe(0);
    expect(JSON.parse(init.stdout)).toMatchObject({ ok: true, method: 'timestamp', databases: [{ slot: null }] });
    // A plain sync has no slot to stream from, and says what to run instead.
    const plain = await pgferry('sync');
    expect(plain.exitCode).toBe(2);
    expect(plain.stderr).toMatch(/init ran with --method timestamp[\s\S]*pgferry sync --method timestamp/);

    await src.query('UPDATE items SET qty = qty + 1 WHERE id <= 10', [], db);
    await src.query('INSERT INTO items (id, qty) VALUES (5000, 1)', [], db);
    await src.query("UPDATE plain SET v = 'y' WHERE id = 3", [], db);
    const round = await pgferry('sync', '--method', 'timestamp', '--once');
    expect(round.exitCode, round.stderr).toBe(0);
    expect(round.stdout).toMatch(/public\.items|items: 11 upserted/);
    expect(round.stdout).toMatch(/plain: 1 upserted, 0 deleted · compared chunk by chunk \(no column "updated_at"\)/);
    expect(round.stdout).toMatch(/deletes are not tracked/);
    expect(round.stdout + round.stderr).not.toContain(src.password);

    await src.query('DELETE FROM items WHERE id = 7', [], db);
    const json = await pgferry('sync', '--method', 'timestamp', '--once', '--detect-deletes', '--json');
    expect(json.exitCode, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as { method: string; rounds: number; databases: { round: number; deleted: number; tables: { name: string; mode: string }[] }[] };
    expect(doc).toMatchObject({ method: 'timestamp', rounds: 1, databases: [{ round: 2, deleted: 1 }] });

    const verify = await pgferry('verify');
    expect(verify.exitCode, verify.stdout + verify.stderr).toBe(0);

    const status = await pgferry('status', '--json');
    expect(status.exitCode, status.stdout + status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ method: 'timestamp', health: 'healthy', exitCode: 0 });
    await new Promise((r) => setTimeout(r, 2500));
    const lagging = await pgferry('status', '--max-lag', '1s');
    expect(lagging.exitCode, lagging.stdout).toBe(1);
    expect(lagging.stdout).toMatch(/^lagging · marks up to/);

    const cleanup = await pgferry('cleanup', '--yes');
    expect(cleanup.exitCode, cleanup.stdout + cleanup.stderr).toBe(0);
    expect(await tgt.query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgferry'", [], db)).toEqual([]);
  });

  it('refuses a table without a key with exit 2, naming it', async () => {
    const other = await createDatabase(src, uniqueDbName('clits'), `${SCHEMA} CREATE TABLE nokey (v int);`);
    const d2 = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cli-ts-'));
    try {
      const args = ['--source', src.url(other), '--target', tgt.url(other), '--state-dir', d2];
      const init = await runCliProcess(['init', '--method', 'timestamp', '--yes', '--no-roles', ...args]);
      expect(init.exitCode, init.stderr).toBe(0);
      const r = await runCliProcess(['sync', '--method', 'timestamp', '--once', ...args]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/public\.nokey|nokey/);
      expect(r.stderr).toMatch(/exclude/);
    } finally {
      await rm(d2, { recursive: true, force: true });
    }
  });
});
