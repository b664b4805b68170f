/**
 * The data path of `init`: rows move as COPY byte streams from the source
 * (read under the exported snapshot) into the target, never parsed, with
 * backpressure between the two connections (pg-copy-streams + stream.pipeline;
 * the CopyData frames are relayed as they are, see copy-frames.ts).
 *
 * One CopySession per worker: a source connection inside a REPEATABLE READ
 * transaction that imported the snapshot, and a target connection on which
 * every part is one transaction. An unsplit relation is loaded with TRUNCATE +
 * COPY … FREEZE in that one transaction (no later freezing vacuum; a rerun
 * simply replaces it), except a small one that has no page at all on the
 * target (freshLoads); the relations of a split table are truncated once
 * before any of their parts starts.
 *
 * Both sides use the canonical session settings so that text COPY is
 * exact (TimeZone, DateStyle, IntervalStyle, extra_float_digits, encoding)
 * plus lc_monetary=C (money text depends on it). The source runs with
 * row_security=off: a user whom a policy would show only some rows gets an
 * error instead of a silently partial copy.
 *
 * Any failure inside a part kills the session's two connections (the servers
 * roll back what was open), so no half part is ever committed and nothing
 * waits on a half-read COPY stream; the worker opens a new session for its
 * next attempt. Interface additions to the design: openCopySession's result
 * also has `broken`; `planCopy` and `copyTables` are the entry points for the
 * orchestrator (pass `jobs` to planCopy too, so that a table that would keep
 * one worker busy alone is split); `onBytes` receives each chunk's size.
 *
 * The pieces: copy-frames.ts (the CopyData relay), copy-session.ts (a
 * worker's snapshot session), copy-part.ts (one part, with retries),
 * copy-plan.ts (columns, format and parts per table), read-ahead.ts (small
 * tables' rows read during the pre-data restore); this file runs them on a
 * pool of workers.
 */
import type pg from 'pg';
import { InterruptedError } from '../../errors.js';
import { faultPoint } from '../../fault.js';
import type { ProgressSink } from '../shared/progress.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import type { CopyFormat } from './format.js';
import type { TablePart } from './parts.js';
import { runPool } from './pool.js';
import type { Budget } from './budget.js';
import { formatBytes, rateAndEta } from '../../units.js';
import { copyOutSql, copyPartsWithRetries, type GroupMember, type PartResult } from './copy-part.js';
import { planCopy, type CopyPlanOptions, type CopyTableInput, type TableCopyPlan } from './copy-plan.js';
import { killSession, openCopySession, type OpenedCopySession } from './copy-session.js';
import type { ReadAhead } from './read-ahead.js';

export interface PartReport extends PartResult {
  id: string;
}

export interface TableCopyReport {
  schema: string;
  name: string;
  key: string;
  format: CopyFormat;
  rows: number;
  bytes: number;
  /** Wall time from the first part's start to the last part's end. */
  ms: number;
  parts: PartReport[];
}

export interface CopyTablesReport {
  tables: TableCopyReport[];
  rows: number;
  bytes: number;
  ms: number;
}

export interface CopyTablesOptions extends CopyPlanOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  /** Exported snapshot; its exporting connection must stay open until copyTables returns. */
  snapshot: string;
  tables: readonly CopyTableInput[];
  /** A plan made earlier (e.g. shown before confirmation); made inside the snapshot otherwise. */
  plan?: TableCopyPlan[];
  jobs: number;
  signal?: AbortSignal;
  progress?: ProgressSink;
  /** Progress ids are `${progressId}/${schema.table}`, with this as their parent. Default "copy". */
  progressId?: string;
  /** Attempts per part after a retryable failure (connection loss, deadlock …). Default 2. */
  retries?: number;
  /** Called (and awaited) after each committed part: the place to checkpoint. */
  onPartDone?: (plan: TableCopyPlan, part: TablePart, result: PartResult) => void | Promise<void>;
  /** Called (and awaited) once every part of a table is committed. */
  onTableDone?: (plan: TableCopyPlan, report: TableCopyReport) => void | Promise<void>;
  /** Shared with other target work (init's per-table post-data): each part's copy holds one permit. */
  budget?: Budget;
  /** Parts read ahead during the schema restore (read-ahead.ts). */
  readAhead?: Pick<ReadAhead, 'take'>;
}

