/**
 * verify without replication: each table is hashed whole first (one plain
 * aggregate per side, no plan query), small tables many to a statement, and a
 * table that differs is then compared chunk by chunk as before, so its
 * differing rows are still located by key.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { committedTransactions, createDatabase, useClusters } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';
import { closeSessions, openSession, type SideSession } from '../../src/pipeline/verify/sessions.js';
import { connect } from '../../src/postgres/connect.js';
import { runVerify, table, unequal } from './verify-helpers.js';

const SMALL = 40;

const SQL = `
CREATE TABLE big (id int PRIMARY KEY, d date, note text);
INSERT INTO big SELECT i, CASE i % 1000 WHEN 1 THEN 'infinity'::date WHEN 2 THEN '-infinity'::date WHEN 3 THEN '300000-01-01'::date
                               WHEN 4 THEN NULL ELSE '2020-01-01'::date + i % 3000 END, 'n' || i
  FROM generate_series(1, 20000) i;
CREATE TABLE loose (a int, b text);
INSERT INTO loose SELECT i % 7, 'b' || i FROM generate_series(1, 300) i;
${Array.from({ length: SMALL }, (_v, i) => `CREATE TABLE s${i} (id int PRIMARY KEY, v text, c int); INSERT INTO s${i} SELECT g, 'v' || g, g FROM generate_series(1, 50) g;`).join('\n')}
ANALYZE;`;

/** Statements committed in a database, from the statistics, once verify's sessions have gone. */
const commits = (c: LocalCluster, db: string) => committedTransactions(c, db, 'pgferry verify%');

