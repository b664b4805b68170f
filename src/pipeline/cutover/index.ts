/** `cutover`: fence, LSN-gated catch-up, sequences, gate, hand-over, reverse replication. */
export { abortCutover, runCutover, type AbortReport, type CutoverOptions, type CutoverPlan, type CutoverReport, type PhaseTiming } from './run.js';
export { GATE_MODES, type GateMode, type GateOutcome } from '../shared/gate.js';