interface TableRun {
  plan: TableCopyPlan;
  remaining: number;
  startedAt?: number;
  bytes: number;
  rows: number;
  lastUpdate: number;
  parts: PartReport[];
}

/** The worker sessions of one copyTables call, one slot per worker. */
interface SessionPool {
  sessions: (OpenedCopySession | undefined)[];
  /** The slot's session; a broken one is closed and replaced by a new one. */
  sessionFor: (slot: number) => Promise<OpenedCopySession>;
}

function sessionPool(opts: CopyTablesOptions): SessionPool {
  const sessions: (OpenedCopySession | undefined)[] = [];
  const sessionFor = async (slot: number): Promise<OpenedCopySession> => {
    const existing = sessions[slot];
    if (existing && !existing.broken) return existing;
    if (existing) await existing.close();
    sessions[slot] = undefined;
    const s = await openCopySession(opts.source, opts.target, opts.snapshot);
    sessions[slot] = s;
    return s;
  };
  return { sessions, sessionFor };
}

/** What the workers of one copyTables call share. */
interface CopyRun {
  opts: CopyTablesOptions;
  progress: ProgressSink;
  /** Parent progress id. */
  pid: string;
  retries: number;
  sessionFor: SessionPool['sessionFor'];
  runs: Map<string, TableRun>;
  /** Tables finished so far, in the order they finished. */
  reports: TableCopyReport[];
  /** Bytes over every table, for the run's rate and time left (measured, unlike the plan's nominal estimate). */
  overall: { started: number; bytes: number; estimated: number; lastUpdate: number };
  /** Ids of the parts loaded without TRUNCATE (freshLoads). */
  fresh: Set<string>;
}

/**
 * Copy whole tables: plan (unless given), truncate split relations, then run
 * every part on `jobs` workers, largest first, one session per worker.
 */
export async function copyTables(opts: CopyTablesOptions): Promise<CopyTablesReport> {
  const started = performance.now();
  const { sessions, sessionFor } = sessionPool(opts);
  const c: CopyRun = {
    opts, progress: opts.progress ?? (() => {}), pid: opts.progressId ?? 'copy', retries: opts.retries ?? 2, sessionFor, runs: new Map(), reports: [],
    fresh: new Set(), overall: { started, bytes: 0, estimated: 0, lastUpdate: 0 },
  };
  try {
    const first = await sessionFor(0);
    const plans = opts.plan ?? (await planCopy(first.source, opts.tables, opts));
    await truncateSplitRelations(first.target, plans);
    c.fresh = await freshLoads(first.target, plans);
    for (const plan of plans) c.runs.set(plan.key, { plan, remaining: plan.parts.length, bytes: 0, rows: 0, lastUpdate: 0, parts: [] });
    c.overall.estimated = plans.reduce((n, p) => n + p.estimatedBytes, 0);
    const items = plans
      .flatMap((plan) => plan.parts.map((part) => ({ plan, part })))
      .sort((a, b) => b.part.estimatedBytes - a.part.estimatedBytes);
    await finishEmptyTables(c);
    await runPool(groupSmallParts(items, opts.jobs), opts.jobs, (group, slot, signal) => copyGroup(c, group, slot, signal), opts.signal);
    return tablesReport(plans, c.reports, started);
  } catch (err) {
    failUnfinishedTables(c, err);
    for (const s of sessions) if (s) killSession(s);
    throw err;
  } finally {
    await Promise.all(sessions.map((s) => s?.close()));
  }
}

/** Parts of a split relation commit separately: empty it once, before any of them. */
async function truncateSplitRelations(target: pg.Client, plans: TableCopyPlan[]): Promise<void> {
  const split = plans.flatMap((p) => p.splitRelations);
  if (split.length) {
    const list = split.map((r) => qualifiedName(r.schema, r.name)).join(', ');
    try {
      await target.query(`TRUNCATE ONLY ${list}`);
    } catch (err) {
      throw operationError(err, `emptying split tables on the target before copying (${split.map((r) => displayName(r.schema, r.name)).join(', ')})`);
    }
  }
}

function startTable(c: CopyRun, run: TableRun): void {
  run.startedAt = performance.now();
  c.progress({ kind: 'start', id: `${c.pid}/${run.plan.key}`, title: displayName(run.plan.table.schema, run.plan.table.name), parent: c.pid });
}

