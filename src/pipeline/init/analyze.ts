/** Statistics on the target once the copy is in (pg_restore leaves that to the user; init does not). */
import { acquireClient, type AcquiredClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { runPool } from './pool.js';
import type { ScopeTable } from '../../config/scope.js';
import { tableKey } from '../../state/checkpoint.js';

/** First major whose ANALYZE ONLY gives a partitioned table its own statistics without analysing every partition again. */
export const ANALYZE_ONLY_MAJOR = 18;

/** ANALYZE the copied tables on the target, `jobs` at a time (`only`: ANALYZE ONLY, PostgreSQL 18+). */
export async function analyzeTables(
  target: ResolvedConnInfo, tables: { schema: string; name: string; only?: boolean }[], jobs: number, signal?: AbortSignal,
): Promise<void> {
  const sessions: (AcquiredClient | undefined)[] = [];
  let ok = false;
  try {
    await runPool(
      tables,
      Math.max(1, Math.min(jobs, tables.length || 1)),
      async (t, slot) => {
        const c = (sessions[slot] ??= await acquireClient(target, { label: 'the target' })).client;
        try {
          await c.query(`ANALYZE ${t.only ? 'ONLY ' : ''}${qualifiedName(t.schema, t.name)}`);
        } catch (err) {
          throw operationError(err, `ANALYZE of ${displayName(t.schema, t.name)} on the target`);
        }
      },
      signal,
    );
    ok = true;
  } finally {
    await Promise.all(sessions.map((s) => s?.release(ok)));
  }
}

/**
 * What the ANALYZE phase runs. ANALYZE of a partitioned table samples the
 * root and then analyses every partition again, one after the other in one
 * session. From PostgreSQL 18 the partitions are analysed as tables of their
 * own (in parallel) and the root with ANALYZE ONLY; before 18 the root's ANALYZE is the only way to give it statistics
 * (see docs/architecture.md, "Statistics").
 */
export function analyzeItems(tables: ScopeTable[], targetMajor: number, analyzed: ReadonlySet<string>): { schema: string; name: string; only?: boolean }[] {
  // Longest first, so that a partitioned table (its rows sampled, then every partition analysed in turn) does not
  // start last while the other sessions have nothing left to do.
  if (targetMajor < ANALYZE_ONLY_MAJOR) return [...tables].sort((a, b) => analyzeWeight(b) - analyzeWeight(a));
  const leavesFirst = tables.flatMap((t) => (t.relkind === 'p' ? t.partitions.filter((p) => !analyzed.has(tableKey(p.schema, p.name))) : []));
  return [...leavesFirst, ...tables.map((t) => (t.relkind === 'p' ? { schema: t.schema, name: t.name, only: true } : t))];
}

/** What an ANALYZE before PostgreSQL 18 reads, roughly: a partitioned table's leaves twice. */
function analyzeWeight(t: ScopeTable): number {
  return Math.max(0, t.bytes) * (t.relkind === 'p' ? 2 : 1);
}
