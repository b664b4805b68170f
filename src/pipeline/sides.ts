/**
 * The two sides of a run: connect, probe, refuse a copy onto itself, and
 * name the target database that corresponds to each source database.
 */
import type { DatabaseSelection } from '../config/scope.js';
import { withClient } from '../postgres/connect.js';
import { forDatabase, type ResolvedConnInfo } from '../postgres/conninfo.js';
import { assertDistinct, probeServer, type ServerIdentity } from '../postgres/probe.js';

export type SideName = 'source' | 'target';

export async function probeSide(conn: ResolvedConnInfo, side: SideName): Promise<ServerIdentity> {
  return withClient(conn, (c) => probeServer(c, conn, side), { label: side });
}

/** Probe both sides at once; exits 2 when they are the same database, 3 when one cannot be reached. */
export async function probePair(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
): Promise<{ source: ServerIdentity; target: ServerIdentity }> {
  const [s, t] = await Promise.all([probeSide(source, 'source'), probeSide(target, 'target')]);
  assertDistinct(s, t);
  return { source: s, target: t };
}

/**
 * The target database for a source database. With the default selection
 * (one database, named in the source connection) the target connection's
 * database is used when it names one; with several databases each keeps its name.
 */
export function targetDatabaseName(sourceDb: string, sel: DatabaseSelection, target: ResolvedConnInfo): string {
  const single = !sel.all && sel.include.length === 0;
  if (single && target.params.dbname) return target.params.dbname;
  return sourceDb;
}

export function sourceConnFor(source: ResolvedConnInfo, db: string): ResolvedConnInfo {
  return forDatabase(source, db);
}

export function targetConnFor(target: ResolvedConnInfo, sourceDb: string, sel: DatabaseSelection): ResolvedConnInfo {
  return forDatabase(target, targetDatabaseName(sourceDb, sel, target));
}
