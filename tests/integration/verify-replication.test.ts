/**
 * verify on a pair joined by native logical replication while a writer keeps
 * changing the source: no false alarm from lag, and a real difference made on
 * the target (on rows the writer does not touch) is still found.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { quoteLiteral } from '../../src/postgres/identifiers.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { runVerify, table, unequal } from './verify-helpers.js';
import { startLoad, type Writer } from '../support/writer.js';
import { waitFor } from '../support/wait.js';

const SCHEMA = `
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric(12, 2) NOT NULL, note text, updated timestamptz);
CREATE TABLE "Ledger Lines" (account int NOT NULL, line int NOT NULL, amount numeric, PRIMARY KEY (account, line));
CREATE TABLE settings (k text, v text);
CREATE TABLE quiet (id int PRIMARY KEY, v text);
CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL);`;

const DATA = `
INSERT INTO accounts SELECT i, i * 1.5, CASE WHEN i % 3 = 0 THEN NULL ELSE 'acct ' || i END, '2024-01-01'::timestamptz + i * interval '1 second'
  FROM generate_series(1, 20000) i;
INSERT INTO "Ledger Lines" SELECT a, l, a * l / 3.0 FROM generate_series(1, 1000) a, generate_series(1, 5) l;
INSERT INTO settings SELECT 'k' || i, 'v' || i FROM generate_series(1, 50) i;
INSERT INTO quiet SELECT i, 'q' || i FROM generate_series(1, 6000) i;
INSERT INTO hot SELECT i, 0 FROM generate_series(1, 3) i;`;

/** Keeps updating, inserting and deleting accounts with id > 100, and rows of the keyless table, until stopped. */
function startWriter(c: LocalCluster, db: string): Writer {
  return startLoad(c.conn(db), async (client, i) => {
    const n = i + 1;
    const id = 101 + ((n * 7919) % 19900);
    if (n % 5 === 0) await client.query('INSERT INTO accounts VALUES ($1, 0, $2, clock_timestamp()) ON CONFLICT DO NOTHING', [20000 + n, `new ${n}`]);
    else if (n % 11 === 0) await client.query('DELETE FROM accounts WHERE id = $1', [id]);
    else await client.query('UPDATE accounts SET balance = balance + 1, updated = clock_timestamp() WHERE id = $1', [id]);
    if (n % 3 === 0) await client.query('UPDATE "Ledger Lines" SET amount = amount + 1 WHERE account = $1', [101 + (n % 900)]);
    // The keyless table is written all the time too (never row k3, which a test changes on the target).
    if (n % 2 === 0) await client.query(`UPDATE settings SET v = 'v' || $1::int WHERE k = $2`, [n, `k${10 + (n % 40)}`]);
    if (n % 4 === 0) await client.query('INSERT INTO settings VALUES ($1, $2)', [`w${n}`, 'new']);
    if (n % 4 === 2) await client.query('DELETE FROM settings WHERE k = $1', [`w${n - 2}`]);
  }, { pauseMs: 2, transaction: false });
}

