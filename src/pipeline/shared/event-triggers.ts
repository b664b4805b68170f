/**
 * Event triggers on the copy. A database's event triggers fire on DDL in it (an audit trigger writing each
 * command into a log table, a guard refusing some): on the target they would fire on pgferry's own DDL — init's
 * indexes, constraints and foreign keys, sync's masking triggers and state — and write rows of their own into
 * tables that replication fills from the source (the same keys: the subscription then stops on a duplicate).
 * So init creates them last and disabled, in the same transaction, and cutover gives each the state it has on
 * the source once the target takes over (after the subscription is gone).
 */
import type pg from 'pg';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';

/**
 * One statement (for the end of a restore script) that disables every enabled event trigger of the database but
 * those named in `keep`: the ones the target database had before the restore are its own, and stay as they are.
 */
export function disableEventTriggersSql(keep: readonly string[]): string {
  const others = keep.length ? ` AND NOT (evtname = ANY (ARRAY[${keep.map(quoteLiteral).join(', ')}]::name[]))` : '';
  return `DO $pgferry$
DECLARE e record;
BEGIN
  FOR e IN SELECT evtname FROM pg_event_trigger WHERE evtenabled <> 'D'${others} LOOP
    EXECUTE format('ALTER EVENT TRIGGER %I DISABLE', e.evtname);
  END LOOP;
END
$pgferry$`;
}

/** pg_event_trigger.evtenabled → ALTER EVENT TRIGGER's words. */
const STATE_WORDS: Readonly<Record<string, string>> = { O: 'ENABLE', R: 'ENABLE REPLICA', A: 'ENABLE ALWAYS', D: 'DISABLE' };

export async function eventTriggerStates(client: pg.Client): Promise<Map<string, string>> {
  const { rows } = await client.query<{ name: string; state: string }>('SELECT evtname AS name, evtenabled AS state FROM pg_event_trigger ORDER BY 1');
  return new Map(rows.map((r) => [r.name, r.state]));
}

/** The statements that give the target's event triggers the source's states (those on both sides only). */
export function eventTriggerStatements(source: ReadonlyMap<string, string>, target: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const [name, state] of source) {
    const now = target.get(name);
    if (now === undefined || now === state || !STATE_WORDS[state]) continue;
    out.push(`ALTER EVENT TRIGGER ${quoteIdent(name)} ${STATE_WORDS[state]}`);
  }
  return out;
}