async function finishTable(c: CopyRun, run: TableRun): Promise<TableCopyReport> {
  const { plan } = run;
  const report: TableCopyReport = {
    schema: plan.table.schema, name: plan.table.name, key: plan.key, format: plan.format, rows: run.rows, bytes: run.bytes,
    ms: performance.now() - (run.startedAt ?? performance.now()), parts: run.parts,
  };
  c.progress({ kind: 'end', id: `${c.pid}/${plan.key}`, status: 'ok', detail: `${run.rows} rows, ${formatBytes(run.bytes)}` });
  await c.opts.onTableDone?.(plan, report);
  return report;
}

/** Tables with nothing to copy (a partitioned table without leaves) are done at once. */
async function finishEmptyTables(c: CopyRun): Promise<void> {
  for (const run of c.runs.values()) {
    if (run.remaining === 0) {
      startTable(c, run);
      c.reports.push(await finishTable(c, run));
    }
  }
}

interface WorkPart {
  plan: TableCopyPlan;
  part: TablePart;
}

/** A part below this joins a group of small parts (one target transaction for the group). */
export const GROUP_PART_MAX_BYTES = 8 * 1024 ** 2;
/** A group holds at most this many parts and this many estimated bytes. */
export const GROUP_MAX_PARTS = 20;
export const GROUP_MAX_BYTES = 32 * 1024 ** 2;

function unsplit(plan: TableCopyPlan, part: TablePart): boolean {
  return !plan.splitRelations.some((r) => r.schema === part.relation.schema && r.name === part.relation.name);
}

/** An unsplit relation up to this size that is empty on the target is loaded without TRUNCATE (freshLoads). */
export const FRESH_LOAD_MAX_BYTES = 1024 ** 2;

/**
 * The small unsplit relations that have no page at all on the target (made by
 * this run's schema step and never written), by part id: their COPY needs no
 * TRUNCATE, whose new files (heap, TOAST, its index, and the visibility map
 * FREEZE writes) cost a small table more than its rows — 200 tables of 1 000
 * rows: 1.15 s of copying with TRUNCATE + FREEZE, 0.78 s without. Such a table
 * is not frozen on load; below 1 MB a later freezing vacuum costs little.
 * No row can arrive twice: a failed attempt rolls back, and a relation with
 * any page (rows a killed run committed, or dead ones) is truncated as before.
 */
async function freshLoads(target: pg.Client, plans: TableCopyPlan[]): Promise<Set<string>> {
  const small = plans.flatMap((plan) => plan.parts.filter((part) => part.count === 1 && part.estimatedBytes <= FRESH_LOAD_MAX_BYTES && unsplit(plan, part)));
  if (!small.length) return new Set();
  try {
    // A relation missing on the target is not "empty": its TRUNCATE then fails with the usual message.
    const { rows } = await target.query<{ ord: number }>(
      `SELECT r.ord::int AS ord FROM unnest($1::text[]) WITH ORDINALITY AS r(name, ord)
        WHERE pg_relation_size(to_regclass(r.name)) = 0`,
      [small.map((p) => qualifiedName(p.relation.schema, p.relation.name))],
    );
    return new Set(rows.map((r) => small[r.ord - 1]!.id));
  } catch (err) {
    throw operationError(err, 'checking which tables are still empty on the target');
  }
}

/**
 * The workers' items: every part alone, except that consecutive small whole
 * relations (in the largest-first order, so they come last) go in groups,
 * each group one target transaction (copy-part.ts, copyParts). Groups stay
 * small enough that each worker gets several of them, so that the workers
 * finish together.
 */
export function groupSmallParts(items: readonly WorkPart[], jobs: number): WorkPart[][] {
  const groupable = (w: WorkPart) => w.part.count === 1 && w.part.estimatedBytes <= GROUP_PART_MAX_BYTES && unsplit(w.plan, w.part);
  const small = items.filter(groupable).length;
  const maxParts = Math.max(1, Math.min(GROUP_MAX_PARTS, Math.ceil(small / (Math.max(1, jobs) * 4))));
  const out: WorkPart[][] = [];
  let group: WorkPart[] = [];
  let bytes = 0;
  for (const w of items) {
    if (!groupable(w)) {
      out.push([w]);
      continue;
    }
    if (group.length && (group.length >= maxParts || bytes + w.part.estimatedBytes > GROUP_MAX_BYTES)) {
      out.push(group);
      group = [];
      bytes = 0;
    }
    group.push(w);
    bytes += w.part.estimatedBytes;
  }
  if (group.length) out.push(group);
  return out;
}

