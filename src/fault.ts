/**
 * Named fault points for crash tests. `faultPoint('cutover.after-fence')` does
 * nothing unless the environment variable PGFERRY_FAULT_POINT names exactly
 * that point; then the process kills itself with SIGKILL on the spot, as a
 * power cut or `kill -9` would: no finally blocks, no exit hooks, no state
 * written after this line.
 *
 * FAULT_POINTS is the one list of names: the type accepts only these, a unit
 * test checks that every name is placed in the code exactly once, and a name
 * outside the list (a typo in a test's environment, a cast) throws instead of
 * silently never firing. docs/reliability.md describes each point.
 */
export const FAULT_ENV = 'PGFERRY_FAULT_POINT';

export const FAULT_POINTS = [
  // init: after roles were created, before that was recorded
  'init.roles',
  // init: pre-data restored on the target, the phase not yet recorded
  'init.pre-data',
  // init: a split table with some parts committed and recorded, others not
  'init.copy.mid-split',
  // init: small tables loaded without TRUNCATE (they had no page on the target) committed, not yet recorded
  'init.copy.fresh-committed',
  // init: the first table recorded as done, others pending or in flight
  'init.between-tables',
  // init: a finished table's own indexes and constraints built while other tables may still be copying
  'init.post-data.table',
  // init: indexes and constraints built, foreign keys and comments not yet
  'init.post-data',
  // init: sequences set on the target, the phase not yet recorded
  'init.sequences',
  // init: ANALYZE done, the database not yet recorded as done
  'init.analyze',
  // sync: publication brought to its tables, no subscription yet
  'sync.after-publication',
  // sync: subscription created (disabled), not yet enabled or recorded
  'sync.after-subscription',
  // sync: subscription enabled and recorded, waiting for catch-up
  'sync.waiting',
  // sync --method timestamp: a round with some batches committed, the table's mark not yet moved
  'sync.timestamp.mid-round',
  // sync --applier client: a batch applied on the target, not yet committed
  'sync.client.mid-batch',
  // sync --applier client: a batch committed on the target, the slot not yet acknowledged
  'sync.client.after-commit',
  // verify: a differing range is being re-read after the target replays
  'verify.recheck',
  // verify --repair: rows written inside the repair transaction, before COMMIT
  'repair.mid-write',
  'cutover.fence-recorded',
  'cutover.after-fence',
  'cutover.after-catch-up',
  'cutover.after-sequences',
  'cutover.after-gate',
  'cutover.after-subscription-drop',
] as const;

export type FaultPointName = (typeof FAULT_POINTS)[number];

const known = new Set<string>(FAULT_POINTS);

export function isFaultPoint(name: string): name is FaultPointName {
  return known.has(name);
}

export function faultPoint(name: FaultPointName): void {
  if (!known.has(name)) throw new Error(`unknown fault point "${name}" (add it to FAULT_POINTS in src/fault.ts)`);
  const want = process.env[FAULT_ENV];
  if (!want) return;
  if (!known.has(want)) throw new Error(`${FAULT_ENV}=${want} names no fault point; known: ${FAULT_POINTS.join(', ')}`);
  if (want !== name) return;
  process.kill(process.pid, 'SIGKILL');
}
