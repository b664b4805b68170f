/**
 * A background writer on the source, for tests (and the demo) that must hold
 * up under concurrent writes: inserts, updates and deletes on a keyed table,
 * updates of TOASTed values (changed and unchanged), a table without a key
 * using REPLICA IDENTITY FULL, and a filtered table whose rows move in and out
 * of its filter (`region = 'eu'`). One transaction per step, as fast as
 * `pauseMs` allows, until stop().
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import type { ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { WAL_END_SQL } from '../../src/postgres/lsn.js';
import { tableHashes, type TableHash } from './compare.js';
import { waitFor } from './wait.js';

/** The tables the writer works on (all in schema public). */
export const WRITER_TABLES = ['w_items', 'w_docs', 'w_log', 'w_region'] as const;

/** The filter a test puts on w_region (a column of its replica identity: the table is REPLICA IDENTITY FULL). */
export const WRITER_FILTER = { schema: 'public', table: 'w_region', where: "region = 'eu'" } as const;
export const WRITER_FILTER_FLAG = `public.w_region:${WRITER_FILTER.where}`;

/** Create the writer's tables with some rows. `rows` sizes w_items (the big one, for interrupting a copy). */
export function writerSchemaSql(rows = 2000): string {
  return `
    CREATE TABLE w_items (id bigserial PRIMARY KEY, qty int NOT NULL, note text, touched int NOT NULL DEFAULT 0);
    INSERT INTO w_items (qty, note) SELECT g % 100, repeat(md5(g::text), 4) FROM generate_series(1, ${rows}) g;
    -- body is incompressible and above the TOAST threshold: stored out of line
    CREATE TABLE w_docs (id int PRIMARY KEY, body text NOT NULL, rev int NOT NULL DEFAULT 0);
    INSERT INTO w_docs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 200) i), 0
      FROM generate_series(1, 20) g;
    -- no key at all: updates and deletes travel with the whole old row
    CREATE TABLE w_log (at timestamptz NOT NULL DEFAULT clock_timestamp(), actor int NOT NULL, msg text NOT NULL);
    ALTER TABLE w_log REPLICA IDENTITY FULL;
    INSERT INTO w_log (actor, msg) SELECT g % 5, 'seed ' || g FROM generate_series(1, 200) g;
    -- filtered by region; FULL identity so that the filter column is known for UPDATE and DELETE
    CREATE TABLE w_region (id int PRIMARY KEY, region text NOT NULL, v int NOT NULL DEFAULT 0);
    ALTER TABLE w_region REPLICA IDENTITY FULL;
    INSERT INTO w_region SELECT g, CASE WHEN g % 3 = 0 THEN 'us' ELSE 'eu' END, 0 FROM generate_series(1, 300) g;
  `;
}

export interface Writer {
  /** Transactions committed so far. */
  commits(): number;
  /** Stop after the current transaction; resolves with the number of commits. Rejects if the writer failed. */
  stop(): Promise<number>;
}

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

/** The statements of one step (one transaction); chosen at random but covering every kind over a few steps. */
function step(i: number): { text: string; values?: unknown[] }[] {
  const out: { text: string; values?: unknown[] }[] = [];
  out.push({ text: 'INSERT INTO w_items (qty, note) VALUES ($1, $2)', values: [rnd(100), `n${i}`] });
  out.push({ text: 'UPDATE w_items SET qty = qty + 1, touched = touched + 1 WHERE id = (SELECT max(id) - $1 FROM w_items)', values: [rnd(50)] });
  if (i % 3 === 0) out.push({ text: 'DELETE FROM w_items WHERE id = (SELECT min(id) + $1 FROM w_items)', values: [rnd(30)] });
  if (i % 4 === 0) {
    // A new TOASTed value.
    out.push({ text: 'UPDATE w_docs SET body = $1, rev = rev + 1 WHERE id = $2', values: [randomBytes(3000).toString('hex'), 1 + rnd(20)] });
  } else if (i % 4 === 2) {
    // The TOASTed value unchanged: logical replication sends it as "unchanged".
    out.push({ text: 'UPDATE w_docs SET rev = rev + 1 WHERE id = $1', values: [1 + rnd(20)] });
  }
  out.push({ text: 'INSERT INTO w_log (actor, msg) VALUES ($1, $2)', values: [rnd(5), `step ${i}`] });
  if (i % 2 === 0) out.push({ text: "UPDATE w_log SET msg = msg || '+' WHERE ctid = (SELECT ctid FROM w_log WHERE actor = $1 LIMIT 1)", values: [rnd(5)] });
  if (i % 5 === 0) out.push({ text: 'DELETE FROM w_log WHERE ctid = (SELECT ctid FROM w_log WHERE actor = $1 LIMIT 1)', values: [rnd(5)] });
  // Rows move in and out of the filter, are born on either side of it, and die.
  out.push({ text: "UPDATE w_region SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, v = v + 1 WHERE id = $1", values: [1 + rnd(300)] });
  out.push({ text: 'UPDATE w_region SET v = v + 1 WHERE id = $1', values: [1 + rnd(300)] });
  if (i % 3 === 1) {
    out.push({
      text: "INSERT INTO w_region (id, region) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM w_region), $1)",
      values: [i % 2 ? 'eu' : 'us'],
    });
  }
  if (i % 7 === 3) out.push({ text: 'DELETE FROM w_region WHERE id = (SELECT max(id) - $1 FROM w_region)', values: [rnd(10)] });
  return out;
}

