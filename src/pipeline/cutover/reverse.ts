/**
 * --reverse: after the hand-over, writes on the new primary flow back to the
 * old source, so that it stays a ready fallback until `pgferry cleanup`. A
 * publication on the target with the tables of the forward publication, and
 * on the old source a subscription that creates its slot on the target now
 * (the target has taken no application write yet, so nothing is missed) with
 * copy_data = false (the two sides are equal at this point: the gate says so)
 * and, on PostgreSQL 16+, origin = none (changes that came from elsewhere are
 * not sent back). The old source stays fenced: its fence triggers do not fire
 * for the apply worker (session_replication_role = replica), but they still
 * refuse every application write.
 */
import type pg from 'pg';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { lockTableError } from '../../postgres/errors.js';
import { qualifiedName, quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { objectNames } from '../../state/object-names.js';
import { subscriptionConninfo } from '../shared/subscription.js';

export interface ReverseNames {
  publication: string;
  subscription: string;
  slot: string;
}

/** Names of the reverse objects: pgferry's naming with the two sides swapped. */
export function reverseNames(ids: { sourceSystemIdentifier: string; targetSystemIdentifier: string }, sourceDatabase: string, targetDatabase: string): ReverseNames {
  const n = objectNames({
    sourceSystemIdentifier: ids.targetSystemIdentifier,
    sourceDatabase: targetDatabase,
    targetSystemIdentifier: ids.sourceSystemIdentifier,
    targetDatabase: sourceDatabase,
  });
  return { publication: n.publication, subscription: n.subscription, slot: n.slot };
}

/** The publication on the target (idempotent). */
export async function ensureReversePublication(target: pg.Client, name: string, tables: { schema: string; name: string }[], viaRoot: boolean, targetMajor: number): Promise<void> {
  const { rows } = await target.query('SELECT 1 FROM pg_publication WHERE pubname = $1', [name]);
  if (rows.length) return;
  const list = tables.map((t) => qualifiedName(t.schema, t.name)).join(', ');
  const withOpts = viaRoot && targetMajor >= 13 ? ' WITH (publish_via_partition_root = true)' : '';
  await target.query(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${list}${withOpts}`).catch((err: unknown) => {
    throw lockTableError(err, `reverse publication ${name} on the target`, 'target', 'CREATE PUBLICATION', `each of the ${tables.length} tables it publishes`);
  });
}

/** The subscription on the old source (idempotent). Returns a warning when its connection string stores a password. */
export async function ensureReverseSubscription(
  source: pg.Client,
  names: ReverseNames,
  target: ResolvedConnInfo,
  targetDatabase: string,
  sourceMajor: number,
): Promise<string | null> {
  const { rows } = await source.query('SELECT 1 FROM pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())', [names.subscription]);
  const ci = subscriptionConninfo(target, targetDatabase);
  if (!rows.length) {
    const opts = ['create_slot = true', `slot_name = ${quoteLiteral(names.slot)}`, 'copy_data = false', 'enabled = true'];
    if (sourceMajor >= 16) opts.push('origin = none');
    await source.query(`CREATE SUBSCRIPTION ${quoteIdent(names.subscription)} CONNECTION ${quoteLiteral(ci.conninfo)} PUBLICATION ${quoteIdent(names.publication)} WITH (${opts.join(', ')})`).catch((err: unknown) => {
      throw lockTableError(err, `reverse subscription ${names.subscription} on the old source`, 'source', 'CREATE SUBSCRIPTION', 'each table of the publication');
    });
  }
  return ci.hasPassword
    ? `the reverse subscription ${names.subscription} on the old source stores the target password in its connection string (pg_subscription.subconninfo)`
    : null;
}
