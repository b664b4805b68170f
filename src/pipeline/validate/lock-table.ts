/**
 * The lock table. A transaction keeps every lock it takes until it ends, and all sessions share one table of
 * about max_locks_per_transaction × (server processes + prepared transactions) entries. pg_dump locks every
 * table it dumps in one transaction, and CREATE SUBSCRIPTION every table of the publication; a database of
 * many tables can run out ("out of shared memory", with max_locks_per_transaction in the hint) where the
 * defaults serve several thousand. PostgreSQL can lend the table some spare shared memory, so the nominal
 * size is where failures become possible, not certain: more tables than that is a warning.
 */
import type pg from 'pg';
import { plural } from '../../units.js';
import { ok, warn, type CheckResult } from './types.js';

export interface LockTableFacts {
  maxLocksPerTransaction: number;
  /** The processes and prepared transactions the lock table is sized for (MaxBackends + max_prepared_transactions). */
  processes: number;
}

/**
 * What PostgreSQL sizes the lock table by: MaxBackends (connections, autovacuum workers and launcher, background
 * workers, WAL senders) plus prepared transactions. PostgreSQL 18 counts autovacuum_worker_slots instead of
 * autovacuum_max_workers, and two special workers (the launcher and the slot sync worker) instead of one.
 */
export async function gatherLockTable(client: pg.Client): Promise<LockTableFacts> {
  const { rows } = await client.query<{ per: number; processes: number }>(
    `SELECT current_setting('max_locks_per_transaction')::int AS per,
            current_setting('max_connections')::int
              + coalesce(current_setting('autovacuum_worker_slots', true)::int + 2, current_setting('autovacuum_max_workers')::int + 1)
              + current_setting('max_worker_processes')::int + current_setting('max_wal_senders')::int
              + current_setting('max_prepared_transactions')::int AS processes`,
  );
  return { maxLocksPerTransaction: rows[0]!.per, processes: rows[0]!.processes };
}

export function lockTableSize(f: LockTableFacts): number {
  return f.maxLocksPerTransaction * f.processes;
}

/** A max_locks_per_transaction that gives `relations` a quarter to spare, in steps of 64 (the default). */
export function suggestedMaxLocks(relations: number, f: LockTableFacts): number {
  const needed = Math.ceil((relations * 1.25) / Math.max(1, f.processes));
  return Math.max(f.maxLocksPerTransaction * 2, Math.ceil(needed / 64) * 64);
}

/**
 * One side's lock table against the tables one of pgferry's steps locks in a single transaction:
 * `statement` (pg_dump, CREATE SUBSCRIPTION) run by `step` (init, sync).
 */
export function checkLockTable(side: 'source' | 'target', f: LockTableFacts, relations: number, statement: string, step: string): CheckResult {
  const id = `${side}.lock_table`;
  const size = lockTableSize(f);
  const sizing = `max_locks_per_transaction = ${f.maxLocksPerTransaction} × ${f.processes} processes and prepared transactions`;
  const what = `${statement} (${step}) locks ${plural(relations, 'table')} on the ${side} in one transaction`;
  if (relations <= size) return ok(id, side, `${what}; the lock table holds about ${size} (${sizing})`);
  return warn(
    id,
    side,
    `${what}, more than its lock table is sized for: about ${size} (${sizing}), shared by every session; ` +
      `if it runs out, ${statement} stops with "out of shared memory"`,
    `ALTER SYSTEM SET max_locks_per_transaction = ${suggestedMaxLocks(relations, f)};  -- then restart the ${side} server`,
  );
}
