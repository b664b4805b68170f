/**
 * The client applier and streamed in-progress transactions (pgoutput protocol
 * 2): with logical_decoding_work_mem at 64 kB on the source, a big transaction
 * arrives in pieces before its commit and is spooled to a file until it ends.
 * Under the writer: a big committed transaction with a rolled-back and a
 * released savepoint, and a big aborted one, end in an exact comparison with
 * nothing of the aborted one on the target; a kill -9 while a transaction is
 * spooled loses nothing and applies nothing twice once the applier runs again.
 * Also: a partitioned table (published through its root, as init sets it up)
 * with rows moving between partitions, under the writer, ends equal.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runClientSync, type ClientSyncReport } from '../../src/pipeline/sync/index.js';
import { startCli, runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';
import { startWriter, waitFor, writerSchemaSql, writerTableHashes } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const dirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([
    // A small decoding budget: any transaction of more than 64 kB of changes is streamed before its commit.
    clusters.start({ name: 'stream-src', settings: { logical_decoding_work_mem: "'64kB'" } }),
    clusters.start({ name: 'stream-tgt' }),
  ]);
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-sync-stream-'));
  dirs.push(d);
  return d;
}

async function init(db: string, dir: string): Promise<void> {
  await runInit({
    source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: false, noOwner: false,
    noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
    signal: new AbortController().signal,
  });
}

async function sourceClient(db: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: src.url(db) });
  await c.connect();
  return c;
}

async function expectEqual(db: string): Promise<void> {
  const { source, target } = await writerTableHashes(src, tgt, db, false);
  expect(target).toEqual(source);
}

function spoolFiles(dir: string): string[] {
  const root = path.join(dir, 'spool');
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((s) => readdirSync(path.join(root, s)).filter((f) => f.endsWith('.spool')));
}

/** A big source transaction: inserts, a rolled-back savepoint, a released one, TOAST and keyless-table changes. */
const BIG_COMMITTED = `
  INSERT INTO w_items (qty, note) SELECT g % 100, 'big ' || repeat(md5(g::text), 4) FROM generate_series(1, 8000) g;
  SAVEPOINT a;
  INSERT INTO w_items (qty, note) SELECT 1, 'rolled back ' || g FROM generate_series(1, 3000) g;
  UPDATE w_items SET touched = touched + 100 WHERE id % 5 = 0;
  ROLLBACK TO SAVEPOINT a;
  UPDATE w_items SET qty = qty + 1, touched = touched + 1 WHERE id % 3 = 0;
  SAVEPOINT b;
  DELETE FROM w_items WHERE id % 7 = 0;
  RELEASE SAVEPOINT b;
  UPDATE w_docs SET rev = rev + 1;
  INSERT INTO w_log (actor, msg) SELECT g % 5, 'big ' || g FROM generate_series(1, 3000) g;
  DELETE FROM w_log WHERE ctid IN (SELECT ctid FROM w_log WHERE actor = 2 LIMIT 100);`;