/** One worker's job: one part (or a group of small ones), with progress, retries and the tables' completion. */
async function copyGroup(c: CopyRun, group: WorkPart[], slot: number, signal: AbortSignal): Promise<void> {
  const members: GroupMember[] = group.map(({ plan, part }) => {
    const run = c.runs.get(plan.key)!;
    const onBytes = (n: number) => {
      run.bytes += n;
      c.overall.bytes += n;
      const now = performance.now();
      if (now - c.overall.lastUpdate >= 1000) {
        c.overall.lastUpdate = now;
        const o = c.overall;
        c.progress({ kind: 'update', id: c.pid, detail: rateAndEta(o.bytes, o.estimated, now - o.started), done: o.bytes, total: o.estimated, unit: 'bytes' });
      }
      if (now - run.lastUpdate < 250) return;
      run.lastUpdate = now;
      c.progress({ kind: 'update', id: `${c.pid}/${plan.key}`, detail: rateDetail(run, now), done: run.bytes, total: plan.estimatedBytes, unit: 'bytes' });
    };
    const truncateAndFreeze = unsplit(plan, part) && !c.fresh.has(part.id);
    const readAhead = c.opts.readAhead?.take(part.id, copyOutSql(part.relation, plan.columns, plan.format, plan.filter, part.range, plan.select));
    return { part, o: { columns: plan.columns, filter: plan.filter, select: plan.select, format: plan.format, truncateAndFreeze, signal, onBytes, readAhead } };
  });
  const copy = () => {
    // Started once it holds a permit: a part waiting for one is not being copied.
    for (const { plan } of group) {
      const run = c.runs.get(plan.key)!;
      if (run.startedAt === undefined) startTable(c, run);
    }
    return copyPartsWithRetries(() => c.sessionFor(slot), members, c.retries, {
      onFailedAttempt: (bytes) => {
        group.forEach(({ plan }, i) => {
          c.runs.get(plan.key)!.bytes -= bytes[i]!;
          c.overall.bytes -= bytes[i]!;
        });
      },
      onRetry: (message) => c.progress({ kind: 'log', level: 'warn', message }),
    });
  };
  const results = c.opts.budget ? await c.opts.budget.run(copy, signal) : await copy();
  // The window freshLoads must survive: rows on the target that no checkpoint knows of.
  if (group.some(({ part }) => c.fresh.has(part.id))) faultPoint('init.copy.fresh-committed');
  for (const [i, { plan, part }] of group.entries()) {
    const run = c.runs.get(plan.key)!;
    const result = results[i]!;
    run.rows += result.rows;
    run.parts.push({ id: part.id, ...result });
    await c.opts.onPartDone?.(plan, part, result);
    if (--run.remaining === 0) c.reports.push(await finishTable(c, run));
  }
}

/** The tables in plan order, with totals. */
function tablesReport(plans: TableCopyPlan[], reports: TableCopyReport[], started: number): CopyTablesReport {
  const order = new Map(plans.map((p, i) => [p.key, i]));
  reports.sort((a, b) => order.get(a.key)! - order.get(b.key)!);
  return {
    tables: reports,
    rows: reports.reduce((n, r) => n + r.rows, 0),
    bytes: reports.reduce((n, r) => n + r.bytes, 0),
    ms: performance.now() - started,
  };
}

/** Close the progress of every table that started and did not finish. */
function failUnfinishedTables(c: CopyRun, err: unknown): void {
  for (const run of c.runs.values()) {
    if (run.startedAt !== undefined && run.remaining > 0) {
      c.progress({ kind: 'end', id: `${c.pid}/${run.plan.key}`, status: 'fail', detail: err instanceof InterruptedError ? 'interrupted' : 'failed' });
    }
  }
}

function rateDetail(run: TableRun, now: number): string {
  return rateAndEta(run.bytes, run.plan.estimatedBytes, now - (run.startedAt ?? now));
}
