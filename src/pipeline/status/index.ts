export { runStatus, type StatusOptions, type StatusReport } from './run.js';
export { assess, verdict, DEFAULT_MAX_LAG, HEALTH_EXIT } from '../shared/health-verdict.js';
export type { DatabaseStatus, Health, Leftover, MaxLagLimits, Problem, TableStatus, Verdict } from '../shared/health-verdict.js';
export { runTimestampStatus, stateMethod, TIMESTAMP_DEFAULT_MAX_LAG_SECONDS, type TimestampStatusReport } from './timestamp.js';
