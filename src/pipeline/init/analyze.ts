/** Statistics on the target once the copy is in (pg_restore leaves that to the user; init does not). */
import { acquireClient, type AcquiredClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { runPool } from './pool.js';

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
