/**
 * What verify takes from the checkpoint that `init` leaves in the state
 * directory: the scope of the run, and per source database the filters as
 * actually applied and the fixed time-filter cutoffs. Verify also runs where
 * there is no state at all (then filters come from the flags).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { ScopeSpec } from '../../config/scope.js';
import { loadState } from '../../state/checkpoint.js';

export interface StoredInputs {
  stateFile: string;
  /** The scope init ran with. */
  scope: ScopeSpec | undefined;
  /** source database → "schema.table" → predicate used by init. */
  filters: Record<string, Record<string, string>>;
  /** source database → "schema.table" → timestamptz cutoff text. */
  cutoffs: Record<string, Record<string, string>>;
  /** source database → target database. */
  targetDatabases: Record<string, string>;
  sourceSystemIdentifier: string;
  targetSystemIdentifier: string;
}

interface StoredDatabase {
  targetDatabase?: string;
  filters?: Record<string, string>;
  timeFilterCutoffs?: Record<string, string>;
}

interface StoredState {
  source?: { systemIdentifier?: string };
  target?: { systemIdentifier?: string };
  scope?: ScopeSpec;
  databases?: Record<string, StoredDatabase>;
}

/** The stored inputs of the migration in `stateDir`, or undefined when there is no state. */
export async function loadStoredInputs(stateDir: string): Promise<StoredInputs | undefined> {
  if (!existsSync(path.join(stateDir, 'state.json'))) return undefined;
  const s: StoredState | undefined = await loadState(stateDir);
  if (!s) return undefined;
  const out: StoredInputs = {
    stateFile: path.join(stateDir, 'state.json'),
    scope: s.scope,
    filters: {},
    cutoffs: {},
    targetDatabases: {},
    sourceSystemIdentifier: String(s.source?.systemIdentifier ?? ''),
    targetSystemIdentifier: String(s.target?.systemIdentifier ?? ''),
  };
  for (const [db, d] of Object.entries(s.databases ?? {})) {
    out.filters[db] = { ...(d.filters ?? {}) };
    out.cutoffs[db] = { ...(d.timeFilterCutoffs ?? {}) };
    if (d.targetDatabase) out.targetDatabases[db] = d.targetDatabase;
  }
  return out;
}
