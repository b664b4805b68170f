/**
 * Names of the objects pgferry creates (replication slot, publication,
 * subscription, replication origin). Deterministic per (source server, source database, target
 * server, target database), so that a rerun finds its own objects, two
 * migrations never collide, and cleanup can recognise what is ours. Slot
 * names allow only [a-z0-9_] and 63 bytes.
 */
import { createHash } from 'node:crypto';

export const OBJECT_PREFIX = 'pgferry_';

export interface PairKey {
  sourceSystemIdentifier: string;
  sourceDatabase: string;
  targetSystemIdentifier: string;
  targetDatabase: string;
}

export interface ObjectNames {
  slot: string;
  publication: string;
  subscription: string;
  /** Replication origin on the target that records the client applier's position (sync --applier client). */
  origin: string;
}

export function pairHash(k: PairKey): string {
  return createHash('sha256')
    .update([k.sourceSystemIdentifier, k.sourceDatabase, k.targetSystemIdentifier, k.targetDatabase].join('\0'))
    .digest('hex')
    .slice(0, 10);
}

/** pgferry_<database, sanitised, ≤ 40 chars>_<10 hex>: readable in pg_replication_slots, unique per pair. */
export function objectNames(k: PairKey): ObjectNames {
  const db = k.sourceDatabase.toLowerCase().replace(/[^a-z0-9_]+/g, '_').replace(/^_+|_+$/g, '').slice(0, 40) || 'db';
  const base = `${OBJECT_PREFIX}${db}_${pairHash(k)}`;
  return { slot: base, publication: base, subscription: base, origin: base };
}

/** True for names pgferry could have created (used by cleanup and status to spot leftovers). */
export function isPgferryName(name: string): boolean {
  return /^pgferry_[a-z0-9_]*_[0-9a-f]{10}$/.test(name);
}
