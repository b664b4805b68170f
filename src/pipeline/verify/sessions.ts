/**
 * Connections for verify: `jobs` pairs (one source and one target session
 * each), all opened with the canonical settings so that both sides print
 * values identically. A pair runs the same query on both sides at once.
 */
import type pg from 'pg';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { Query, Side } from './sql.js';

/**
 * Canonical text output, plus money printed without locale. JIT is off: the
 * row hash is a large expression, and compiling it costs more than a chunk
 * query takes (enable_seqscan=off inflates plan costs past jit_above_cost).
 */
export const VERIFY_SETTINGS: Readonly<Record<string, string>> = {
  ...CANONICAL_SETTINGS,
  lc_monetary: 'C',
  jit: 'off',
};

export class SideSession {
  /** Chunk queries should follow the key index, never scan the whole table per chunk. */
  private seqscan = true;
  /** Parallel plans allowed (the server's setting); off for batches of small tables. */
  private parallel = true;
  /** The last query handed to the connection: the next one starts after it. */
  private tail: Promise<unknown> = Promise.resolve();
  constructor(
    readonly side: Side,
    readonly client: pg.Client,
  ) {}

  /**
   * Queries run one after the other, in call order, even when callers do not
   * wait for each other (the catalog checks share sessions when --jobs is
   * small); pg deprecates handing a busy client another query.
   */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => {});
    return run;
  }

  query<R extends Record<string, unknown>>(q: Query): Promise<R[]> {
    return this.serial(async () => (await this.client.query<R>(q.text, q.values)).rows);
  }

  /**
   * Range queries run with enable_seqscan off; whole-table queries with it on;
   * batches of small tables (one UNION ALL) also without parallel workers. The
   * planner gives a batch of more than about 60 tables a Gather over a Parallel
   * Append, and each worker it starts opens every table again: measured on 200
   * tables of 1 000 rows, 0.085 CPU s a side against 0.045 without workers.
   */
  async planFor(kind: 'range' | 'whole' | 'batch'): Promise<void> {
    const seqscan = kind !== 'range';
    const parallel = kind !== 'batch';
    const sets: string[] = [];
    if (seqscan !== this.seqscan) sets.push(`SET enable_seqscan = ${seqscan ? 'on' : 'off'}`);
    if (parallel !== this.parallel) sets.push(parallel ? 'RESET max_parallel_workers_per_gather' : 'SET max_parallel_workers_per_gather = 0');
    if (!sets.length) return;
    await this.serial(() => this.client.query(sets.join('; ')));
    this.seqscan = seqscan;
    this.parallel = parallel;
  }
}

export interface SessionPair {
  source: SideSession;
  target: SideSession;
}

export async function openSession(conn: ResolvedConnInfo, side: Side): Promise<SideSession> {
  const client = await connect(conn, { label: side, settings: { ...VERIFY_SETTINGS }, applicationName: 'pgferry verify' });
  return new SideSession(side, client);
}

/** Open `count` pairs; on failure closes what was opened. */
export async function openPairs(source: ResolvedConnInfo, target: ResolvedConnInfo, count: number): Promise<SessionPair[]> {
  const opened: SideSession[] = [];
  try {
    const pairs: SessionPair[] = [];
    for (let i = 0; i < count; i++) {
      const results = await Promise.allSettled([openSession(source, 'source'), openSession(target, 'target')]);
      for (const r of results) if (r.status === 'fulfilled') opened.push(r.value);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const [s, t] = results as PromiseFulfilledResult<SideSession>[];
      pairs.push({ source: s!.value, target: t!.value });
    }
    return pairs;
  } catch (err) {
    await closeSessions(opened);
    throw err;
  }
}

export async function closeSessions(sessions: readonly SideSession[]): Promise<void> {
  await Promise.all(sessions.map((s) => s.client.end().catch(() => {})));
}

export async function closePairs(pairs: readonly SessionPair[]): Promise<void> {
  await closeSessions(pairs.flatMap((p) => [p.source, p.target]));
}
