/**
 * What a side is: version, identity (system identifier, postmaster start),
 * database, user and its powers. Used by every command before it acts, and
 * to refuse a source and target that are the same database.
 */
import type pg from 'pg';
import { UsageError } from '../errors.js';
import { describeConn, type ResolvedConnInfo } from './conninfo.js';

export interface ServerIdentity {
  /** "source" / "target". */
  side: string;
  /** user@host:port/db, no password. */
  endpoint: string;
  serverVersion: string;
  serverVersionNum: number;
  major: number;
  systemIdentifier: string;
  /**
   * pg_postmaster_start_time() in UTC (ISO 8601, microseconds): tells two servers cloned from
   * one backup apart. UTC so that sessions with different TimeZone settings agree.
   */
  postmasterStartTime: string;
  database: string;
  databaseOid: number;
  user: string;
  superuser: boolean;
  inRecovery: boolean;
}

export async function probeServer(client: pg.Client, conn: ResolvedConnInfo, side: string): Promise<ServerIdentity> {
  const { rows } = await client.query<{
    version: string;
    num: string;
    sysid: string;
    started: string;
    db: string;
    dboid: number;
    usr: string;
    su: boolean;
    recovery: boolean;
  }>(`SELECT current_setting('server_version') AS version,
            current_setting('server_version_num') AS num,
            (SELECT system_identifier::text FROM pg_control_system()) AS sysid,
            to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS started,
            current_database() AS db,
            (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS dboid,
            current_user AS usr,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su,
            pg_is_in_recovery() AS recovery`);
  const r = rows[0]!;
  const num = Number(r.num);
  return {
    side,
    endpoint: describeConn(conn),
    serverVersion: r.version,
    serverVersionNum: num,
    major: Math.floor(num / 10000),
    systemIdentifier: r.sysid,
    postmasterStartTime: r.started,
    database: r.db,
    databaseOid: r.dboid,
    user: r.usr,
    superuser: r.su,
    inRecovery: r.recovery,
  };
}

/** Same cluster (system identifier and postmaster start), however the host was spelled. */
export function sameServer(a: ServerIdentity, b: ServerIdentity): boolean {
  return a.systemIdentifier === b.systemIdentifier && a.postmasterStartTime === b.postmasterStartTime;
}

/** Same database on the same server. */
export function sameDatabase(a: ServerIdentity, b: ServerIdentity): boolean {
  return sameServer(a, b) && a.database === b.database;
}

/** Refuse to copy a database onto itself (exit 2). */
export function assertDistinct(source: ServerIdentity, target: ServerIdentity): void {
  if (sameDatabase(source, target)) {
    throw new UsageError(
      `source and target are the same database: "${source.database}" on the server with system identifier ${source.systemIdentifier} (${source.endpoint} and ${target.endpoint})`,
      { hint: 'point --target at another server or another database' },
    );
  }
}
