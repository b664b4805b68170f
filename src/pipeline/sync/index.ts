export { runSync, dropTablesyncSlots, type SyncOptions, type SyncReport, type SyncDatabaseReport, type SyncTableReport, type TableRoute } from './run.js';
export { ensurePublication, publishedTables, slotDecodable, type PublishedTable } from './publication.js';
export { checkRowFilters, identityProblems } from './checks.js';
export { chooseBinary, chooseStreaming, subscriptionConninfo } from './subscription.js';
