/** status's defaults, apart from the pipeline so that the CLI can show them without loading it. */
export { DEFAULT_MAX_LAG } from '../shared/health-verdict.js';

/** --method timestamp: the age of a mark that still counts as in sync. */
export const TIMESTAMP_DEFAULT_MAX_LAG_SECONDS = 300;
