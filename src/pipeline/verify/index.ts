/** `verify`: chunked checksums that locate every difference between source and target. */
export { verify, tableFilter, VERIFY_DEFAULTS } from './verify.js';
export { loadStoredInputs, type StoredInputs } from './state-inputs.js';
export type * from './types.js';
export { verifyAndRepair, REPAIR_DEFAULTS } from './repair/run.js';
export type * from './repair/types.js';
export { runGate, type GateResult, type GateCount, type GateDatabase } from './gate.js';
