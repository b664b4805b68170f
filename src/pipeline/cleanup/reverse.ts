/**
 * The reverse replication `cutover --reverse` set up (a subscription on the
 * old source, a publication and a slot on the new primary), as recorded in
 * cutover.json. cleanup removes it with the rest; the fence on the old source
 * stays (cutover.json keeps what it took away).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { withClient } from '../../postgres/connect.js';
import { forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { quoteIdent } from '../../postgres/identifiers.js';

export interface ReverseRecord {
  sourceDatabase: string;
  targetDatabase: string;
  publication: string;
  subscription: string;
  slot: string;
}

/** Reverse objects cutover recorded in `stateDir` (read as data: cleanup does not import the cutover step). */
export function recordedReverse(stateDir: string): ReverseRecord[] {
  const file = path.join(stateDir, 'cutover.json');
  if (!existsSync(file)) return [];
  const s = JSON.parse(readFileSync(file, 'utf8')) as {
    databases?: Record<string, { sourceDatabase: string; targetDatabase: string; reverse?: { publication: string; subscription: string; slot: string } | null }>;
  };
  return Object.values(s.databases ?? {})
    .filter((d) => d.reverse)
    .map((d) => ({ sourceDatabase: d.sourceDatabase, targetDatabase: d.targetDatabase, ...d.reverse! }));
}

/** Drop the subscription on the old source (detached from its slot), then the publication and the slot on the target. */
export async function dropReverse(source: ResolvedConnInfo, target: ResolvedConnInfo, r: ReverseRecord): Promise<void> {
  await withClient(
    forDatabase(source, r.sourceDatabase),
    async (c) => {
      const { rows } = await c.query(
        'SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())',
        [r.subscription],
      );
      if (!rows.length) return;
      await c.query(`ALTER SUBSCRIPTION ${quoteIdent(r.subscription)} DISABLE`);
      await c.query(`ALTER SUBSCRIPTION ${quoteIdent(r.subscription)} SET (slot_name = NONE)`);
      await c.query(`DROP SUBSCRIPTION ${quoteIdent(r.subscription)}`);
    },
    { label: 'the source', settings: { default_transaction_read_only: 'off' }, quietDdl: true },
  );
  await withClient(
    forDatabase(target, r.targetDatabase),
    async (c) => {
      await c.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(r.publication)}`);
      // The old source's walsender lets go of the slot within moments of the subscription's end.
      for (let i = 0; i < 600; i++) {
        const { rows } = await c.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [r.slot]);
        if (!rows.length) return;
        if (!rows[0]!.active) {
          await c.query('SELECT pg_drop_replication_slot($1)', [r.slot]);
          return;
        }
        await sleep(50);
      }
      throw new Error(`replication slot ${r.slot} on the target is still in use 30 s after the reverse subscription was dropped`);
    },
    { label: 'the target', quietDdl: true },
  );
}
