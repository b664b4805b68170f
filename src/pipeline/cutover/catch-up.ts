/**
 * LSN-gated catch-up: once the source is fenced, its WAL position (the fence
 * LSN) is after every application commit. The target has applied them all
 * when the subscription's slot has confirmed at least that position:
 * the apply worker confirms a position only after every transaction before it
 * is applied and flushed on the target (and, with nothing pending, the end of
 * what it received, which covers WAL without replicated changes such as the
 * fence's own DDL). The position only moves forward, so reading it cannot
 * race with the worker. No lag heuristics.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError } from '../../errors.js';
import { lsnToBigInt } from '../../postgres/lsn.js';

export interface CatchUpResult {
  reached: boolean;
  /** The slot's confirmed position at the end. */
  appliedLsn: string | null;
  waitedMs: number;
}

/**
 * Wait until slot `slot` on the connected source has confirmed `fenceLsn`, at
 * most `maxWaitMs`. `poke` runs between polls (the caller makes the target
 * flush, so that the worker's next report comes sooner).
 */
export async function waitForApplied(
  c: pg.Client,
  slot: string,
  fenceLsn: string,
  maxWaitMs: number,
  opts: { signal?: AbortSignal; poke?: () => Promise<void>; onPoll?: (confirmed: string | null) => void } = {},
): Promise<CatchUpResult> {
  const started = performance.now();
  const want = lsnToBigInt(fenceLsn);
  let poked = 0;
  for (;;) {
    opts.signal?.throwIfAborted();
    const { rows } = await c.query<{ lsn: string | null }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (!rows.length) throw new OperationError(`replication slot ${slot} disappeared from the source during cutover`);
    const lsn = rows[0]!.lsn;
    opts.onPoll?.(lsn);
    const waitedMs = performance.now() - started;
    if (lsn !== null && lsnToBigInt(lsn) >= want) return { reached: true, appliedLsn: lsn, waitedMs };
    if (waitedMs > maxWaitMs) return { reached: false, appliedLsn: lsn, waitedMs };
    // A flush on the target at most every 50 ms: the apply worker reports positions it has flushed.
    if (opts.poke && performance.now() - started > poked * 50) {
      poked++;
      await opts.poke().catch(() => {});
    }
    await sleep(10);
  }
}

/**
 * Flush the server's WAL now, and so wake its walsenders. A commit waits for the flush only if its transaction
 * wrote WAL (an xid alone writes none): an empty transactional logical message is the smallest record that
 * counts (callable by any role on 12+; pgoutput passes messages on only to subscribers that ask for them).
 * `local`: waiting for synchronous standbys would add nothing here and could hang on a missing one.
 */
export async function flushWal(c: pg.Client): Promise<void> {
  await c.query("BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_logical_emit_message(true, 'pgferry', ''); COMMIT");
}
