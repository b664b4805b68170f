/**
 * Can each side be reached, and what is it? A side that cannot be reached
 * becomes a failed check (exit 3) instead of an exception, so that the other
 * side and the client tools are still reported.
 */
import type pg from 'pg';
import { PgferryError } from '../../errors.js';
import { connect } from '../../postgres/connect.js';
import { forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';
import { probeServer, type ServerIdentity } from '../../postgres/probe.js';
import { fail, ok, type CheckResult } from './types.js';

export type SideName = 'source' | 'target';

/** Statements of validate are catalog reads; none should take long. */
export const CHECK_STATEMENT_TIMEOUT_MS = 30_000;

export interface Session {
  client: pg.Client;
  conn: ResolvedConnInfo;
  identity: ServerIdentity;
}

export interface Reached {
  session: Session | null;
  checks: CheckResult[];
}

/** Databases tried, in order, when the one named in the connection does not exist. */
const FALLBACK_DATABASES = ['postgres', 'template1'];

function causeCode(err: unknown): string | undefined {
  const cause = err instanceof PgferryError ? (err as Error & { cause?: unknown }).cause : err;
  return sqlstate(cause);
}

export async function openSession(conn: ResolvedConnInfo, side: SideName): Promise<pg.Client> {
  return connect(conn, { label: side, statementTimeoutMs: CHECK_STATEMENT_TIMEOUT_MS });
}

export function describeIdentity(id: ServerIdentity): string {
  const role = id.superuser ? `${id.user} (superuser)` : id.user;
  const mode = id.inRecovery ? 'standby (in recovery)' : 'primary';
  return `PostgreSQL ${id.serverVersion}, system identifier ${id.systemIdentifier}, user ${role}, ${mode}`;
}

/**
 * Connect to one side and probe it. With `fallback`, a database that does not
 * exist (the target database before init creates it) is replaced by a
 * maintenance database of the same server.
 */
export async function reachSide(conn: ResolvedConnInfo, side: SideName, fallback: boolean): Promise<Reached> {
  const candidates = [conn, ...(fallback ? FALLBACK_DATABASES.filter((d) => d !== conn.dbname).map((d) => forDatabase(conn, d)) : [])];
  let firstError: unknown;
  for (const candidate of candidates) {
    let client: pg.Client | undefined;
    try {
      client = await openSession(candidate, side);
      const identity = await probeServer(client, candidate, side);
      const note = candidate === conn ? '' : ` (database "${conn.dbname}" does not exist yet; connected to "${candidate.dbname}")`;
      return {
        session: { client, conn: candidate, identity },
        checks: [ok(`${side}.reachable`, side, `${describeIdentity(identity)}${note}`)],
      };
    } catch (err) {
      await client?.end().catch(() => {});
      firstError ??= err;
      // Only a missing database is worth another try; anything else fails the same way again.
      if (causeCode(err) !== '3D000') break;
    }
  }
  const e = firstError;
  const message = e instanceof Error ? e.message : String(e);
  const hint = e instanceof PgferryError && e.hint ? e.hint : `check the --${side} connection string (host, port, user, password, dbname)`;
  return { session: null, checks: [fail(`${side}.reachable`, side, message, hint)] };
}
