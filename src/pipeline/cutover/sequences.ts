/**
 * Sequences at cutover: the source is fenced, so its values are final. The
 * logic is the `sequences` step's (each target sequence set to the source's
 * value, never lowered).
 */
import { syncSequences, type SequenceSync, type SyncSequencesOptions } from '../shared/sequences.js';

export interface CutoverSequences {
  /** Sequences moved forward on the target. */
  moved: number;
  /** Already at or ahead of the source. */
  unchanged: number;
  /** On the source only (reported, not fatal: verify lists them too). */
  missing: string[];
  list: SequenceSync[];
}

export async function moveSequences(source: SyncSequencesOptions['source'], target: SyncSequencesOptions['target'], dryRun = false): Promise<CutoverSequences> {
  const list = await syncSequences({ source, target, dryRun });
  return {
    moved: list.filter((s) => s.action === 'set').length,
    unchanged: list.filter((s) => s.action === 'unchanged').length,
    missing: list.filter((s) => s.action === 'missing-on-target').map((s) => `${s.schema}.${s.name}`),
    list,
  };
}
