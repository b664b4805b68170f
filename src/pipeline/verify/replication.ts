/**
 * Replication lag awareness. A database pair is "replicating" when an
 * enabled subscription in the target database reads a logical slot of the
 * source database (pgferry's own subscription is one such). Then a difference
 * is only believed after the target has replayed past the source LSN at which
 * the source side was read: the slot's confirmed_flush_lsn is what the
 * subscriber reports as applied and flushed. pgferry's client applier
 * (sync --applier client) counts too: its replication origin on the target
 * bears the name of the slot it reads, and it confirms a position on that slot
 * only once the target has committed it; it is watched while the slot is in use.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { faultPoint } from '../../fault.js';
import { WAL_END_SQL } from '../../postgres/lsn.js';
import type { SideSession } from './sessions.js';
import type { ReplicationInfo } from './types.js';

export interface ReplicationLink extends ReplicationInfo {
  /** Slots to watch (those of enabled subscriptions). */
  slots: string[];
}

export async function detectReplication(source: SideSession, target: SideSession): Promise<ReplicationLink> {
  const [subs, slots, origins] = await Promise.all([
    target
      .query<{ name: string; slot: string | null; enabled: boolean }>({
        text: `SELECT subname AS name, subslotname AS slot, subenabled AS enabled FROM pg_subscription
                WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY subname`,
        values: [],
      })
      .catch(() => []),
    source.query<{ slot_name: string; active: boolean }>({
      text: `SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'logical' AND database = current_database()`,
      values: [],
    }),
    target
      .query<{ name: string }>({ text: `SELECT roname AS name FROM pg_replication_origin WHERE roname LIKE 'pgferry\\_%' ORDER BY roname`, values: [] })
      .catch(() => []),
  ]);
  const slotNames = new Set(slots.map((s) => s.slot_name));
  const linked = subs.filter((s) => s.slot !== null && slotNames.has(s.slot));
  const subscriptions: ReplicationInfo['subscriptions'] = linked.map((s) => ({ name: s.name, slot: s.slot!, enabled: s.enabled }));
  for (const o of origins) {
    const slot = slots.find((s) => s.slot_name === o.name);
    if (slot && !subscriptions.some((s) => s.slot === slot.slot_name)) subscriptions.push({ name: o.name, slot: o.name, enabled: slot.active, applier: 'client' });
  }
  const watched = subscriptions.filter((s) => s.enabled).map((s) => s.slot);
  return { active: watched.length > 0, subscriptions, slots: watched };
}

/** The source's current WAL position, including async commits not yet written (replay position on a standby). */
export async function currentLsn(source: SideSession): Promise<string> {
  const rows = await source.query<{ lsn: string }>({
    text: `SELECT ${WAL_END_SQL}::text AS lsn`,
    values: [],
  });
  return rows[0]!.lsn;
}

/**
 * Wait until every watched slot has confirmed `lsn`. Returns false after
 * `timeoutMs` (the target is stuck or far behind).
 */
export async function waitForReplay(
  source: SideSession,
  link: ReplicationLink,
  lsn: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<boolean> {
  // Every recheck of a differing range (compare.ts) and every repair read waits here first.
  faultPoint('verify.recheck');
  const deadline = Date.now() + timeoutMs;
  // Polled often: the subscriber reports its flush position every few hundred ms, and each wait holds up a worker.
  let pause = 20;
  for (;;) {
    const rows = await source.query<{ ok: boolean | null }>({
      text: `SELECT bool_and(coalesce(confirmed_flush_lsn >= $1::pg_lsn, false)) AS ok FROM pg_replication_slots WHERE slot_name = ANY($2::text[])`,
      values: [lsn, link.slots],
    });
    if (rows[0]?.ok) return true;
    if (Date.now() >= deadline || signal?.aborted) return false;
    await sleep(pause);
    pause = Math.min(Math.round(pause * 1.5), 100);
  }
}
