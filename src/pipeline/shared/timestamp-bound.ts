/**
 * The safe lower bound of a timestamp-based round (`--method timestamp`).
 *
 * Rows are stamped by a trigger with now(): the START time of the writing
 * transaction. A transaction that started before a round's snapshot but
 * commits after it writes timestamps older than that snapshot, so "newer than
 * the last maximum" would lose its rows. Read BEFORE the snapshot is taken:
 * the clock, and the oldest start of every transaction then open in this
 * database. Any transaction whose rows the snapshot cannot see either was open
 * then (its start is at least the oldest one) or started later (its start is
 * at least the clock). So every row committed after the snapshot carries a
 * timestamp >= least(clock, oldest open start): the next round reads from
 * there, inclusive, minus an overlap that covers the instant between a
 * transaction taking its start time and showing it in pg_stat_activity, clock
 * steps, and timestamps set by the application. Reading the bound after the
 * snapshot instead would miss a transaction that commits in between.
 */
import type pg from 'pg';
import { OperationError, UsageError } from '../../errors.js';

/** Overlap used when none is given: far above the microseconds of the race it covers. */
export const DEFAULT_OVERLAP_SECONDS = 1;

export interface LowerBound {
  /** clock_timestamp() when read (text, UTC, microseconds kept). */
  clock: string;
  /** xact_start of the oldest transaction open in this database then, or null. */
  oldestOpen: string | null;
  /** least(clock, oldestOpen) - overlap: the next round reads rows stamped at or after it. */
  bound: string;
  /**
   * A standby: the primary's open transactions are not in its pg_stat_activity, so the bound does not cover
   * them; rounds read by `xmin` instead (rows written by transactions at or above it).
   */
  standby: boolean;
  /** The oldest transaction ID still running (64-bit, text): txid_snapshot_xmin of a snapshot taken now. */
  xmin: string;
}

const BOUND_SQL = `
WITH open AS (
  SELECT a.xact_start, a.query
    FROM pg_catalog.pg_stat_activity a
   WHERE a.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
     AND a.pid <> pg_catalog.pg_backend_pid()
     AND a.backend_type IS DISTINCT FROM 'autovacuum worker'
), facts AS (
  SELECT pg_catalog.clock_timestamp() AS clock,
         (SELECT min(xact_start) FROM open) AS oldest,
         (SELECT count(*) FROM open WHERE query = '<insufficient privilege>')::int AS hidden,
         (SELECT count(*) FROM pg_catalog.pg_prepared_xacts WHERE database = current_database())::int AS prepared
)
SELECT clock::text AS clock, oldest::text AS oldest, hidden, prepared, pg_catalog.pg_is_in_recovery() AS standby,
       pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())::text AS xmin,
       (LEAST(clock, oldest) - $1::float8 * interval '1 second')::text AS bound
  FROM facts`;

/**
 * Read the bound on a connection with the canonical settings (TimeZone UTC),
 * outside the transaction whose snapshot it bounds, and before that snapshot.
 */
export async function readLowerBound(c: pg.Client, overlapSeconds: number): Promise<LowerBound> {
  const { rows } = await c.query<{ clock: string; oldest: string | null; hidden: number; prepared: number; bound: string; standby: boolean; xmin: string }>(
    BOUND_SQL, [overlapSeconds],
  );
  const r = rows[0]!;
  // A standby's own sessions cannot write, and the primary's transactions (prepared ones too) are covered by xmin.
  if (r.standby) return { clock: r.clock, oldestOpen: r.oldest, bound: r.bound, standby: true, xmin: r.xmin };
  if (r.hidden > 0) {
    throw new UsageError(
      `the source role cannot see when ${r.hidden} other session${r.hidden > 1 ? 's\'' : '\'s'} transaction started (pg_stat_activity), so a round could miss their rows`,
      { hint: 'GRANT pg_read_all_stats TO <the source role>; (or connect as a superuser)' },
    );
  }
  if (r.prepared > 0) {
    throw new OperationError(
      `${r.prepared} prepared transaction${r.prepared > 1 ? 's are' : ' is'} open in the source database: when ${r.prepared > 1 ? 'they' : 'it'} started is unknown, so a round could miss their rows`,
      { hint: 'COMMIT PREPARED or ROLLBACK PREPARED them (pg_prepared_xacts), then run the round again' },
    );
  }
  return { clock: r.clock, oldestOpen: r.oldest, bound: r.bound, standby: false, xmin: r.xmin };
}

/** Whether the current role sees every session's transaction start (superuser or pg_read_all_stats). */
export async function canReadAllActivity(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>(
    `SELECT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
            OR pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS ok`,
  );
  return rows[0]!.ok;
}
