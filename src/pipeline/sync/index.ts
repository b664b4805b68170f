export { runSync, dropTablesyncSlots, type SyncOptions, type SyncReport, type SyncDatabaseReport, type SyncTableReport, type TableRoute } from './run.js';
export { ensurePublication, publishedTables, slotDecodable, type PublishedTable } from '../shared/publication.js';
export { checkRowFilters, identityProblems } from '../shared/replication-checks.js';
export { chooseBinary, chooseStreaming, subscriptionConninfo } from '../shared/subscription.js';
export { runClientSync, clientCatchUp, DEFAULT_BATCH_BYTES, type ClientSyncOptions, type ClientSyncReport, type ClientSyncDatabaseReport } from './client/run.js';