describe('verify while replicating', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  let srcDb: string;
  let tgtDb: string;
  let writer: { stop: () => Promise<number> } | undefined;

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'vrsrc' }), clusters.start({ name: 'vrtgt' })]);
    [srcDb, tgtDb] = await Promise.all([createDatabase(source, undefined, SCHEMA + DATA), createDatabase(target, undefined, SCHEMA)]);
    await source.query(`ALTER TABLE settings REPLICA IDENTITY FULL; CREATE PUBLICATION verify_pub FOR TABLE accounts, "Ledger Lines", settings, quiet, hot`, [], srcDb);
    const conninfo = `host=127.0.0.1 port=${source.port} user=postgres password=${source.password} dbname=${srcDb}`;
    await target.query(`CREATE SUBSCRIPTION verify_sub CONNECTION ${quoteLiteral(conninfo)} PUBLICATION verify_pub WITH (copy_data = true)`, [], tgtDb);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [r] = await target.query<{ ready: boolean }>(
        `SELECT count(*) = 5 AND bool_and(srsubstate = 'r') AS ready FROM pg_subscription_rel`,
        [],
        tgtDb,
      );
      if (r?.ready) break;
      if (Date.now() > deadline) throw new Error('initial table synchronisation did not finish');
      await new Promise((res) => setTimeout(res, 200));
    }
    writer = startWriter(source, srcDb);
  });

  afterAll(async () => {
    await writer?.stop();
    await target?.query('DROP SUBSCRIPTION IF EXISTS verify_sub', [], tgtDb).catch(() => {});
  });

  it('reports equal under continuous writes (no false alarm from lag)', async () => {
    await new Promise((r) => setTimeout(r, 500));
    const scans = () => source.query<{ seq: string; idx: string }>(`SELECT seq_scan::text AS seq, coalesce(idx_scan, 0)::text AS idx FROM pg_stat_user_tables WHERE relname = 'quiet'`, [], srcDb);
    const [before] = await scans();
    const report = await runVerify(source, srcDb, target, tgtDb, { chunkRows: 1000, sequences: false });
    expect(report.databases[0]!.replication).toMatchObject({ active: true, subscriptions: [{ name: 'verify_sub', slot: 'verify_sub', enabled: true }] });
    expect(unequal(report)).toEqual({});
    expect(report.status).toBe('equal');
    expect(table(report, 'public', 'accounts').chunks).toBeGreaterThanOrEqual(15);
    // A table nobody writes to is hashed whole (no plan query over its index), the written ones chunk by chunk.
    expect(table(report, 'public', 'quiet')).toMatchObject({ status: 'equal', rowsSource: 6000, chunks: 1 });
    await waitFor('verify sessions to end', async () => (await source.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pgferry verify%'`)).length === 0);
    const [after] = await scans();
    expect(Number(after!.seq)).toBeGreaterThan(Number(before!.seq));
    expect(Number(after!.idx) - Number(before!.idx)).toBe(0);
    // The keyless table changes all the time: when the plain rechecks do not settle it, it is read as of one source position.
    const settings = table(report, 'public', 'settings');
    for (const note of settings.notes) expect(note).toMatch(/read as of one source position, under a SHARE lock held \d+ ms/);
  });

  it('watches only keyed tables larger than a chunk for writes: with none in scope it reads no write counters and waits for nothing', async () => {
    const log = path.join(source.rootDir, 'server.log');
    await source.query(`ALTER DATABASE "${srcDb}" SET log_statement = 'all'`);
    try {
      /** The statements verify ran that read the source's write counters (activity.ts). */
      const readings = async (tables: string[]) => {
        const from = (await stat(log)).size;
        const report = await runVerify(source, srcDb, target, tgtDb, { chunkRows: 1000, sequences: false, tables });
        expect(report.status).toBe('equal');
        return (await readFile(log)).subarray(from).toString('utf8').split('\n').filter((l) => l.includes('sum(st.n_tup_ins + st.n_tup_upd + st.n_tup_del)')).length;
      };
      // hot (3 rows) is hashed whole in a batch either way, settings has no key: no second reading to wait a moment for.
      expect(await readings(['public.hot', 'public.settings'])).toBe(0);
      // quiet (6 000 rows) is more than a chunk of 1 000: whether it moved decides its method, so two readings.
      expect(await readings(['public.hot', 'public.quiet'])).toBe(2);
    } finally {
      await source.query(`ALTER DATABASE "${srcDb}" RESET log_statement`);
    }
  });

  it('reports equal rows rewritten faster than a recheck round (read as of one source position, the rows locked)', async () => {
    // Two connections rewrite three rows back to back: every plain recheck sees them move.
    const hammer = (k: number) =>
      startLoad(source.conn(srcDb), async (client, i) => {
        await client.query('UPDATE hot SET v = v + 1 WHERE id = $1', [1 + ((i + k) % 3)]);
      }, { transaction: false });
    const hammers = [hammer(0), hammer(1)];
    try {
      await waitFor('the hot rows to be rewritten', async () => hammers.every((h) => h.commits() > 200));
      const quiet = await runVerify(source, srcDb, target, tgtDb, { chunkRows: 1000, sequences: false, tables: ['public.hot'] });
      const hot = table(quiet, 'public', 'hot');
      expect(hot).toMatchObject({ status: 'equal', diffs: [] });
      for (const note of hot.notes) expect(note).toMatch(/kept changing while compared: read as of one source position, with the rows locked FOR SHARE for \d+ ms/);
    } finally {
      await Promise.all(hammers.map((h) => h.stop()));
    }
  });

  it('still finds a difference made on the target while writes continue', async () => {
    await target.query(`UPDATE accounts SET note = 'tampered' WHERE id = 7; DELETE FROM accounts WHERE id = 8; UPDATE settings SET v = 'x' WHERE k = 'k3'`, [], tgtDb);
    const report = await runVerify(source, srcDb, target, tgtDb, { chunkRows: 1000, sequences: false });
    const accounts = table(report, 'public', 'accounts');
    expect(accounts.diffs).toEqual([
      { kind: 'different', key: { id: '7' } },
      { kind: 'missing', key: { id: '8' } },
    ]);
    expect(table(report, 'public', 'settings')).toMatchObject({ status: 'different', method: 'whole-table' });
    expect(table(report, 'public', 'Ledger Lines').status).toBe('equal');
    expect(report.status).toBe('different');
    const writes = await writer!.stop();
    writer = undefined;
    expect(writes).toBeGreaterThan(100);
  });
});
