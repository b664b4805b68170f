export { runTimestampSync, finalTimestampRound, TIMESTAMP_DEFAULTS } from './run.js';
export type { TimestampSyncOptions, TimestampSyncReport, TimestampDatabaseReport, TimestampTableReport } from './run.js';
export type { TimestampColumns } from './tables.js';
