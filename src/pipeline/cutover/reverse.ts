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
import { UsageError } from '../../errors.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { lockTableError } from '../../postgres/errors.js';
import { qualifiedName, quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { objectNames } from '../../state/object-names.js';
import { subscriptionConninfo } from '../shared/subscription.js';
import { plural } from '../../units.js';

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

/**
 * What --reverse needs of the target before anything is fenced: the reverse subscription creates a slot there and
 * streams from a WAL sender, after the hand-over, when a missing wal_level = logical (a restart) could not be fixed
 * in passing. A slot of an earlier, interrupted reverse replication counts as there. Throws with the fix, or
 * returns a line for the preconditions' report.
 */
export async function assertReverseRoom(target: pg.Client, slots: readonly string[]): Promise<string> {
  const { rows } = await target.query<{ level: string; max_slots: number; used: number; ours: number; max_senders: number; senders: number }>(
    `SELECT current_setting('wal_level') AS level, current_setting('max_replication_slots')::int AS max_slots,
            (SELECT count(*)::int FROM pg_replication_slots) AS used,
            (SELECT count(*)::int FROM pg_replication_slots WHERE slot_name = ANY($1)) AS ours,
            current_setting('max_wal_senders')::int AS max_senders,
            (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'walsender') AS senders`,
    [slots],
  );
  const r = rows[0]!;
  const needed = slots.length - r.ours;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (r.level !== 'logical') {
    problems.push(`wal_level = ${r.level} (logical replication needs logical)`);
    fixes.push('ALTER SYSTEM SET wal_level = logical');
  }
  if (r.max_slots - r.used < needed) {
    problems.push(`max_replication_slots = ${r.max_slots} with ${r.used} in use, and ${needed} more needed (one per database)`);
    fixes.push(`ALTER SYSTEM SET max_replication_slots = ${r.used + needed}`);
  }
  if (r.max_senders - r.senders < needed) {
    problems.push(`max_wal_senders = ${r.max_senders} with ${r.senders} in use, and ${needed} more needed`);
    fixes.push(`ALTER SYSTEM SET max_wal_senders = ${r.senders + needed}`);
  }
  if (problems.length) {
    throw new UsageError(`--reverse replicates from the target back to the old source after the hand-over, and the target cannot: ${problems.join('; ')}; nothing was fenced`, {
      hint: `on the target: ${fixes.join('; ')}; then restart it and run cutover again (or leave out --reverse)`,
    });
  }
  return `the target can replicate back (${plural(needed, 'slot')} to create, ${r.max_slots - r.used} free)`;
}

/**
 * The reverse subscription is created on the old source by pgferry's role there: before PostgreSQL 16 only a
 * superuser may create a subscription, from 16 also a member of pg_create_subscription (with CREATE on the
 * database). Null when it may; otherwise what is missing.
 */
export function reverseRightsProblem(r: { superuser: boolean; major: number; canCreateSubscription: boolean }): string | null {
  if (r.superuser || (r.major >= 16 && r.canCreateSubscription)) return null;
  return r.major >= 16
    ? "pgferry's role on the source may not create the reverse subscription (it needs pg_create_subscription and CREATE on the database)"
    : `pgferry's role on the source may not create the reverse subscription (PostgreSQL ${r.major} allows it to superusers only)`;
}

/** Whether pgferry's role on the source may create a subscription in this database (16+: pg_create_subscription and CREATE). */
export async function canCreateSubscription(source: pg.Client, major: number): Promise<boolean> {
  if (major < 16) return false;
  const { rows } = await source.query<{ ok: boolean }>(
    "SELECT pg_has_role(current_user, 'pg_create_subscription', 'USAGE') AND has_database_privilege(current_database(), 'CREATE') AS ok",
  );
  return rows[0]!.ok;
}
