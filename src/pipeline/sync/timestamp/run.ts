/**
 * `sync --method timestamp`: rounds of incremental sync for sources without
 * logical replication. Per database pair and round:
 *
 *  1. the safe lower bound is read on the source BEFORE the round's snapshot
 *     (shared/timestamp-bound.ts explains why that bound loses no row);
 *  2. one REPEATABLE READ transaction on the source: every table is read
 *     under that one snapshot: rows stamped at or after its mark are upserted
 *     in key-ordered batches; tables without the timestamp column are
 *     compared chunk by chunk and only differing rows rewritten;
 *     --detect-deletes compares the keys of timestamp tables too;
 *  3. sequences move to the source's values (never lowered), read after the
 *     rows so that no copied row carries a value ahead of its sequence;
 *  4. a table's mark moves to the bound of step 1 only after its last batch
 *     committed; a round killed midway leaves the marks of unfinished tables
 *     where they were, and upserts are idempotent, so the next round simply
 *     reads again.
 *
 * Target writes run with session_replication_role = replica, as a logical
 * replication apply worker does: the target's copies of the source's triggers
 * (e.g. the one stamping updated_at) must not rewrite the values, and foreign
 * keys must not depend on the order tables are visited in. State lives in the
 * target (shared/timestamp-state.ts), guarded by an advisory lock so that two
 * machines never run a round of the same target database at once.
 */
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { emptyScope, resolveTables, rulesFor, type ScopeSpec } from '../../../config/scope.js';
import { OperationError, UsageError } from '../../../errors.js';
import { shutdownSignal, throwIfShuttingDown } from '../../../lifecycle.js';
import { listTables, NO_SIZES } from '../../../postgres/catalog/tables.js';
import { connect } from '../../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../../postgres/conninfo.js';
import { operationError, sqlstate } from '../../../postgres/errors.js';
import { displayName } from '../../../postgres/identifiers.js';
import { loadState, type RunState } from '../../../state/checkpoint.js';
import { FENCE_SCHEMA, type FinalRound } from '../../shared/final-apply.js';
import { resolvePairs, type ReplicationPair } from '../../shared/pairs.js';
import { warningCollector, type ProgressSink } from '../../shared/progress.js';
import { ROW_TEXT_SETTINGS } from '../../shared/row-diff.js';
import { syncSequences } from '../../shared/sequences.js';
import { readLowerBound } from '../../shared/timestamp-bound.js';
import { advanceMark, finishRound, readMarks, startRound, type InitMark } from '../../shared/timestamp-state.js';
import { compareAndFix, upsertChanged, type ReadFrom, type Sides } from './rows.js';
import { readUniques } from './uniques.js';
import { planTables, type TimestampColumns, type TsTable } from './tables.js';

import { TIMESTAMP_DEFAULTS } from './defaults.js';

export { TIMESTAMP_DEFAULTS };

export interface TimestampSyncOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  /** The scope; undefined: the one init ran with, else the connection's database. */
  scope?: ScopeSpec | undefined;
  stateDir: string;
  columns: TimestampColumns;
  batchSize: number;
  detectDeletes: boolean;
  overlapSeconds: number;
  /** Seconds between rounds; 0: one round (--once). */
  intervalSeconds: number;
  /** cutover's last round: the source is fenced on purpose (any other round refuses a fenced source). */
  finalRound?: boolean;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface TimestampTableReport {
  schema: string;
  name: string;
  mode: 'timestamp' | 'compared';
  /** The timestamp column, or why the table is compared. */
  column: string | null;
  reason: string | null;
  /** The mark this round read from (null: no mark yet, every row read). */
  from: string | null;
  upserted: number;
  deleted: number;
  /** Chunks compared (compared tables, and --detect-deletes). */
  chunks: number;
}

export interface TimestampDatabaseReport {
  sourceDatabase: string;
  targetDatabase: string;
  round: number;
  /** Where the next round reads from. */
  nextMark: string;
  oldestOpenTransaction: string | null;
  deletesTracked: boolean;
  upserted: number;
  deleted: number;
  /** Target sequences moved forward to the source's value this round (never lowered). */
  sequencesMoved: number;
  tables: TimestampTableReport[];
  seconds: number;
}

