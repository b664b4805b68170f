/**
 * cutover's gate: with the source fenced and the target caught up to the fence LSN,
 * both sides hold the same rows or the cutover stops. The comparison is
 * verify's own (called, not reimplemented), with no re-checks: nothing moves
 * any more, so one pass is exact.
 *
 *   full   every table in scope, chunk by chunk.
 *   quick  chunk hashes of the tables that changed on the target since init —
 *          its statistics counters show updates or deletes, or more inserts than
 *          init copied rows (the apply worker wrote to them) — and of every
 *          filtered table; an exact row count of every other table. When the
 *          target's statistics were reset after init, or init's state is not
 *          there, quick compares every table like full.
 *   none   no comparison.
 */
import type pg from 'pg';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import type { RunState } from '../../state/checkpoint.js';
import { FENCED_SOURCE_SETTINGS as SOURCE_SETTINGS, type GateMode, type GateOutcome, type GateRequest } from '../shared/gate.js';
import { loadStoredInputs } from './state-inputs.js';
import type { VerifyReport } from './types.js';
import { verify, VERIFY_DEFAULTS } from './verify.js';

export interface GateCount {
  table: string;
  source: number;
  target: number;
}

export interface GateDatabase {
  sourceDatabase: string;
  /** Tables compared by chunk hashes (display names); 'all' when every table was. */
  hashed: string[] | 'all';
  /** Tables compared by row count only (quick). */
  counted: GateCount[];
  /** Why quick compared every table, when it did. */
  fallback: string | null;
}

export interface GateResult extends GateOutcome {
  mode: GateMode;
  ok: boolean;
  databases: GateDatabase[];
  /** The verify report (row differences located down to keys), when verify ran. */
  verify: VerifyReport | null;
  /** Tables whose row counts differ (quick). */
  countDifferences: GateCount[];
  ms: number;
}

/** Tables written on the target since init, by its statistics; undefined when they cannot be trusted. */
async function writtenSinceInit(c: pg.Client, init: RunState | undefined, sourceDatabase: string): Promise<{ written: Set<string> } | { fallback: string }> {
  const db = init?.databases[sourceDatabase];
  if (!init || !db) return { fallback: "init's state is not in the state directory" };
  const reset = await c.query<{ after: boolean }>(
    'SELECT coalesce(stats_reset > $1::timestamptz, false) AS after FROM pg_stat_database WHERE datname = current_database()',
    [init.createdAt],
  );
  if (reset.rows[0]?.after) return { fallback: "the target's statistics were reset after init" };
  const { rows } = await c.query<{ schema: string; name: string; ins: string; upd: string; del: string }>(
    'SELECT schemaname::text AS schema, relname::text AS name, n_tup_ins::text AS ins, n_tup_upd::text AS upd, n_tup_del::text AS del FROM pg_stat_user_tables',
  );
  const written = new Set<string>();
  for (const r of rows) {
    const key = `${r.schema}.${r.name}`;
    const copied = db.tables[key]?.rows;
    if (copied === undefined || Number(r.upd) > 0 || Number(r.del) > 0 || Number(r.ins) > copied) written.add(key);
  }
  return { written };
}

/**
 * Tables counted to a statement (a UNION ALL of count(*)): the gate runs while writers wait, and a statement per
 * table was a round trip per table and side in that window. Only tables init copied COUNT_BATCH_ROWS rows or
 * fewer into go in batches (and nothing wrote them since, or they would be hashed): those run without parallel
 * workers, which the planner gives a long UNION ALL and which each open every table again (3 000 tables of 20
 * rows: about 0.5 s for the gate against 0.64 – 0.77 s one by one, and 0.91 – 1.03 s batched with workers).
 * A larger table is counted alone, as the server would plan it.
 */
const COUNT_BATCH = 250;
const COUNT_BATCH_ROWS = 10_000;

interface CountTable {
  schema: string;
  name: string;
  /** Rows init copied into it, when known. */
  rows?: number | undefined;
}

/** Each table's row count, in the order given. */
async function counts(conn: ResolvedConnInfo, tables: CountTable[], settings?: Record<string, string>): Promise<number[]> {
  if (!tables.length) return [];
  const small = (t: CountTable) => t.rows !== undefined && t.rows <= COUNT_BATCH_ROWS;
  const batched = tables.flatMap((t, i) => (small(t) ? [i] : []));
  const alone = tables.flatMap((t, i) => (small(t) ? [] : [i]));
  const count = (i: number) => `count(*)::text AS n FROM ${qualifiedName(tables[i]!.schema, tables[i]!.name)}`;
  return withClient(
    conn,
    async (c) => {
      const out: number[] = [];
      if (batched.length) {
        await c.query('SET max_parallel_workers_per_gather = 0');
        for (let from = 0; from < batched.length; from += COUNT_BATCH) {
          const part = batched.slice(from, from + COUNT_BATCH);
          const sql = part.map((ti, i) => `SELECT ${i} AS i, ${count(ti)}`).join('\nUNION ALL ');
          for (const r of (await c.query<{ i: number; n: string }>(sql)).rows) out[part[r.i]!] = Number(r.n);
        }
        await c.query('RESET max_parallel_workers_per_gather');
      }
      for (const i of alone) out[i] = Number((await c.query<{ n: string }>(`SELECT ${count(i)}`)).rows[0]!.n);
      return out;
    },
    { applicationName: 'pgferry cutover', settings },
  );
}

