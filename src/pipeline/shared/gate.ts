/**
 * The gate cutover passes before it hands over: a comparison of both sides
 * with the source fenced. cutover calls it through this contract; the
 * comparison itself is verify's (src/pipeline/verify/gate.ts), handed in by
 * the caller, since a step never imports another step.
 */
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { RunState } from '../../state/checkpoint.js';
import type { ProgressSink } from './progress.js';

export const GATE_MODES = ['quick', 'full', 'none'] as const;
export type GateMode = (typeof GATE_MODES)[number];

/** Sessions on a fenced source must be able to write pgferry's own objects (the fence refuses others). */
export const FENCED_SOURCE_SETTINGS = { default_transaction_read_only: 'off' } as const;

export interface GatePair {
  sourceDatabase: string;
  targetDatabase: string;
  sourceConn: ResolvedConnInfo;
  targetConn: ResolvedConnInfo;
  /** Tables of the publication ("schema.table", as in the catalog). */
  tables: { schema: string; name: string }[];
}

export interface GateRequest {
  mode: GateMode;
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  scope: ScopeSpec;
  initState: RunState | undefined;
  pairs: GatePair[];
  jobs: number;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

/** What cutover needs to know of a gate's result; the whole result goes into its report as it is. */
export interface GateOutcome {
  mode: GateMode;
  ok: boolean;
  ms: number;
}

export type Gate = (o: GateRequest) => Promise<GateOutcome>;