export interface TimestampSyncReport {
  command: 'sync';
  method: 'timestamp';
  stateDir: string;
  rounds: number;
  /** The databases of the last round. */
  databases: TimestampDatabaseReport[];
  notes: string[];
  warnings: string[];
  seconds: number;
}

/** One advisory lock key for "a timestamp round runs on this target database". */
const ROUND_LOCK = "hashtextextended('pgferry.timestamp-round', 0)";

export async function runTimestampSync(o: TimestampSyncOptions): Promise<TimestampSyncReport> {
  const started = performance.now();
  const signal = o.signal ?? shutdownSignal;
  const progress: ProgressSink = o.progress ?? (() => {});
  const { warnings, warn } = warningCollector(progress);
  if (!(Number.isInteger(o.batchSize) && o.batchSize > 0)) throw new UsageError(`--batch-size must be a whole number above 0 (got ${o.batchSize})`);
  if (!(o.overlapSeconds >= 0)) throw new UsageError(`--overlap must be 0 or more (got ${o.overlapSeconds})`);
  const state = await loadState(o.stateDir);
  const unfinished = Object.values(state?.databases ?? {}).filter((d) => d.phase !== 'done').map((d) => d.sourceDatabase);
  if (unfinished.length) {
    // A table init is still copying has a mark but not all its rows: a round would not bring them.
    throw new UsageError(`init has not finished for ${unfinished.map((d) => `"${d}"`).join(', ')}`, { hint: 'run the same pgferry init command again to resume it, then sync' });
  }
  const scope = o.scope ?? state?.scope ?? emptyScope();
  const { pairs } = await resolvePairs(o.source, o.target, scope, state, o.stateDir);
  let rounds = 0;
  let last: TimestampDatabaseReport[] = [];
  for (;;) {
    throwIfShuttingDown(signal);
    const reports: TimestampDatabaseReport[] = [];
    for (const pair of pairs) reports.push(await roundOfDatabase(o, scope, state, pair, signal, progress, warn));
    rounds++;
    last = reports;
    if (!o.intervalSeconds) break;
    progress({ kind: 'log', level: 'info', message: `round ${rounds} done; next in ${o.intervalSeconds}s` });
    await sleep(o.intervalSeconds * 1000, undefined, { signal }).catch(() => {});
  }
  const notes = o.detectDeletes ? [] : ['deletes are not tracked: rows deleted on the source stay on the target until a round with --detect-deletes'];
  if (last.some((d) => d.tables.some((t) => t.mode === 'compared'))) notes.push('tables without the timestamp column were compared chunk by chunk and only differing rows rewritten');
  return { command: 'sync', method: 'timestamp', stateDir: o.stateDir, rounds, databases: last, notes, warnings, seconds: (performance.now() - started) / 1000 };
}

interface Clients {
  source: pg.Client;
  target: pg.Client;
  writer: pg.Client;
}

async function openClients(pair: ReplicationPair): Promise<Clients> {
  const opened: pg.Client[] = [];
  try {
    // The source transaction stays open for the whole round.
    const source = await connect(pair.sourceConn, { label: 'the source', settings: { ...ROW_TEXT_SETTINGS, idle_in_transaction_session_timeout: '0', statement_timeout: '0' } });
    opened.push(source);
    const target = await connect(pair.targetConn, { label: 'the target', settings: { ...ROW_TEXT_SETTINGS } });
    opened.push(target);
    const writer = await connect(pair.targetConn, { label: 'the target', settings: { ...ROW_TEXT_SETTINGS } });
    opened.push(writer);
    try {
      await writer.query("SET session_replication_role = 'replica'");
    } catch (err) {
      throw new UsageError(`the target role cannot SET session_replication_role = replica: ${(err as Error).message}`, {
        hint: 'connect to the target as a superuser, or (PostgreSQL 15+) GRANT SET ON PARAMETER session_replication_role TO <the target role>',
      });
    }
    return { source, target, writer };
  } catch (err) {
    await Promise.all(opened.map((c) => c.end().catch(() => {})));
    throw err;
  }
}