export async function runGate(o: GateRequest): Promise<GateResult> {
  const started = performance.now();
  if (o.mode === 'none') return { mode: 'none', ok: true, databases: [], verify: null, countDifferences: [], ms: 0 };
  const stored = await loadStoredInputs(o.stateDir);
  const databases: GateDatabase[] = [];
  const countDifferences: GateCount[] = [];
  let report: VerifyReport | null = null;
  const filtered = (db: string, key: string) => !!stored?.filters[db]?.[key] || !!stored?.cutoffs[db]?.[key];
  for (const p of o.pairs) {
    let hashed: { schema: string; name: string }[] | 'all' = 'all';
    let counted: CountTable[] = [];
    let fallback: string | null = null;
    if (o.mode === 'quick') {
      const w = await withClient(p.targetConn, (c) => writtenSinceInit(c, o.initState, p.sourceDatabase), { label: 'the target', applicationName: 'pgferry cutover' });
      if ('fallback' in w) fallback = w.fallback;
      else {
        const h = p.tables.filter((t) => w.written.has(`${t.schema}.${t.name}`) || filtered(p.sourceDatabase, `${t.schema}.${t.name}`));
        hashed = h;
        const copied = o.initState?.databases[p.sourceDatabase]?.tables;
        counted = p.tables.filter((t) => !h.includes(t)).map((t) => ({ ...t, rows: copied?.[`${t.schema}.${t.name}`]?.rows }));
      }
    }
    const [cs, ct] = await Promise.all([counts(p.sourceConn, counted, { ...SOURCE_SETTINGS }), counts(p.targetConn, counted)]);
    const countRows = counted.map((t, i) => ({ table: displayName(t.schema, t.name), source: cs[i]!, target: ct[i]! }));
    countDifferences.push(...countRows.filter((r) => r.source !== r.target));
    databases.push({ sourceDatabase: p.sourceDatabase, hashed: hashed === 'all' ? 'all' : hashed.map((t) => displayName(t.schema, t.name)), counted: countRows, fallback });
    if (hashed !== 'all' && !hashed.length) continue;
    const r = await verify({
      source: o.source,
      target: o.target,
      scope: { ...o.scope, databases: { all: false, include: [p.sourceDatabase], exclude: [] } },
      tables: hashed === 'all' ? [] : hashed.map((t) => qualifiedName(t.schema, t.name)),
      filters: stored?.filters,
      cutoffs: stored?.cutoffs,
      targetDatabases: { [p.sourceDatabase]: p.targetDatabase },
      stateIdentity: stored && { sourceSystemIdentifier: stored.sourceSystemIdentifier, targetSystemIdentifier: stored.targetSystemIdentifier, stateFile: stored.stateFile },
      jobs: o.jobs,
      chunkRows: VERIFY_DEFAULTS.chunkRows,
      maxDiffs: VERIFY_DEFAULTS.maxDiffs,
      recheck: 0,
      lagTimeoutMs: VERIFY_DEFAULTS.lagTimeoutMs,
      // Sequences were just moved forward by cutover itself; the gate is about rows and schema.
      sequences: false,
      // The source is fenced: nothing changes under a whole-table scan.
      sourceQuiet: true,
      signal: o.signal,
      progress: o.progress,
    });
    report = mergeReports(report, r);
  }
  const ok = countDifferences.length === 0 && (report === null || report.status === 'equal');
  return { mode: o.mode, ok, databases, verify: report, countDifferences, ms: Math.round(performance.now() - started) };
}

function mergeReports(a: VerifyReport | null, b: VerifyReport): VerifyReport {
  if (!a) return b;
  const rank = { equal: 0, different: 1, error: 2 } as const;
  const summary = { ...a.summary };
  for (const [k, v] of Object.entries(b.summary)) (summary as Record<string, number>)[k] = ((summary as Record<string, number>)[k] ?? 0) + v;
  return {
    ...a,
    status: rank[b.status] > rank[a.status] ? b.status : a.status,
    durationMs: a.durationMs + b.durationMs,
    summary,
    databases: [...a.databases, ...b.databases],
  };
}