/** Sessions ever opened to a database (pg_stat_database.sessions, PostgreSQL 14+), once all have gone (a session's count is flushed as it exits). */
async function sessions(c: LocalCluster, db: string): Promise<number> {
  await waitFor('sessions to end', async () => {
    const [r] = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1`, [db]);
    return r!.n === '0';
  });
  const [r] = await c.query<{ n: string }>(`SELECT sessions::text AS n FROM pg_stat_database WHERE datname = $1`, [db]);
  return Number(r!.n);
}

async function bigScans(c: LocalCluster, db: string): Promise<{ seq: number; idx: number }> {
  const [r] = await c.query<{ seq: string; idx: string }>(`SELECT seq_scan::text AS seq, coalesce(idx_scan, 0)::text AS idx FROM pg_stat_user_tables WHERE relname = 'big'`, [], db);
  return { seq: Number(r!.seq), idx: Number(r!.idx) };
}

describe('verify hashes quiet tables whole first', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'vwsrc' }), clusters.start({ name: 'vwtgt' })]);
  });

  it('reads an equal table once per side with no index scan, and many small tables in a few statements', async () => {
    const [s, t] = await Promise.all([createDatabase(source, undefined, SQL), createDatabase(target, undefined, SQL)]);
    const before = { commits: await commits(source, s), scans: await bigScans(source, s) };
    const report = await runVerify(source, s, target, t, { chunkRows: 500, sequences: false });
    expect(unequal(report)).toEqual({});
    expect(report.status).toBe('equal');
    // One chunk: what was compared (a difference would have been located by key, chunk by chunk).
    expect(table(report, 'public', 'big')).toMatchObject({ rowsSource: 20000, rowsTarget: 20000, chunks: 1 });
    expect(table(report, 'public', 's7')).toMatchObject({ rowsSource: 50, chunks: 1 });
    expect(table(report, 'public', 'loose')).toMatchObject({ rowsSource: 300, chunks: 1, method: 'whole-table' });
    const after = { commits: await commits(source, s), scans: await bigScans(source, s) };
    expect(after.scans.seq - before.scans.seq).toBe(1);
    expect(after.scans.idx - before.scans.idx).toBe(0);
    // One statement per table would be more than SMALL; the catalog queries are a handful.
    expect(after.commits - before.commits).toBeLessThan(SMALL / 2);
  });

  it('puts small tables pg_class knows nothing about (never analysed) in the same few statements, by their live rows', async () => {
    // Under 50 rows written, autovacuum never analyses a table: its reltuples stays -1 for good.
    const sql = SQL.replace('ANALYZE;', '');
    const [s, t] = await Promise.all([createDatabase(source, undefined, sql), createDatabase(target, undefined, sql)]);
    const [unknown] = await source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_class WHERE relname ~ '^s[0-9]+$' AND relkind = 'r' AND reltuples < 0`, [], s);
    expect(unknown!.n).toBe(SMALL);
    const before = await commits(source, s);
    const report = await runVerify(source, s, target, t, { chunkRows: 500, sequences: false });
    expect(report.status).toBe('equal');
    expect(table(report, 'public', 's7')).toMatchObject({ rowsSource: 50, chunks: 1 });
    // 20 000 rows are more than a chunk: hashed on its own, whole.
    expect(table(report, 'public', 'big')).toMatchObject({ rowsSource: 20000, chunks: 1 });
    const after = await commits(source, s);
    expect(after - before).toBeLessThan(SMALL / 2);
  });

  it('lists the tables without waiting for a lock held on one that was never analysed', async () => {
    const sql = SQL.replace('ANALYZE;', '');
    const [s, t] = await Promise.all([createDatabase(source, undefined, sql), createDatabase(target, undefined, sql)]);
    const holder = await connect(source.conn(s));
    try {
      await holder.query('BEGIN; LOCK TABLE s1 IN ACCESS EXCLUSIVE MODE');
      const report = await Promise.race([
        runVerify(source, s, target, t, { chunkRows: 500, sequences: false, tables: ['public.s2'] }),
        new Promise<never>((_r, reject) => setTimeout(() => reject(new Error('verify waited for the lock on s1')), 15_000)),
      ]);
      expect(report.status).toBe('equal');
    } finally {
      await holder.end();
    }
  });

  it('opens one session a side when the only table has no key (it is hashed whole, one unit of work)', async () => {
    const [s, t] = await Promise.all([createDatabase(source, undefined, SQL), createDatabase(target, undefined, SQL)]);
    const before = await Promise.all([sessions(source, s), sessions(target, t)]);
    // 300 rows at 100 to a chunk would count as three units of work if the table had a key.
    const report = await runVerify(source, s, target, t, { chunkRows: 100, sequences: false, tables: ['public.loose'] });
    expect(table(report, 'public', 'loose')).toMatchObject({ rowsSource: 300, chunks: 1, method: 'whole-table' });
    expect(report.status).toBe('equal');
    const after = await Promise.all([sessions(source, s), sessions(target, t)]);
    expect([after[0] - before[0], after[1] - before[1]]).toEqual([1, 1]);
  });

  it('runs a session without parallel workers when told so; otherwise leaves them out of batches only', async () => {
    const s = await createDatabase(source, undefined, 'CREATE TABLE x (id int)');
    const [on, off] = await Promise.all([openSession(source.conn(s), 'source'), openSession(source.conn(s), 'source', false)]);
    const workers = async (x: SideSession) => (await x.client.query<{ w: string }>(`SELECT current_setting('max_parallel_workers_per_gather') AS w`)).rows[0]!.w;
    try {
      const server = await workers(on);
      expect(server).not.toBe('0');
      await on.planFor('batch');
      expect(await workers(on)).toBe('0');
      await on.planFor('whole');
      expect(await workers(on)).toBe(server);
      for (const kind of ['whole', 'batch', 'whole', 'range'] as const) {
        await off.planFor(kind);
        expect(await workers(off), kind).toBe('0');
      }
    } finally {
      await closeSessions([on, off]);
    }
  });

  it('locates differences by key in a big table and in batched small ones, and names a table whose hash fails', async () => {
    const [s, t] = await Promise.all([createDatabase(source, undefined, SQL), createDatabase(target, undefined, SQL)]);
    await target.query(
      `UPDATE big SET d = d + 1 WHERE id = 777;
       UPDATE big SET d = '300001-01-01' WHERE id = 3003;
       DELETE FROM s7 WHERE id = 3;
       UPDATE s23 SET v = 'x' WHERE id = 5;
       ALTER TABLE s31 ALTER COLUMN c TYPE text; UPDATE s31 SET c = 'not a number' WHERE id = 9;
       ANALYZE;`,
      [],
      t,
    );
    const report = await runVerify(source, s, target, t, { chunkRows: 500, sequences: false });
    expect(table(report, 'public', 'big').diffs).toEqual([
      { kind: 'different', key: { id: '777' } },
      { kind: 'different', key: { id: '3003' } },
    ]);
    expect(table(report, 'public', 'big').chunks).toBe(40);
    expect(table(report, 'public', 's7').diffs).toEqual([{ kind: 'missing', key: { id: '3' } }]);
    expect(table(report, 'public', 's23').diffs).toEqual([{ kind: 'different', key: { id: '5' } }]);
    expect(table(report, 'public', 's31').error).toMatch(/comparison failed/);
    const others = report.databases[0]!.tables.filter((x) => !['big', 's7', 's23', 's31'].includes(x.name));
    expect(others.filter((x) => x.status !== 'equal')).toEqual([]);
  });
});
