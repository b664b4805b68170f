/** `pgferry sequences`: every database in scope, the target's sequences moved up to the source's values. */
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { probePair, scopePairs } from '../shared/pairs.js';
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
  const databases: SequencesReport['databases'] = [];
  for (const p of await scopePairs(o.source, o.target, o.scope.databases)) {
    const sequences = await syncSequences({ source: p.sourceConn, target: p.targetConn, dryRun: o.dryRun ?? false });
    databases.push({ database: p.sourceDatabase, sequences });
  }
  const missing = databases.flatMap((d) => d.sequences).filter((s) => s.action === 'missing-on-target').length;
  return { databases, missing };
}
