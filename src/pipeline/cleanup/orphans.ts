/**
 * Table-synchronisation slots on the source whose subscription no longer
 * exists on the target (`pg_<subscription oid>_sync_<relid>_<target system
 * id>`): left behind when a subscription was dropped while its table copies
 * ran (sync --force, an interrupted DROP SUBSCRIPTION). `status` reports them
 * as leftovers; cleanup drops them too. Slots of subscriptions that still
 * exist (pgferry's handled elsewhere, anyone else's never), of other target
 * servers, or in use, are left alone.
 */
import type pg from 'pg';
import { parseTablesyncSlot, type SourceSlot } from '../shared/replication-catalog.js';

/** OIDs of every subscription on the target server (pg_subscription is shared by its databases). */
export async function targetSubscriptionOids(client: pg.Client): Promise<Set<number>> {
  const { rows } = await client.query<{ oids: number[] }>('SELECT ARRAY(SELECT oid::int FROM pg_subscription) AS oids');
  return new Set(rows[0]?.oids ?? []);
}

export function orphanedTablesyncSlots(slots: SourceSlot[], targetSystemIdentifier: string, subscriptionOids: Set<number>): string[] {
  return slots
    .filter((s) => {
      const ts = parseTablesyncSlot(s.name);
      return !!ts && !s.active && ts.systemIdentifier === targetSystemIdentifier && !subscriptionOids.has(ts.subscriptionOid);
    })
    .map((s) => s.name);
}
