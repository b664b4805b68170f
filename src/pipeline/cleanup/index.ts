export { runCleanup, type CleanupItem, type CleanupKind, type CleanupOptions, type CleanupReport } from './run.js';
