/**
 * The subscription on the target: how it connects to the source, which
 * options it gets, and the statements that create, refresh and drop it.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError, UsageError } from '../../errors.js';
import { lockTableError } from '../../postgres/errors.js';
import { parseConnInfo, resolvedParams, toKeywordString, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { withSessionDefaults } from '../../postgres/session-defaults.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { registerSecret } from '../../postgres/redact.js';

/** First OID of objects created after initdb: user types (enums, domains, composites, extension types) are above it. */
const FIRST_NORMAL_OID = 16384;

/**
 * binary = true only where it cannot fail: both sides 14+ (the option and the
 * protocol), the target not older than the source, and only built-in column
 * types (binary input of arrays and composites checks type OIDs, which differ
 * between servers for user-defined types).
 */
export function chooseBinary(sourceMajor: number, targetMajor: number, columnTypeOids: number[]): boolean {
  return sourceMajor >= 14 && targetMajor >= 14 && targetMajor >= sourceMajor && columnTypeOids.every((o) => o < FIRST_NORMAL_OID);
}

/** Large transactions streamed while in progress: 'parallel' apply on 16+, 'on' on 14+, not before (the protocol lacks it). */
export function chooseStreaming(sourceMajor: number, targetMajor: number): 'parallel' | 'on' | null {
  if (sourceMajor >= 16 && targetMajor >= 16) return 'parallel';
  if (sourceMajor >= 14 && targetMajor >= 14) return 'on';
  return null;
}

export interface SubscriptionConninfo {
  conninfo: string;
  /** The string holds a password (stored in the target's catalog). */
  hasPassword: boolean;
  /** Came from --subscription-conninfo. */
  custom: boolean;
}

/**
 * The connection string the target server uses to reach the source database.
 * By default the source connection pgferry was given, password included (the
 * target server cannot read pgferry's password file); --subscription-conninfo
 * replaces it (its dbname is set per database).
 */
export function subscriptionConninfo(source: ResolvedConnInfo, sourceDatabase: string, custom?: string): SubscriptionConninfo {
  if (custom !== undefined) {
    const ci = parseConnInfo(custom, '--subscription-conninfo');
    if (ci.password) registerSecret(ci.password);
    ci.dbname = sourceDatabase;
    // Its walsender is a session of that role too: a statement_timeout of it cancelled CREATE SUBSCRIPTION's look at the publication.
    ci.options = withSessionDefaults(ci.options);
    return { conninfo: toKeywordString(ci, { includePassword: true }), hasPassword: !!ci.password, custom: true };
  }
  const params = { ...resolvedParams(source), dbname: sourceDatabase };
  params.options = withSessionDefaults(params.options);
  if (source.password !== undefined && source.password !== '') params.password = source.password;
  // The target server's own files are not ours: leave out client-side file paths that only exist here.
  delete params.passfile;
  return { conninfo: toKeywordString(params, { includePassword: true }), hasPassword: !!params.password, custom: false };
}

export interface CreateSubscriptionSpec {
  name: string;
  publication: string;
  slot: string;
  conninfo: string;
  /** false: take over an existing slot (init's); true: the subscription creates it (--copy-data without init). */
  createSlot: boolean;
  copyData: boolean;
  enabled: boolean;
  binary: boolean;
  streaming: 'parallel' | 'on' | null;
  /** PostgreSQL 16+: password_required = false (only a superuser may set it). */
  passwordNotRequired: boolean;
}

export async function createSubscription(client: pg.Client, s: CreateSubscriptionSpec): Promise<void> {
  const opts = [
    `create_slot = ${s.createSlot}`,
    `slot_name = ${quoteLiteral(s.slot)}`,
    `copy_data = ${s.copyData}`,
    `enabled = ${s.enabled}`,
  ];
  // The option exists from PostgreSQL 14 on (a 13 or older target rejects it, even as false); false is its default.
  if (s.binary) opts.push('binary = true');
  if (s.streaming) opts.push(`streaming = ${s.streaming}`);
  if (s.passwordNotRequired) opts.push('password_required = false');
  await client.query(
    `CREATE SUBSCRIPTION ${quoteIdent(s.name)} CONNECTION ${quoteLiteral(s.conninfo)} PUBLICATION ${quoteIdent(s.publication)} WITH (${opts.join(', ')})`,
  ).catch((err: unknown) => {
    throw subscribeError(err, s.name, 'CREATE SUBSCRIPTION');
  });
}