describe('sync --applier client with streamed transactions (protocol 2)', () => {
  it('spools a big transaction until its commit and drops an aborted one, under the writer, and ends equal', async () => {
    const db = await createDatabase(src, uniqueDbName('stream'), writerSchemaSql(1000));
    const dir = await stateDir();
    await init(db, dir);
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    const ac = new AbortController();
    const run = runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, signal: ac.signal });
    run.catch(() => {});
    await waitFor('writes', async () => writer.commits() >= 50);
    const c = await sourceClient(db);
    try {
      await c.query('BEGIN');
      await c.query(BIG_COMMITTED);
      await waitFor('the open transaction spooled', async () => spoolFiles(dir).length > 0);
      await c.query('COMMIT');
      await c.query('BEGIN');
      await c.query("INSERT INTO w_items (qty, note) SELECT 0, 'aborted ' || repeat(md5(g::text), 4) FROM generate_series(1, 8000) g");
      await c.query('UPDATE w_docs SET rev = rev + 1000');
      await waitFor('the aborted transaction spooled', async () => spoolFiles(dir).length > 0);
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
    const before = writer.commits();
    await waitFor('more writes after both', async () => writer.commits() >= before + 100);
    await writer.stop();
    ac.abort();
    const first: ClientSyncReport = await run;
    const r = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal });
    expect(r.outcome).toBe('caught-up');
    // Either run may have met them (the first one is stopped wherever it is).
    const [a, b] = [first.databases[0]!, r.databases[0]!];
    expect(a.streamedTransactions + b.streamedTransactions).toBeGreaterThanOrEqual(1);
    expect(a.streamedAborted + b.streamedAborted).toBeGreaterThanOrEqual(1);
    expect(a.missingRows + b.missingRows).toBe(0);
    await expectEqual(db);
    expect(await tgt.query("SELECT 1 FROM w_items WHERE note LIKE 'aborted%' OR note LIKE 'rolled back%'", undefined, db)).toEqual([]);
    expect(existsSync(path.join(dir, 'spool')) ? spoolFiles(dir) : []).toEqual([]);
  });

  it('after kill -9 while a transaction is spooled, a rerun applies it once and loses nothing', async () => {
    const db = await createDatabase(src, uniqueDbName('streamkill'), writerSchemaSql(1000));
    const dir = await stateDir();
    await init(db, dir);
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    const args = ['sync', '--applier', 'client', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--no-interactive'];
    const fg = startCli(args);
    const c = await sourceClient(db);
    try {
      await c.query('BEGIN');
      await c.query(BIG_COMMITTED);
      await waitFor('the open transaction spooled', async () => spoolFiles(dir).length > 0);
      fg.kill('SIGKILL');
      await fg;
      expect(spoolFiles(dir).length).toBeGreaterThan(0); // left behind by the kill
      await c.query('COMMIT');
    } finally {
      await c.end();
    }
    await writer.stop();
    const again = await runCliProcess([...args, '--until-caught-up']);
    expect(again.exitCode, again.stderr + again.stdout).toBe(0);
    await expectEqual(db);
    expect(spoolFiles(dir)).toEqual([]);
  });

  it('applies a partitioned table published through its root, rows moving between partitions, under the writer, and ends equal', async () => {
    const db = await createDatabase(src, uniqueDbName('streampart'), `${writerSchemaSql(500)}
      CREATE TABLE w_part (id int NOT NULL, region text NOT NULL, v int NOT NULL DEFAULT 0, note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE w_part_eu PARTITION OF w_part FOR VALUES IN ('eu');
      CREATE TABLE w_part_us PARTITION OF w_part FOR VALUES IN ('us');
      CREATE TABLE w_part_other PARTITION OF w_part DEFAULT;
      INSERT INTO w_part SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], 0, md5(g::text) FROM generate_series(1, 600) g;`);
    const dir = await stateDir();
    await init(db, dir);
    const [pub] = await src.query<{ root: boolean }>('SELECT pubviaroot AS root FROM pg_publication', undefined, db);
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    const ac = new AbortController();
    const run = runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, signal: ac.signal });
    run.catch(() => {});
    const c = await sourceClient(db);
    try {
      for (let i = 0; i < 150; i++) {
        // Inserts, updates in place, updates that move a row to another partition (its key changes), deletes.
        await c.query(`BEGIN;
          INSERT INTO w_part VALUES (${1000 + i}, 'eu', ${i}, 'new');
          UPDATE w_part SET v = v + 1 WHERE id % 50 = ${i % 50};
          UPDATE w_part SET region = CASE region WHEN 'eu' THEN 'us' WHEN 'us' THEN 'ap' ELSE 'eu' END WHERE id = ${(i * 7) % 600 + 1};
          DELETE FROM w_part WHERE id = ${(i * 13) % 600 + 1} AND v % 2 = 0;
          COMMIT;`);
      }
    } finally {
      await c.end();
    }
    await writer.stop();
    ac.abort();
    await run;
    const r = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal });
    expect(r.outcome).toBe('caught-up');
    expect(r.databases[0]!.missingRows).toBe(0);
    expect(pub?.root).toBe(true);
    await expectEqual(db);
    const root = [{ schema: 'public', name: 'w_part' }];
    const [a, b] = await Promise.all([tableHashes(src.conn(db), root), tableHashes(tgt.conn(db), root)]);
    expect(a['public.w_part']!.rows).toBeGreaterThan(600);
    expect(b).toEqual(a);
    // Every row in the same partition on both sides.
    const perPartition = 'SELECT tableoid::regclass::text AS p, count(*)::int AS n, sum(id)::int AS ids FROM w_part GROUP BY 1 ORDER BY 1';
    expect(await tgt.query(perPartition, undefined, db)).toEqual(await src.query(perPartition, undefined, db));
  });
});
