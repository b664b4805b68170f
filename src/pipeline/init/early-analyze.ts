/**
 * ANALYZE of small plain tables while the copy goes on. A column's statistics
 * do not depend on the table's indexes, so a table analysed as soon as its rows
 * are committed gets what the ANALYZE phase would give it — except where an
 * expression index or extended statistics (both built in post-data) add their
 * own: those tables are left to the ANALYZE phase, as are partitioned tables
 * (analyze.ts) and the tables whose items are built during the copy
 * (table-post-data.ts analyses those after their items).
 *
 * One target session beside the copy workers, taking the tables that finished
 * meanwhile in one statement each time: on a database of many small tables the
 * copy leaves the cores idle between round trips, and the ANALYZE phase was a
 * serial tail after the post-data phase.
 * What is not analysed when the copy ends is left to the ANALYZE phase; a
 * failure here only leaves more to it.
 */
import type pg from 'pg';
import { acquireClient, type AcquiredClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { ANALYZE_BATCH_TABLES, analyzedTogether, analyzeSql } from './analyze.js';

export interface EarlyAnalyzeTable {
  key: string;
  schema: string;
  name: string;
  /** Size on the source (-1: unknown). */
  bytes: number;
}

export interface EarlyAnalyzer {
  /** A table whose rows are committed (and recorded). */
  tableDone(key: string): void;
  /** Take no more tables, let the statement being run finish, and give the session back. */
  finish(): Promise<void>;
}

/** Source tables whose statistics need objects of the post-data section: expression indexes, extended statistics. */
export async function tablesWithPostDataStatistics(source: pg.Client, oids: number[]): Promise<Set<number>> {
  if (!oids.length) return new Set();
  const { rows } = await source.query<{ oid: number }>(
    `SELECT indrelid::int AS oid FROM pg_index WHERE indexprs IS NOT NULL AND indrelid = ANY($1::oid[])
     UNION
     SELECT stxrelid::int FROM pg_statistic_ext WHERE stxrelid = ANY($1::oid[])`,
    [oids],
  );
  return new Set(rows.map((r) => r.oid));
}

export function earlyAnalyzer(target: ResolvedConnInfo, tables: EarlyAnalyzeTable[], analyzed: Set<string>): EarlyAnalyzer {
  const byKey = new Map(tables.map((t) => [t.key, t]));
  const queue: EarlyAnalyzeTable[] = [];
  let session: AcquiredClient | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  let failed = false;

  const pump = async () => {
    try {
      session ??= await acquireClient(target, { label: 'the target' });
      // What finished meanwhile goes in one statement (one round trip; each table is still its own transaction).
      while (queue.length && !stopped) {
        const batch = takeBatch(queue);
        const [first, ...rest] = batch;
        await session.client.query(analyzeSql({ schema: first!.schema, name: first!.name, with: rest }));
        for (const t of batch) analyzed.add(t.key);
      }
    } catch {
      // Left to the ANALYZE phase, which reports any failure that persists.
      failed = true;
      stopped = true;
    } finally {
      running = undefined;
    }
  };

  return {
    tableDone(key) {
      const t = byKey.get(key);
      if (!t || stopped) return;
      queue.push(t);
      running ??= pump();
    },
    async finish() {
      stopped = true;
      queue.length = 0;
      await running;
      await session?.release(!failed);
    },
  };
}

/**
 * The next statement's tables: the small ones that are waiting (below
 * ANALYZE_BATCH_MAX_BYTES, at most ANALYZE_BATCH_TABLES), or one larger table
 * alone, so that finish() never waits for a long list.
 */
function takeBatch(queue: EarlyAnalyzeTable[]): EarlyAnalyzeTable[] {
  const first = queue.shift()!;
  if (!analyzedTogether(first.bytes)) return [first];
  const batch = [first];
  for (let i = 0; i < queue.length && batch.length < ANALYZE_BATCH_TABLES; ) {
    if (analyzedTogether(queue[i]!.bytes)) batch.push(...queue.splice(i, 1));
    else i++;
  }
  return batch;
}