/** A full lock table while subscribing (a lock on each table of the publication), said with what to change; any other error as it is. */
function subscribeError(err: unknown, name: string, statement: string): unknown {
  return lockTableError(err, `subscription ${name} on the target`, 'target', statement, 'each table of the publication');
}

/** Point an existing subscription at another connection string (--subscription-conninfo on a rerun). */
export async function setSubscriptionConninfo(client: pg.Client, name: string, conninfo: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} CONNECTION ${quoteLiteral(conninfo)}`);
}

export async function enableSubscription(client: pg.Client, name: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} ENABLE`);
}

/** Pick up publication changes; copy_data = true copies only the tables new to the subscription. */
export async function refreshSubscription(client: pg.Client, name: string, copyData: boolean): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} REFRESH PUBLICATION WITH (copy_data = ${copyData})`).catch((err: unknown) => {
    throw subscribeError(err, name, 'ALTER SUBSCRIPTION … REFRESH PUBLICATION');
  });
}

/** Make the new subscription's origin start where the old one had applied (so nothing is applied twice). */
export async function advanceOrigin(client: pg.Client, subOid: number, lsn: string): Promise<void> {
  await client.query('SELECT pg_replication_origin_advance($1, $2::pg_lsn)', [`pg_${subOid}`, lsn]);
}

/**
 * Disable a subscription and wait until its workers have exited. DISABLE
 * returns at once, but the apply worker notices only at its next transaction
 * (within a second when idle) and applies until then: its origin's position is
 * final only once it is gone.
 */
export async function stopSubscription(
  client: pg.Client,
  sub: { name: string; oid: number },
  timeoutMs = 60_000,
  /**
   * Make the publisher send something (cutover: a flush of the fenced source). An idle apply worker sees that it
   * was disabled only when it wakes: on its own timer, once a second, or on a message from the walsender.
   */
  wake?: () => Promise<void>,
): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(sub.name)} DISABLE`);
  const started = Date.now();
  const deadline = started + timeoutMs;
  let woken = 0;
  for (;;) {
    if (wake && Date.now() - started >= woken * 200) {
      woken++;
      await wake().catch(() => {});
    }
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_subscription WHERE subid = $1 AND pid IS NOT NULL', [sub.oid]);
    if (rows[0]!.n === 0) return;
    if (Date.now() > deadline) {
      throw new OperationError(`the workers of subscription ${sub.name} did not stop within ${Math.round(timeoutMs / 1000)} s of disabling it`, {
        hint: `see the target server's log; the subscription stays disabled: run pgferry sync --force again, or ALTER SUBSCRIPTION ${quoteIdent(sub.name)} ENABLE`,
      });
    }
    await sleep(50);
  }
}

/**
 * Drop a subscription without touching its slot on the source: disable it,
 * detach the slot (slot_name = NONE) and drop it. The slot stays for the
 * caller to keep (--force) or drop (cleanup).
 */
export async function dropSubscriptionKeepSlot(client: pg.Client, name: string): Promise<void> {
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} DISABLE`);
  await client.query(`ALTER SUBSCRIPTION ${quoteIdent(name)} SET (slot_name = NONE)`);
  await client.query(`DROP SUBSCRIPTION ${quoteIdent(name)}`);
}

export function passwordWarning(sub: SubscriptionConninfo, subscription: string, targetDatabase: string): string | null {
  if (!sub.hasPassword) return null;
  return (
    `the subscription ${subscription} in target database "${targetDatabase}" stores the source password in its connection string ` +
    '(pg_subscription.subconninfo, readable by superusers of the target); to avoid that, put the password in a .pgpass file of the ' +
    'target server\'s operating-system user and pass --subscription-conninfo "host=… user=…" without a password'
  );
}

/** Refuse a --subscription-conninfo that is obviously unusable, before anything is created. */
export function checkCustomConninfo(custom: string | undefined): void {
  if (custom === undefined) return;
  if (!custom.trim()) throw new UsageError('--subscription-conninfo is empty', { hint: 'give a connection string as the target server should use it, e.g. "host=old-db user=replicator"' });
  parseConnInfo(custom, '--subscription-conninfo');
}
