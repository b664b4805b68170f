/** `pgferry sequences`: every database in scope, the target's sequences moved up to the source's values. */
import { resolveDatabases, type ScopeSpec } from '../../config/scope.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { probePair, sourceConnFor, targetConnFor } from '../shared/pairs.js';
import { syncSequences, type SequenceSync } from '../shared/sequences.js';

export type { SequenceSync } from '../shared/sequences.js';

export interface SequencesOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope: ScopeSpec;
  dryRun?: boolean;
}

export interface SequencesReport {
  databases: { database: string; sequences: SequenceSync[] }[];
  /** Source sequences that do not exist on the target. */
  missing: number;
}

export async function runSequences(o: SequencesOptions): Promise<SequencesReport> {
  await probePair(o.source, o.target);
  const dbs = await withClient(o.source, (c) => resolveDatabases(c, o.scope.databases, o.source.dbname), { label: 'the source' });
  const databases: SequencesReport['databases'] = [];
  for (const db of dbs) {
    const sequences = await syncSequences({
      source: sourceConnFor(o.source, db),
      target: targetConnFor(o.target, db, o.scope.databases),
      dryRun: o.dryRun ?? false,
    });
    databases.push({ database: db, sequences });
  }
  const missing = databases.flatMap((d) => d.sequences).filter((s) => s.action === 'missing-on-target').length;
  return { databases, missing };
}
