/**
 * The two sides of a run and the database pairs a step works on: connect,
 * probe, refuse a copy onto itself, name the target database that corresponds
 * to each source database, and the names of pgferry's objects for each pair —
 * from the state directory when init left one (its databases, and a check that
 * the servers are still the same), else from the connections and the scope.
 */
import type pg from 'pg';
import { resolveDatabases, type DatabaseSelection, type ScopeSpec } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { withClient } from '../../postgres/connect.js';
import { forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { assertDistinct, probeServer, type ServerIdentity } from '../../postgres/probe.js';
import type { RunState } from '../../state/checkpoint.js';
import { objectNames, type ObjectNames } from '../../state/object-names.js';

export type SideName = 'source' | 'target';

export async function probeSide(conn: ResolvedConnInfo, side: SideName): Promise<ServerIdentity> {
  return withClient(conn, (c) => probeServer(c, conn, side), { label: side });
}

/**
 * Probe both sides at once; exits 2 when they are the same database, 3 when one cannot be reached.
 * `sessions`: sessions already open to the two sides, used instead of new ones.
 */
export async function probePair(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
  sessions?: { source: pg.Client; target: pg.Client },
): Promise<{ source: ServerIdentity; target: ServerIdentity }> {
  const [s, t] = await Promise.all(
    sessions
      ? [probeServer(sessions.source, source, 'source'), probeServer(sessions.target, target, 'target')]
      : [probeSide(source, 'source'), probeSide(target, 'target')],
  );
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

/** A source database and the target database it is copied to, with a connection to each. */
export interface DatabasePair {
  sourceDatabase: string;
  targetDatabase: string;
  sourceConn: ResolvedConnInfo;
  targetConn: ResolvedConnInfo;
}

/** The pair of one source database; the target database as given, else by the rule of targetDatabaseName. */
export function databasePair(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
  sourceDatabase: string,
  sel: DatabaseSelection,
  targetDatabase = targetDatabaseName(sourceDatabase, sel, target),
): DatabasePair {
  return { sourceDatabase, targetDatabase, sourceConn: sourceConnFor(source, sourceDatabase), targetConn: forDatabase(target, targetDatabase) };
}

/** The pairs of a database scope, its databases resolved on the source. */
/**
 * The database pairs of the selection. `sourceSession`: a session already open to the source database,
 * used instead of a new one; `targetDatabases`: target names that differ (from the state directory).
 */
export async function scopePairs(
  source: ResolvedConnInfo, target: ResolvedConnInfo, sel: DatabaseSelection,
  sourceSession?: pg.Client, targetDatabases?: Record<string, string>,
): Promise<DatabasePair[]> {
  const list = (c: pg.Client) => resolveDatabases(c, sel, source.dbname);
  const dbs = sourceSession ? await list(sourceSession) : await withClient(source, list, { label: 'the source' });
  return dbs.map((db) => databasePair(source, target, db, sel, targetDatabases?.[db]));
}

export interface ReplicationPair extends DatabasePair {
  names: ObjectNames;
}

export interface ResolvedPairs {
  ids: { source: ServerIdentity; target: ServerIdentity };
  pairs: ReplicationPair[];
}

/** Refuse a state that belongs to other servers than the ones given now. */
export function assertStateServers(state: RunState, ids: { source: ServerIdentity; target: ServerIdentity }, stateDir: string): void {
  const changes: string[] = [];
  if (state.source.systemIdentifier !== ids.source.systemIdentifier) {
    changes.push(`the source was ${state.source.endpoint} (system identifier ${state.source.systemIdentifier}), now ${ids.source.endpoint} (${ids.source.systemIdentifier})`);
  }
  if (state.target.systemIdentifier !== ids.target.systemIdentifier) {
    changes.push(`the target was ${state.target.endpoint} (system identifier ${state.target.systemIdentifier}), now ${ids.target.endpoint} (${ids.target.systemIdentifier})`);
  }
  if (changes.length) {
    throw new UsageError(`the state in ${stateDir} belongs to another migration: ${changes.join('; ')}`, {
      hint: 'give the same --source and --target as init, or point --state-dir at the folder of this migration',
    });
  }
}

export function pairNames(ids: { source: ServerIdentity; target: ServerIdentity }, sourceDatabase: string, targetDatabase: string): ObjectNames {
  return objectNames({
    sourceSystemIdentifier: ids.source.systemIdentifier, sourceDatabase,
    targetSystemIdentifier: ids.target.systemIdentifier, targetDatabase,
  });
}

export async function resolvePairs(source: ResolvedConnInfo, target: ResolvedConnInfo, scope: ScopeSpec, state: RunState | undefined, stateDir: string): Promise<ResolvedPairs> {
  const ids = await probePair(source, target);
  if (state) {
    assertStateServers(state, ids, stateDir);
    const pairs = Object.values(state.databases).map((d) => ({
      ...databasePair(source, target, d.sourceDatabase, scope.databases, d.targetDatabase),
      names: pairNames(ids, d.sourceDatabase, d.targetDatabase),
    }));
    return { ids, pairs };
  }
  const pairs = (await scopePairs(source, target, scope.databases)).map((p) => ({ ...p, names: pairNames(ids, p.sourceDatabase, p.targetDatabase) }));
  return { ids, pairs };
}
