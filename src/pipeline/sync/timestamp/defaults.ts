/** The timestamp method's defaults, apart from the pipeline so that the CLI can show them without loading it. */
import { DEFAULT_OVERLAP_SECONDS } from '../../shared/timestamp-bound.js';

export const TIMESTAMP_DEFAULTS = { column: 'updated_at', batchSize: 10_000, overlapSeconds: DEFAULT_OVERLAP_SECONDS } as const;
