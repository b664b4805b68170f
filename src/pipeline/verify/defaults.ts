/** verify's defaults, apart from the pipeline so that the CLI can show them without loading it. */
export const VERIFY_DEFAULTS = {
  jobs: 2,
  chunkRows: 10_000,
  maxDiffs: 20,
  recheck: 3,
  lagTimeoutMs: 60_000,
} as const;
