/**
 * What logical replication does not carry, and how pgferry handles it:
 * large objects and sequences are copied once by init and must be brought
 * up to date at cutover. Plus the size of each database (informational).
 */
import type { ScopeTable } from '../../config/scope.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { formatBytes } from '../../units.js';
import type { DatabaseFacts, SequenceInfo } from './database-facts.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export function checkSize(f: DatabaseFacts): CheckResult {
  return ok('database.size', 'source', `size ${formatBytes(f.sizeBytes)} (pg_database_size)`);
}

export function checkLargeObjects(f: DatabaseFacts): CheckResult | null {
  if (!f.largeObjects) return null;
  return warn(
    'tables.large_objects',
    'source',
    `${f.largeObjects} large object${f.largeObjects > 1 ? 's' : ''}: init copies them, but logical replication does not carry large objects: later changes reach the target only when cutover copies them`,
    'pgferry cutover copies what changed once writers are fenced; if you hand over by other means, copy them again after writes stop (pg_dump --large-objects --data-only), or store them in bytea columns',
  );
}

/** Sequences that belong to the scope: free-standing ones, and those owned by a table in scope. */
export function sequencesInScope(sequences: SequenceInfo[], tables: ScopeTable[]): SequenceInfo[] {
  const oids = new Set(tables.flatMap((t) => [t.oid, ...t.partitions.map((p) => p.oid)]));
  return sequences.filter((s) => s.ownerTableOid === null || oids.has(s.ownerTableOid));
}

export function checkSequences(sequences: SequenceInfo[], user: string): CheckResult[] {
  if (!sequences.length) return [];
  const out: CheckResult[] = [
    warn(
      'tables.sequences',
      'source',
      `${sequences.length} sequence${sequences.length > 1 ? 's' : ''}: init sets ${sequences.length > 1 ? 'them' : 'it'} to the values of the snapshot, but logical replication carries no sequence changes, so ${sequences.length > 1 ? 'they' : 'it'} must be synced at cutover`,
      'at cutover, after writes to the source stop: pgferry sequences (sets each target sequence to the source\'s value)',
      { details: sequences.map((s) => displayName(s.schema, s.name)) },
    ),
  ];
  const unreadable = sequences.filter((s) => !s.canSelect);
  if (unreadable.length) {
    out.push(
      fail(
        'tables.sequence_select',
        'source',
        `${user} cannot read ${unreadable.length} sequence${unreadable.length > 1 ? 's' : ''}, so init cannot copy ${unreadable.length > 1 ? 'their values' : 'its value'}`,
        `GRANT SELECT ON SEQUENCE ${unreadable.map((s) => qualifiedName(s.schema, s.name)).join(', ')} TO ${quoteIdent(user)};`,
        { details: unreadable.map((s) => displayName(s.schema, s.name)) },
      ),
    );
  }
  return out;
}
