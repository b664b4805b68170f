/** Statistics on the target once the copy is in (pg_restore leaves that to the user; init does not). */
import type pg from 'pg';
import { acquireClient, type AcquiredClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { runPool } from './pool.js';
import type { ScopeTable } from '../../config/scope.js';
import { tableKey } from '../../state/checkpoint.js';

type Named = { schema: string; name: string };

/** One ANALYZE: a table (a plain table or a partition), or a partitioned table whose leaves are analysed on their own. */
export interface AnalyzeItem extends Named {
  /** A partitioned table's leaf partitions: the root's ANALYZE only samples, it does not analyse them again. */
  leaves?: Named[];
  /** Small tables analysed by the same statement (ANALYZE a, b, …), each still in a transaction of its own. */
  with?: Named[];
}

/**
 * Tables below this size are analysed several to a statement, up to
 * ANALYZE_BATCH_TABLES: the server's work is the same, but a round trip per
 * table was most of the ANALYZE phase of many small tables over a network
 * (200 tables of 1 000 rows, 2 ms round trip: 0.2 s).
 */
const ANALYZE_BATCH_MAX_BYTES = 1024 ** 2;
export const ANALYZE_BATCH_TABLES = 50;

/** A table of this size (-1: unknown) may share its ANALYZE statement with others. */
export function analyzedTogether(bytes: number): boolean {
  return bytes >= 0 && bytes < ANALYZE_BATCH_MAX_BYTES;
}

/** The ANALYZE statement of an item without leaves. */
export function analyzeSql(t: AnalyzeItem): string {
  return `ANALYZE ${[t, ...(t.with ?? [])].map((x) => qualifiedName(x.schema, x.name)).join(', ')}`;
}

/** Run a (possibly several-table) ANALYZE; where several fail together, each is tried alone so that the error names its table. */
async function analyzeTogether(c: pg.Client, t: AnalyzeItem): Promise<void> {
  try {
    await c.query(analyzeSql(t));
  } catch (err) {
    if (!t.with?.length) throw operationError(err, `ANALYZE of ${displayName(t.schema, t.name)} on the target`);
    for (const one of [t, ...t.with]) {
      try {
        await c.query(analyzeSql({ schema: one.schema, name: one.name }));
      } catch (e) {
        throw operationError(e, `ANALYZE of ${displayName(one.schema, one.name)} on the target`);
      }
    }
  }
}

/** ANALYZE the copied tables on the target, `jobs` at a time. */
export async function analyzeTables(target: ResolvedConnInfo, items: AnalyzeItem[], jobs: number, signal?: AbortSignal): Promise<void> {
  const sessions: (AcquiredClient | undefined)[] = [];
  let ok = false;
  try {
    await runPool(
      items,
      Math.max(1, Math.min(jobs, items.length || 1)),
      async (t, slot) => {
        const c = (sessions[slot] ??= await acquireClient(target, { label: 'the target' })).client;
        if (!t.leaves?.length) return analyzeTogether(c, t);
        try {
          await analyzeRoot(target, c, t, t.leaves);
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

/** SQLSTATE lock_not_available: the WARNING of an ANALYZE (SKIP_LOCKED) that skipped a table it was given by name. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * A partitioned table's own (inherited) statistics, without analysing its
 * leaves again. ANALYZE of a root samples it and then — before PostgreSQL 18
 * always, from 18 unless ONLY — analyses every partition in turn, in one
 * session: on 8 × 26 MB partitions 0.8 – 0.9 s where the sample alone takes
 * 0.15 – 0.2 s. A second session holds the leaves' SHARE UPDATE EXCLUSIVE lock
 * (ANALYZE's own) while the root's ANALYZE runs with SKIP_LOCKED, which then
 * passes over every leaf silently; the sample itself only needs ACCESS SHARE on
 * them. Sub-partitioned tables in between are not locked, so they get their
 * inherited statistics too (ANALYZE ONLY of the root would leave them none).
 * Where the leaves cannot be locked (a foreign-table partition, a missing
 * privilege, the lock table full), the plain ANALYZE analyses them again.
 */
async function analyzeRoot(target: ResolvedConnInfo, c: pg.Client, t: Named, leaves: Named[]): Promise<void> {
  const root = qualifiedName(t.schema, t.name);
  const guard = await acquireClient(target, { label: 'the target' });
  let guarded = false;
  let ok = false;
  try {
    try {
      await guard.client.query('BEGIN');
      await guard.client.query(`LOCK TABLE ${leaves.map((l) => `ONLY ${qualifiedName(l.schema, l.name)}`).join(', ')} IN SHARE UPDATE EXCLUSIVE MODE`);
      guarded = true;
    } catch {
      await guard.client.query('ROLLBACK');
    }
    let skipped = false;
    if (guarded) {
      // Partitions are not named in the command, so they are passed over without a word: a warning can only be the root's.
      const onNotice = (n: { code?: string }) => {
        if (n.code === LOCK_NOT_AVAILABLE) skipped = true;
      };
      c.on('notice', onNotice);
      try {
        await c.query(`ANALYZE (SKIP_LOCKED) ${root}`);
      } finally {
        c.off('notice', onNotice);
      }
      await guard.client.query('COMMIT');
    }
    // Not guarded, or the root itself was locked by someone else (a user's ANALYZE): the plain ANALYZE waits for it.
    if (!guarded || skipped) await c.query(`ANALYZE ${root}`);
    ok = true;
  } finally {
    await guard.release(ok);
  }
}

/**
 * What the ANALYZE phase runs: the leaf partitions not analysed yet (during
 * the copy) and the plain tables, largest first, so that a large table does
 * not start last while the other sessions have nothing left to do, the small
 * ones several to a statement (batchSmall); then the partitioned tables, whose
 * ANALYZE only samples (analyzeRoot).
 */
export function analyzeItems(tables: ScopeTable[], analyzed: ReadonlySet<string>, jobs = 1): AnalyzeItem[] {
  const sized: { item: AnalyzeItem; bytes: number }[] = [];
  const roots: AnalyzeItem[] = [];
  for (const t of tables) {
    if (t.relkind !== 'p') {
      sized.push({ item: { schema: t.schema, name: t.name }, bytes: t.bytes });
      continue;
    }
    // The catalog sums a partitioned table's size over its leaves; each leaf is taken as an equal share.
    const share = t.bytes / Math.max(1, t.partitions.length);
    for (const p of t.partitions) {
      if (!analyzed.has(tableKey(p.schema, p.name))) sized.push({ item: { schema: p.schema, name: p.name }, bytes: share });
    }
    roots.push({ schema: t.schema, name: t.name, leaves: t.partitions });
  }
  return [...batchSmall(sized.sort((a, b) => b.bytes - a.bytes), jobs), ...roots];
}

/**
 * Consecutive tables below ANALYZE_BATCH_MAX_BYTES (of a known size) go
 * several to an item: at most ANALYZE_BATCH_TABLES, and few enough that each
 * of the `jobs` sessions gets about two items, so that they finish together.
 */
function batchSmall(sized: { item: AnalyzeItem; bytes: number }[], jobs: number): AnalyzeItem[] {
  const count = sized.filter((s) => analyzedTogether(s.bytes)).length;
  const per = Math.max(1, Math.min(ANALYZE_BATCH_TABLES, Math.ceil(count / (Math.max(1, jobs) * 2))));
  const out: AnalyzeItem[] = [];
  let batch: AnalyzeItem | undefined;
  for (const { item, bytes } of sized) {
    if (!analyzedTogether(bytes)) {
      out.push(item);
      batch = undefined;
      continue;
    }
    if (batch && 1 + (batch.with?.length ?? 0) < per) {
      (batch.with ??= []).push({ schema: item.schema, name: item.name });
      continue;
    }
    batch = { ...item };
    out.push(batch);
  }
  return out;
}
