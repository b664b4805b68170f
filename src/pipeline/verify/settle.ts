/**
 * A keyless table under continuous writes may never look equal at the
 * instants a recheck reads it: the target has applied more than the source
 * had at the first read, and less than it has at the second. This reads both
 * sides as of one source position instead:
 *
 *   1. a SHARE lock on the source table, taken with a short lock_timeout
 *      (writers of that table wait for a moment; nothing else does, and no
 *      queue builds up behind a lock request that cannot be granted at once);
 *   2. a REPEATABLE READ snapshot on the source and L, the WAL position after
 *      it: every transaction that wrote the table has committed before the lock
 *      was granted, so the snapshot holds the table exactly as of L;
 *   3. wait until the target has applied L, then a REPEATABLE READ snapshot on
 *      the target: no transaction touching the table can commit on the source
 *      while the lock is held, so the target holds the table as of L too;
 *   4. release the lock, then hash both snapshots at leisure.
 *
 * The lock is held only for steps 2–3, at most HOLD_MS: a few milliseconds
 * under the client applier, up to about a second under a native subscription
 * (an apply worker with nothing new to apply reports its position once a
 * second, and the table's writers are the ones waiting).
 */
import type pg from 'pg';
import { connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLsn, waitForReplay, type ReplicationLink } from './replication.js';
import type { SessionPair, SideSession } from './sessions.js';
import { chunkHashQuery, shareLockStatement, type KeyRange, type VerifyTable } from './sql.js';

/** Longest wait for the lock on each attempt: the table's writers wait at most this long. */
const LOCK_TIMEOUT_MS = 200;
const LOCK_ATTEMPTS = 10;
/** Longest time the lock is held while the target applies the last changes. */
const HOLD_MS = 2_000;

export type SettleResult =
  | { outcome: 'equal' | 'different'; heldMs: number }
  | { outcome: 'unsettled'; reason: string };

export interface SettleInput {
  sourceConn: ResolvedConnInfo;
  pair: SessionPair;
  table: VerifyTable;
  range: KeyRange;
  replication: ReplicationLink;
  lagTimeoutMs: number;
  signal?: AbortSignal;
}

export async function settleUnderLock(x: SettleInput): Promise<SettleResult> {
  // Get the target close first, without holding anything.
  const near = await currentLsn(x.pair.source);
  if (!(await waitForReplay(x.pair.source, x.replication, near, x.lagTimeoutMs, x.signal))) {
    return { outcome: 'unsettled', reason: `the target did not replay past source LSN ${near} within ${Math.round(x.lagTimeoutMs / 1000)}s` };
  }
  const locker = await connect(x.sourceConn, { label: 'source', applicationName: 'pgferry verify (lock)' });
  try {
    for (let attempt = 1; attempt <= LOCK_ATTEMPTS; attempt++) {
      x.signal?.throwIfAborted();
      const r = await snapshotsUnderLock(locker, x);
      if (r !== 'busy') return r;
      await sleep(50 * attempt);
    }
    return { outcome: 'unsettled', reason: `the table's SHARE lock on the source was not granted within ${LOCK_TIMEOUT_MS} ms in ${LOCK_ATTEMPTS} attempts` };
  } finally {
    await locker.end().catch(() => {});
  }
}

async function snapshotsUnderLock(locker: pg.Client, x: SettleInput): Promise<SettleResult | 'busy'> {
  const { source, target } = x.pair;
  await locker.query(`BEGIN; SET LOCAL lock_timeout = '${LOCK_TIMEOUT_MS}ms'`);
  let locked = false;
  let held = 0;
  try {
    try {
      await locker.query(shareLockStatement(x.table));
      locked = true;
    } catch (err) {
      if (sqlstate(err) === '55P03') return 'busy';
      if (sqlstate(err) === '42501') return { outcome: 'unsettled', reason: 'the source role may not lock the table in SHARE mode (it needs UPDATE, DELETE or TRUNCATE on it)' };
      throw err;
    }
    held = performance.now();
    await begin(source);
    const lsn = await currentLsn(source);
    if (!(await waitForReplay(source, x.replication, lsn, HOLD_MS, x.signal))) {
      await rollback(source);
      return { outcome: 'unsettled', reason: `the target did not apply source LSN ${lsn} within ${HOLD_MS / 1000}s while the table was locked` };
    }
    await begin(target);
    await target.query({ text: 'SELECT 1', values: [] });
  } catch (err) {
    await Promise.all([rollback(source), rollback(target)]);
    throw err;
  } finally {
    await locker.query(locked ? 'COMMIT' : 'ROLLBACK').catch(() => {});
  }
  const heldMs = Math.round(performance.now() - held);
  try {
    const [s, t] = await Promise.all([
      source.query<{ n: string; h: string }>(chunkHashQuery(x.table, x.range, 'source')),
      target.query<{ n: string; h: string }>(chunkHashQuery(x.table, x.range, 'target')),
    ]);
    const equal = s[0]?.n === t[0]?.n && s[0]?.h === t[0]?.h;
    return { outcome: equal ? 'equal' : 'different', heldMs };
  } finally {
    await Promise.all([rollback(source), rollback(target)]);
  }
}

async function begin(s: SideSession): Promise<void> {
  await s.query({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', values: [] });
}

async function rollback(s: SideSession): Promise<void> {
  await s.query({ text: 'ROLLBACK', values: [] }).catch(() => {});
}
