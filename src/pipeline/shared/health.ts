/**
 * The health of a migration's streams, every database pair read on both
 * sides in parallel: what `status` reports and what `cutover` requires
 * before it fences anything.
 */
import { emptyScope, type ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { loadState } from '../../state/checkpoint.js';
import { clientApplierRunning, loadClientApplier } from '../../state/client-applier.js';
import { loadSyncRecord } from '../../state/sync-record.js';
import { collectPair } from './health-facts.js';
import { assess, DEFAULT_MAX_LAG, verdict, type DatabaseStatus, type MaxLagLimits, type Verdict } from './health-verdict.js';
import { resolvePairs, type ResolvedPairs } from './pairs.js';

export interface HealthOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  /** Databases when there is no state (defaults to the source connection's database). */
  scope?: ScopeSpec;
  maxLag?: MaxLagLimits;
}

export interface StreamHealth {
  ids: ResolvedPairs['ids'];
  fromState: boolean;
  maxLag: MaxLagLimits;
  databases: DatabaseStatus[];
  verdict: Verdict;
}

export async function streamHealth(o: HealthOptions): Promise<StreamHealth> {
  const state = await loadState(o.stateDir);
  const maxLag = o.maxLag ?? DEFAULT_MAX_LAG;
  const { ids, pairs } = await resolvePairs(o.source, o.target, o.scope ?? state?.scope ?? emptyScope(), state, o.stateDir);
  const [record, beat] = await Promise.all([loadSyncRecord(o.stateDir), loadClientApplier(o.stateDir)]);
  const running = clientApplierRunning(beat);
  const client = (db: string) =>
    record?.databases[db]?.applier === 'client' ? { running, pid: running ? beat!.pid : null, heartbeatAt: beat?.updatedAt ?? null } : undefined;
  const facts = await Promise.all(pairs.map((p) => collectPair(p, { source: ids.source.major, target: ids.target.major }, client(p.sourceDatabase))));
  const databases = facts.map((f) => assess(f, ids.target.systemIdentifier, maxLag));
  return { ids, fromState: !!state, maxLag, databases, verdict: verdict(databases) };
}