async function closeClients(c: Clients): Promise<void> {
  await Promise.all([c.source, c.target, c.writer].map((x) => x.end().catch(() => {})));
}

async function planPair(c: Clients, o: TimestampSyncOptions, scope: ScopeSpec, state: RunState | undefined, pair: ReplicationPair): Promise<TsTable[]> {
  const resolved = await resolveTables(c.source, pair.sourceDatabase, rulesFor(scope, pair.sourceDatabase), NO_SIZES);
  const targetTables = await listTables(c.target, NO_SIZES);
  const tables = planTables(pair.sourceDatabase, resolved.tables, targetTables, state?.databases[pair.sourceDatabase]?.filters ?? {}, o.columns);
  for (const t of tables) t.uniques = await readUniques(c.writer, t);
  return tables;
}

async function roundOfDatabase(
  o: TimestampSyncOptions, scope: ScopeSpec, state: RunState | undefined, pair: ReplicationPair, signal: AbortSignal, progress: ProgressSink,
  warn: (m: string) => void,
): Promise<TimestampDatabaseReport> {
  const t0 = performance.now();
  const id = `sync/${pair.sourceDatabase}`;
  progress({ kind: 'start', id, title: `database ${pair.sourceDatabase} → ${pair.targetDatabase}: timestamp round` });
  const c = await openClients(pair);
  try {
    const { rows } = await c.writer.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(${ROUND_LOCK}) AS ok`);
    if (!rows[0]!.ok) {
      throw new UsageError(`another timestamp round is running on target database "${pair.targetDatabase}"`, { hint: 'wait for it to finish (one round at a time per target database)' });
    }
    await refuseFenced(c.source, pair, !!o.finalRound);
    const tables = await planPair(c, o, scope, state, pair);
    const marks = new Map((await readMarks(c.writer)).map((m) => [`${m.schema}\u0000${m.name}`, m]));
    for (const t of tables) {
      if (!marks.has(`${t.schema}\u0000${t.name}`) && t.timestamp) warn(`${displayName(t.schema, t.name)} has no mark yet (not copied by init --method timestamp): every row is read this round`);
    }
    const bound = await readLowerBound(c.source, o.overlapSeconds);
    if (bound.standby) {
      const noXmin = tables.filter((t) => t.timestamp && marks.has(`${t.schema}\u0000${t.name}`) && marks.get(`${t.schema}\u0000${t.name}`)!.xmin === null);
      if (noXmin.length) warn(`the source is a standby and ${noXmin.length} table(s) have a mark without a transaction ID (state of an older pgferry): every row of them is read this round`);
    }
    const round = await startRound(c.writer, bound.bound, o.detectDeletes);
    await c.source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // The snapshot is taken by the first statement: now, after the bound was read.
    await c.source.query('SELECT 1');
    const sides: Sides = { ...c, batchSize: o.batchSize, signal };
    const reports: TimestampTableReport[] = [];
    for (const t of tables) {
      throwIfShuttingDown(signal);
      const m = marks.get(`${t.schema}\u0000${t.name}`);
      const from: ReadFrom = { mark: m?.mark ?? null, xmin: m?.xmin ?? null, standby: bound.standby, markFromStandby: m?.standby ?? false };
      reports.push(await roundOfTable(sides, t, from, o.detectDeletes, { mark: bound.bound, xmin: bound.xmin, standby: bound.standby }, round, id, progress));
    }
    await c.source.query('COMMIT');
    const upserted = reports.reduce((n, t) => n + t.upserted, 0);
    const deleted = reports.reduce((n, t) => n + t.deleted, 0);
    // Sequences read after the rows: never behind a value those rows used (and never lowered on the target).
    const sequencesMoved = (await syncSequences({ source: pair.sourceConn, target: pair.targetConn })).filter((q) => q.action === 'set').length;
    await finishRound(c.writer, round, upserted, deleted);
    progress({ kind: 'end', id, status: 'ok', detail: `round ${round}: ${upserted} rows upserted, ${o.detectDeletes ? `${deleted} deleted` : 'deletes not tracked'}, ${sequencesMoved} sequences moved` });
    return {
      sourceDatabase: pair.sourceDatabase, targetDatabase: pair.targetDatabase, round, nextMark: bound.bound, oldestOpenTransaction: bound.oldestOpen,
      deletesTracked: o.detectDeletes, upserted, deleted, sequencesMoved, tables: reports, seconds: (performance.now() - t0) / 1000,
    };
  } catch (err) {
    progress({ kind: 'end', id, status: 'fail', detail: (err as Error).message.split('\n')[0] });
    if (err instanceof UsageError || err instanceof OperationError || sqlstate(err) === undefined) throw err;
    if (sqlstate(err) === '40001' && /conflict with recovery/i.test((err as Error).message)) {
      // A standby cancels a snapshot that replay would invalidate (rows vacuumed away on the primary).
      throw new OperationError(`a timestamp round of "${pair.sourceDatabase}": the standby cancelled the round's snapshot: ${(err as Error).message}`, {
        hint: 'on the standby: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); (or raise max_standby_streaming_delay), then run the round again (unfinished tables kept their marks)',
        cause: err,
      });
    }
    throw operationError(err, `a timestamp round of "${pair.sourceDatabase}"`);
  } finally {
    await closeClients(c);
  }
}

