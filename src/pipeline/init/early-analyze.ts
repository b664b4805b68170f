/**
 * ANALYZE of small plain tables while the copy goes on. A column's statistics
 * do not depend on the table's indexes, so a table analysed as soon as its rows
 * are committed gets what the ANALYZE phase would give it — except where an
 * expression index or extended statistics (both built in post-data) add their
 * own: those tables are left to the ANALYZE phase, as are partitioned tables
 * (analyze.ts) and the tables whose items are built during the copy
 * (table-post-data.ts analyses those after their items).
 *
 * One target session, one table after another, beside the copy workers: on a
 * database of many small tables the copy leaves the cores idle between round
 * trips, and the ANALYZE phase was a serial tail after the post-data phase.
 * What is not analysed when the copy ends is left to the ANALYZE phase; a
 * failure here only leaves more to it.
 */
import type pg from 'pg';
import { acquireClient, type AcquiredClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { qualifiedName } from '../../postgres/identifiers.js';

export interface EarlyAnalyzeTable {
  key: string;
  schema: string;
  name: string;
}

export interface EarlyAnalyzer {
  /** A table whose rows are committed (and recorded). */
  tableDone(key: string): void;
  /** Take no more tables, let the one being analysed finish, and give the session back. */
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
      for (let t = queue.shift(); t && !stopped; t = queue.shift()) {
        await session.client.query(`ANALYZE ${qualifiedName(t.schema, t.name)}`);
        analyzed.add(t.key);
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
