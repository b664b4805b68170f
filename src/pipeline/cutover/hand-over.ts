/**
 * Hand-over: the forward subscription stops for good. It is disabled and
 * pgferry waits until its workers have exited (nothing is applied after
 * this), detached from its slot and dropped; then the slot is dropped on the
 * source (after its walsender has let go). Each step is recorded, and each is
 * skipped when already done, so a rerun after a crash finishes the job.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError } from '../../errors.js';
import { quoteIdent } from '../../postgres/identifiers.js';
import { isStatementRefusal } from '../../postgres/errors.js';
import { eventTriggerStates, eventTriggerStatements } from '../shared/event-triggers.js';
import { readSubscription } from '../shared/replication-catalog.js';
import { stopSubscription } from '../shared/subscription.js';

/** Disable, wait for the workers (`wake`: see stopSubscription), detach from the slot, drop. False when there was no subscription. */
export async function dropForwardSubscription(target: pg.Client, name: string, wake?: () => Promise<void>): Promise<boolean> {
  const sub = await readSubscription(target, name);
  if (!sub) return false;
  await stopSubscription(target, sub, undefined, wake);
  if (sub.slotName !== null) await target.query(`ALTER SUBSCRIPTION ${quoteIdent(sub.name)} SET (slot_name = NONE)`);
  await target.query(`DROP SUBSCRIPTION ${quoteIdent(sub.name)}`);
  return true;
}

/** Drop a logical slot on the connected source once no walsender holds it. False when it did not exist. */
export async function dropSourceSlot(source: pg.Client, slot: string, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await source.query<{ active: boolean; pid: number | null }>('SELECT active, active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (!rows.length) return false;
    if (!rows[0]!.active) {
      try {
        await source.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return true;
      } catch (err) {
        // Taken again between the look and the drop: look again.
        if ((err as { code?: string }).code !== '55006') throw err;
      }
    } else if (Date.now() > deadline) {
      throw new OperationError(`replication slot ${slot} is still in use on the source (walsender pid ${rows[0]!.pid}) ${Math.round(timeoutMs / 1000)} s after its subscription was dropped`, {
        hint: 'run pgferry cutover again to finish the hand-over (or pgferry cleanup)',
      });
    }
    await sleep(50);
  }
}

/**
 * The target's event triggers (init created them disabled, shared/event-triggers.ts) as the source has them now.
 * Idempotent; a statement the target refuses (ALTER EVENT TRIGGER needs the trigger's owner, a superuser) is
 * returned as a warning naming it.
 */
export async function enableEventTriggers(source: ReadonlyMap<string, string>, target: pg.Client, targetDatabase: string): Promise<string[]> {
  const warnings: string[] = [];
  if (!source.size) return warnings;
  for (const sql of eventTriggerStatements(source, await eventTriggerStates(target))) {
    try {
      await target.query(sql);
    } catch (err) {
      if (!isStatementRefusal(err)) throw err;
      warnings.push(`database "${targetDatabase}": event trigger left disabled: ${(err as Error).message}; run as its owner: ${sql}`);
    }
  }
  return warnings;
}
