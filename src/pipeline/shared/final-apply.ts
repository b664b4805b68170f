/**
 * How cutover brings the target level with a fenced source when no native
 * subscription does it: the client applier run up to the fence LSN, or one
 * last timestamp round. cutover calls them through this contract; the code is
 * sync's (src/pipeline/sync/), handed in by the caller, as the gate is
 * verify's, since a step never imports another step.
 */
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { RunState } from '../../state/checkpoint.js';
import type { SyncRecord } from '../../state/sync-record.js';
import type { ReplicationPair } from './pairs.js';
import type { ProgressSink } from './progress.js';

/**
 * The schema of the fence's trigger function on the source: where it exists,
 * cutover has fenced (or handed over) the database, and only cutover's own
 * final round may still write the target from it.
 */
export const FENCE_SCHEMA = 'pgferry_fence';

/** Who keeps the target up to date: the native subscription, pgferry's client applier, or timestamp rounds. */
export type SyncMethod = 'native' | 'client' | 'timestamp';

/** The method of a migration, as init and sync recorded it (status and cleanup read the same files). */
export function syncMethod(init: RunState | undefined, record: SyncRecord | undefined): SyncMethod {
  if (init?.options.method === 'timestamp') return 'timestamp';
  return Object.values(record?.databases ?? {}).some((d) => d.applier === 'client') ? 'client' : 'native';
}

export interface ClientCatchUpRequest {
  pair: ReplicationPair;
  /** The state directory (streamed transactions are spooled under it). */
  stateDir: string;
  /** init's slot. */
  slot: string;
  /** Stop once the target has committed everything before this source position. */
  untilLsn: string;
  /** Aborted: stop (the position committed so far is kept). */
  signal: AbortSignal;
  warn: (message: string) => void;
  progress?: ProgressSink;
}

export interface ClientCatchUpOutcome {
  reached: boolean;
  /** Position the target has committed and the slot confirmed. */
  appliedLsn: string;
}

/** The client applier of one pair, in this process, until untilLsn (sync/client). */
export type ClientCatchUp = (r: ClientCatchUpRequest) => Promise<ClientCatchUpOutcome>;

export interface FinalRoundRequest {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  scope: ScopeSpec;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface FinalRoundOutcome {
  databases: { sourceDatabase: string; round: number; upserted: number; deleted: number }[];
}

/** One timestamp round with delete detection over every pair, on a fenced source (sync/timestamp). */
export type FinalRound = (r: FinalRoundRequest) => Promise<FinalRoundOutcome>;