/** After a cutover the target is the primary: a round would overwrite its writes with the old source's rows. */
async function refuseFenced(source: pg.Client, pair: ReplicationPair, finalRound: boolean): Promise<void> {
  if (finalRound) return;
  const { rows } = await source.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [FENCE_SCHEMA]);
  if (!rows.length) return;
  throw new UsageError(`source database "${pair.sourceDatabase}" is fenced by pgferry cutover: a round would overwrite writes made on the target since`, {
    hint: 'after the hand-over the target is the primary (pgferry cleanup removes the round state); before it, pgferry cutover continues or pgferry cutover --abort lifts the fence',
  });
}

/**
 * cutover's final round (shared/final-apply.ts): one round with delete
 * detection over every pair. The fence guarantees no writer is left, so the
 * round's lower bound loses nothing and its result is exact.
 */
export function finalTimestampRound(columns: TimestampColumns, batchSize: number = TIMESTAMP_DEFAULTS.batchSize): FinalRound {
  return async (r) => {
    const report = await runTimestampSync({
      ...r, columns, batchSize, detectDeletes: true, overlapSeconds: TIMESTAMP_DEFAULTS.overlapSeconds, intervalSeconds: 0, finalRound: true,
    });
    return { databases: report.databases.map((d) => ({ sourceDatabase: d.sourceDatabase, round: d.round, upserted: d.upserted, deleted: d.deleted })) };
  };
}

async function roundOfTable(
  s: Sides, t: TsTable, from: ReadFrom, detectDeletes: boolean, nextMark: InitMark, round: number, parent: string, progress: ProgressSink,
): Promise<TimestampTableReport> {
  const id = `${parent}/${t.schema}.${t.name}`;
  progress({ kind: 'start', id, title: displayName(t.schema, t.name), parent });
  const r: TimestampTableReport = {
    schema: t.schema, name: t.name, mode: t.timestamp ? 'timestamp' : 'compared', column: t.timestamp?.name ?? null, reason: t.compareReason,
    from: t.timestamp ? from.mark : null, upserted: 0, deleted: 0, chunks: 0,
  };
  if (t.timestamp) {
    r.upserted = await upsertChanged(s, t, from);
    if (detectDeletes) {
      const d = await compareAndFix(s, t, true);
      Object.assign(r, { chunks: d.chunks, deleted: d.deleted, upserted: r.upserted + d.upserted });
    }
  } else {
    const d = await compareAndFix(s, t, false);
    Object.assign(r, { chunks: d.chunks, deleted: d.deleted, upserted: d.upserted });
  }
  await advanceMark(s.writer, t, { ...nextMark, mode: r.mode, column: r.column, round, upserted: r.upserted, deleted: r.deleted });
  progress({ kind: 'end', id, status: 'ok', detail: `${r.upserted} upserted${r.deleted ? `, ${r.deleted} deleted` : ''}${r.mode === 'compared' ? ` (compared: ${r.reason})` : ''}` });
  return r;
}
