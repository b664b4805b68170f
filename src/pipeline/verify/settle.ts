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
 *
 * Rows of a keyed table that keep changing get the same treatment with a
 * FOR SHARE lock on just those rows (settleRowsUnderLock).
 */
import type pg from 'pg';
import { connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { currentLsn, waitForReplay, type ReplicationLink } from './replication.js';
import type { SessionPair, SideSession } from './sessions.js';
import { chunkHashQuery, lookupRowsQuery, rowShareLockQuery, shareLockStatement, type KeyRange, type Query, type VerifyTable } from './sql.js';

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

/** A keyless table (or a range of one) compared as of one source position, under a SHARE lock on the table. */
export async function settleUnderLock(x: SettleInput): Promise<SettleResult> {
  const r = await readUnderLock(x, { text: shareLockStatement(x.table), values: [] }, 'the table\'s SHARE lock', async (source, target) => {
    const [s, t] = await Promise.all([
      source.query<{ n: string; h: string }>(chunkHashQuery(x.table, x.range, 'source')),
      target.query<{ n: string; h: string }>(chunkHashQuery(x.table, x.range, 'target')),
    ]);
    return s[0]?.n === t[0]?.n && s[0]?.h === t[0]?.h;
  });
  if (r.outcome === 'unsettled') return r;
  return { outcome: r.value ? 'equal' : 'different', heldMs: r.heldMs };
}

export type RowsSettleResult =
  | { outcome: 'read'; source: Record<string, string>[]; target: Record<string, string>[]; heldMs: number }
  | { outcome: 'unsettled'; reason: string };

/**
 * Rows of a keyed table that kept changing while they were rechecked, read
 * as of one source position: the same steps as for a keyless table, with the
 * rows themselves locked (FOR SHARE) instead of the table, so only writers of
 * those rows wait. Keys absent on the source cannot be locked; they are read
 * as of the same position, which an insert of that key after it can still
 * outrun.
 */
export async function settleRowsUnderLock(x: Omit<SettleInput, 'range'> & { keys: string[][] }): Promise<RowsSettleResult> {
  const r = await readUnderLock(x, rowShareLockQuery(x.table, x.keys), 'a FOR SHARE lock on the rows', (source, target) =>
    Promise.all([
      source.query<Record<string, string>>(lookupRowsQuery(x.table, x.keys, 'source')),
      target.query<Record<string, string>>(lookupRowsQuery(x.table, x.keys, 'target')),
    ]),
  );
  if (r.outcome === 'unsettled') return r;
  return { outcome: 'read', source: r.value[0], target: r.value[1], heldMs: r.heldMs };
}

type LockedRead<T> = { outcome: 'read'; value: T; heldMs: number } | { outcome: 'unsettled'; reason: string };

async function readUnderLock<T>(
  x: Omit<SettleInput, 'range'>,
  lock: Query,
  what: string,
  read: (source: SideSession, target: SideSession) => Promise<T>,
): Promise<LockedRead<T>> {
  // Get the target close first, without holding anything.
  const near = await currentLsn(x.pair.source);
  if (!(await waitForReplay(x.pair.source, x.replication, near, x.lagTimeoutMs, x.signal))) {
    return { outcome: 'unsettled', reason: `the target did not replay past source LSN ${near} within ${Math.round(x.lagTimeoutMs / 1000)}s` };
  }
  const locker = await connect(x.sourceConn, { label: 'source', applicationName: 'pgferry verify (lock)' });
  try {
    for (let attempt = 1; attempt <= LOCK_ATTEMPTS; attempt++) {
      x.signal?.throwIfAborted();
      const r = await snapshotsUnderLock(locker, x, lock);
      if (r === 'busy') {
        await sleep(50 * attempt);
        continue;
      }
      if (r.outcome === 'unsettled') return r;
      try {
        return { outcome: 'read', value: await read(x.pair.source, x.pair.target), heldMs: r.heldMs };
      } finally {
        await Promise.all([rollback(x.pair.source), rollback(x.pair.target)]);
      }
    }
    return { outcome: 'unsettled', reason: `${what} on the source was not granted within ${LOCK_TIMEOUT_MS} ms in ${LOCK_ATTEMPTS} attempts` };
  } finally {
    await locker.end().catch(() => {});
  }
}

/**
 * Take the lock, open a REPEATABLE READ snapshot on the source, wait until the
 * target has applied the source's position, open one on the target, release
 * the lock. The snapshots stay open for the caller's reads.
 */
async function snapshotsUnderLock(
  locker: pg.Client,
  x: Omit<SettleInput, 'range'>,
  lock: Query,
): Promise<{ outcome: 'held'; heldMs: number } | { outcome: 'unsettled'; reason: string } | 'busy'> {
  const { source, target } = x.pair;
  await locker.query(`BEGIN; SET LOCAL lock_timeout = '${LOCK_TIMEOUT_MS}ms'`);
  let locked = false;
  let held = 0;
  try {
    try {
      await locker.query(lock.text, lock.values);
      locked = true;
    } catch (err) {
      if (sqlstate(err) === '55P03') return 'busy';
      if (sqlstate(err) === '42501') return { outcome: 'unsettled', reason: 'the source role may not lock it (a SHARE lock needs UPDATE, DELETE or TRUNCATE on the table; FOR SHARE needs UPDATE)' };
      if (sqlstate(err) === '25006') return { outcome: 'unsettled', reason: 'the source is read-only (a standby) and takes no locks' };
      throw err;
    }
    held = performance.now();
    await begin(source);
    const lsn = await currentLsn(source);
    if (!(await waitForReplay(source, x.replication, lsn, HOLD_MS, x.signal))) {
      await rollback(source);
      return { outcome: 'unsettled', reason: `the target did not apply source LSN ${lsn} within ${HOLD_MS / 1000}s while the lock was held` };
    }
    await begin(target);
    await target.query({ text: 'SELECT 1', values: [] });
  } catch (err) {
    await Promise.all([rollback(source), rollback(target)]);
    throw err;
  } finally {
    await locker.query(locked ? 'COMMIT' : 'ROLLBACK').catch(() => {});
  }
  return { outcome: 'held', heldMs: Math.round(performance.now() - held) };
}

async function begin(s: SideSession): Promise<void> {
  await s.query({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', values: [] });
}

async function rollback(s: SideSession): Promise<void> {
  await s.query({ text: 'ROLLBACK', values: [] }).catch(() => {});
}