/**
 * Run `step` on one connection to `conn` again and again until stop(): each
 * step its own transaction (or autocommit statements with transaction: false),
 * `pauseMs` apart. Every load writer of the tests is this loop with its own step.
 */
export function startLoad(
  conn: ResolvedConnInfo,
  step: (client: pg.Client, i: number) => Promise<void>,
  opts: { pauseMs?: number; transaction?: boolean } = {},
): Writer {
  const client = new pg.Client({ host: conn.host, port: conn.port, user: conn.user, password: conn.password ?? '', database: conn.dbname, application_name: 'test writer' });
  client.on('error', () => {});
  const transaction = opts.transaction ?? true;
  let stopping = false;
  let commits = 0;
  const run = (async () => {
    await client.connect();
    try {
      for (let i = 0; !stopping; i++) {
        if (transaction) await client.query('BEGIN');
        try {
          await step(client, i);
          if (transaction) await client.query('COMMIT');
          commits++;
        } catch (err) {
          if (transaction) await client.query('ROLLBACK').catch(() => {});
          // A deadlock with a test's own statement on the same rows (a big UPDATE under the writer) costs this step only.
          if ((err as { code?: string }).code === '40P01') continue;
          throw err;
        }
        if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
      }
    } finally {
      await client.end().catch(() => {});
    }
  })();
  run.catch(() => {});
  return {
    commits: () => commits,
    async stop() {
      stopping = true;
      await run;
      return commits;
    },
  };
}

/** Start the writer of WRITER_TABLES on `conn` (the source database) until stop(). */
export function startWriter(conn: ResolvedConnInfo, opts: { pauseMs?: number } = {}): Writer {
  return startLoad(conn, async (c, i) => {
    for (const q of step(i)) await c.query(q);
  }, opts);
}

/* ---- Helpers for tests that replicate the writer's tables ---- */

export { waitFor };

/**
 * Until status says in sync and the slot has confirmed everything the source
 * had written when called. `eachPoll` runs first on every poll (to fail fast).
 */
export async function untilCaughtUp(s: LocalCluster, t: LocalCluster, db: string, stateDir: string, eachPoll?: () => Promise<void>): Promise<void> {
  const lsn = (await s.query<{ l: string }>(`SELECT ${WAL_END_SQL}::text AS l`))[0]!.l;
  await waitFor('the target to apply everything', async () => {
    await eachPoll?.();
    const r = await runStatus({ source: s.conn(db), target: t.conn(db), stateDir, maxLag: { bytes: 1024 * 1024, seconds: 5 } });
    if (r.exitCode !== 0) return false;
    const rows = await s.query<{ ok: boolean }>(
      'SELECT bool_and(confirmed_flush_lsn >= $1::pg_lsn) AS ok FROM pg_replication_slots WHERE slot_name = $2',
      [lsn, r.databases[0]!.slot.name],
    );
    return !!rows[0]?.ok;
  });
}

/** Row count and ordered hash of each writer table on both sides (w_region on the source: only rows matching the filter when `filtered`). */
export async function writerTableHashes(s: LocalCluster, t: LocalCluster, db: string, filtered: boolean): Promise<{ source: Record<string, TableHash>; target: Record<string, TableHash> }> {
  const want = WRITER_TABLES.map((name) => ({ schema: 'public', name, ...(filtered && name === WRITER_FILTER.table ? { where: WRITER_FILTER.where } : {}) }));
  const [source, target] = await Promise.all([tableHashes(s.conn(db), want), tableHashes(t.conn(db), WRITER_TABLES.map((name) => ({ schema: 'public', name })))]);
  return { source, target };
}
