/**
 * Connections for verify: `jobs` pairs (one source and one target session
 * each), all opened with the canonical settings so that both sides print
 * values identically. A pair runs the same query on both sides at once.
 */
import { availableParallelism } from 'node:os';
import type pg from 'pg';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import { isThisMachine, type ResolvedConnInfo } from '../../postgres/conninfo.js';
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

/**
 * Whether verify's queries may use the servers' parallel workers. A pair runs
 * the same query on both sides at once, `jobs` pairs at a time; when both
 * servers run on this machine they share its cores, and once the pairs alone
 * with one worker each (jobs × 2 sides × 2 processes) would need more cores
 * than there are, more processes only take turns: measured on 2 cores, a
 * 1 M-row table hashed on both sides took 0.67 s with the default two workers
 * a side and 0.48 s without. Servers elsewhere keep their own setting.
 */
export function parallelQueryFits(source: Pick<ResolvedConnInfo, 'host'>, target: Pick<ResolvedConnInfo, 'host'>, jobs: number, cores = availableParallelism()): boolean {
  if (!isThisMachine(source.host) || !isThisMachine(target.host)) return true;
  return jobs * 2 * 2 <= cores;
}

export class SideSession {
  /** Chunk queries should follow the key index, never scan the whole table per chunk. */
  private seqscan = true;
  /** Parallel plans in force (the server's setting); off for batches of small tables, or always (parallelQueryFits). */
  private parallel: boolean;
  /** The last query handed to the connection: the next one starts after it. */
  private tail: Promise<unknown> = Promise.resolve();
  constructor(
    readonly side: Side,
    readonly client: pg.Client,
    /** False: the session was opened with max_parallel_workers_per_gather = 0, and keeps it. */
    private readonly parallelAllowed = true,
  ) {
    this.parallel = parallelAllowed;
  }

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
    const parallel = kind !== 'batch' && this.parallelAllowed;
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

/** `parallel` false: the session runs without parallel workers (parallelQueryFits). */
export async function openSession(conn: ResolvedConnInfo, side: Side, parallel = true): Promise<SideSession> {
  const settings = parallel ? { ...VERIFY_SETTINGS } : { ...VERIFY_SETTINGS, max_parallel_workers_per_gather: '0' };
  const client = await connect(conn, { label: side, settings, applicationName: 'pgferry verify' });
  return new SideSession(side, client, parallel);
}

/** Open `count` pairs; on failure closes what was opened. */
export async function openPairs(source: ResolvedConnInfo, target: ResolvedConnInfo, count: number, parallel = true): Promise<SessionPair[]> {
  const opened: SideSession[] = [];
  try {
    const pairs: SessionPair[] = [];
    for (let i = 0; i < count; i++) {
      const results = await Promise.allSettled([openSession(source, 'source', parallel), openSession(target, 'target', parallel)]);
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
