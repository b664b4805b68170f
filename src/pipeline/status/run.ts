/**
 * `status`: one look at every database pair of the migration, both sides
 * read in parallel. Works from the state directory (init's databases) or,
 * without one, from --source/--target and the database scope: pgferry's
 * objects are found by their deterministic names.
 */
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { ScopeSpec } from '../../config/scope.js';
import { streamHealth } from '../shared/health.js';
import type { DatabaseStatus, Health, MaxLagLimits } from '../shared/health-verdict.js';

export interface StatusOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  /** Databases when there is no state (defaults to the source connection's database). */
  scope?: ScopeSpec;
  maxLag?: MaxLagLimits;
}

export interface StatusReport {
  command: 'status';
  checkedAt: string;
  health: Health;
  exitCode: 0 | 1 | 2;
  verdict: string;
  maxLag: MaxLagLimits;
  fromState: boolean;
  source: { endpoint: string; major: number; systemIdentifier: string };
  target: { endpoint: string; major: number; systemIdentifier: string };
  databases: DatabaseStatus[];
  /** How long the look took. */
  seconds: number;
}

export async function runStatus(o: StatusOptions): Promise<StatusReport> {
  const started = performance.now();
  const { ids, fromState, maxLag, databases, verdict: v } = await streamHealth(o);
  const side = (i: typeof ids.source) => ({ endpoint: i.endpoint, major: i.major, systemIdentifier: i.systemIdentifier });
  return {
    command: 'status',
    checkedAt: new Date().toISOString(),
    health: v.health,
    exitCode: v.exitCode,
    verdict: v.text,
    maxLag,
    fromState,
    source: side(ids.source),
    target: side(ids.target),
    databases,
    seconds: (performance.now() - started) / 1000,
  };
}
