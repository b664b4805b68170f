export { runStatus, type StatusOptions, type StatusReport } from './run.js';
export { assess, verdict, formatLag, formatSeconds, DEFAULT_MAX_LAG, HEALTH_EXIT } from './verdict.js';
export type { DatabaseStatus, Health, Leftover, MaxLagLimits, Problem, TableStatus, Verdict } from './verdict.js';
