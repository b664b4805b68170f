/**
 * The database pairs sync, status and cleanup work on, with the names of
 * pgferry's objects for each. From the state directory when init left one
 * (its databases, and a check that the servers are still the same), else from
 * the connections and the database scope.
 */
import type { ScopeSpec } from '../../config/scope.js';
import { resolveDatabases } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import type { RunState } from '../../state/checkpoint.js';
import { objectNames, type ObjectNames } from '../../state/object-names.js';
import { probePair, sourceConnFor, targetConnFor, targetDatabaseName } from '../sides.js';
import { forDatabase } from '../../postgres/conninfo.js';

export interface ReplicationPair {
  sourceDatabase: string;
  targetDatabase: string;
  sourceConn: ResolvedConnInfo;
  targetConn: ResolvedConnInfo;
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
      sourceDatabase: d.sourceDatabase,
      targetDatabase: d.targetDatabase,
      sourceConn: sourceConnFor(source, d.sourceDatabase),
      targetConn: forDatabase(target, d.targetDatabase),
      names: pairNames(ids, d.sourceDatabase, d.targetDatabase),
    }));
    return { ids, pairs };
  }
  const dbs = await withClient(source, (c) => resolveDatabases(c, scope.databases, source.dbname), { label: 'the source' });
  const pairs = dbs.map((db) => {
    const targetDatabase = targetDatabaseName(db, scope.databases, target);
    return { sourceDatabase: db, targetDatabase, sourceConn: sourceConnFor(source, db), targetConn: targetConnFor(target, db, scope.databases), names: pairNames(ids, db, targetDatabase) };
  });
  return { ids, pairs };
}
