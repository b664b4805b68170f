/**
 * The data path of `init`: rows move as COPY byte streams from the source
 * (read under the exported snapshot) into the target, never parsed, with
 * backpressure between the two connections (pg-copy-streams + stream.pipeline;
 * the CopyData frames are relayed as they are, see "The relay" below).
 *
 * One CopySession per worker: a source connection inside a REPEATABLE READ
 * transaction that imported the snapshot, and a target connection on which
 * every part is one transaction. An unsplit relation is loaded with TRUNCATE +
 * COPY … FREEZE in that one transaction (no later freezing vacuum; a rerun
 * simply replaces it); the relations of a split table are truncated once
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
 */
import { Transform, type ReadableOptions, type WritableOptions } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo, type CopyStreamQuery, type CopyToStreamQuery } from 'pg-copy-streams';
import type { ScopeTable } from '../../config/scope.js';
import { InterruptedError, OperationError, PgferryError } from '../../errors.js';
import type { ProgressSink } from '../../cli/render/progress.js';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isRetryable, operationError, sqlstate } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdentList, quoteLiteral } from '../../postgres/identifiers.js';
import { chooseFormat, loadTypeInfo, type CopyFormat } from './format.js';
import {
  DEFAULT_MAX_PARTS, DEFAULT_SPLIT_THRESHOLD_BYTES, effectiveSplitThreshold, planParts, rangePredicate, relationsOf, type PartRange, type RelationName,
  type TablePart,
} from './parts.js';
import { runPool } from './pool.js';
import { formatBytes } from '../../units.js';
import { maskedSelectList } from '../shared/masking.js';

export interface CopySession {
  /** In a REPEATABLE READ transaction that ran SET TRANSACTION SNAPSHOT. */
  source: pg.Client;
  target: pg.Client;
}

export interface OpenedCopySession extends CopySession {
  /** True once a failure killed the connections; open a new session. */
  readonly broken: boolean;
  /** End the snapshot transaction and close both connections (kills them when broken). */
  close(): Promise<void>;
}

export interface CopyPartOptions {
  /** Column names to copy (generated columns already left out); empty = every column. */
  columns: string[];
  /** SQL predicate (constants only), applied on the source side. */
  filter?: string | undefined;
  /** SELECT list that masks columns (data rules), in `columns` order; the source then always runs COPY (SELECT …). */
  select?: string | undefined;
  format: CopyFormat;
  /** Unsplit relation: TRUNCATE + COPY … FREEZE in one target transaction. */
  truncateAndFreeze: boolean;
  signal?: AbortSignal | undefined;
  /** Called with the size of every chunk relayed (for progress). */
  onBytes?: ((bytes: number) => void) | undefined;
}

export interface PartResult {
  rows: number;
  /** Bytes relayed: the COPY stream as CopyData frames (row data plus 5 bytes per row). */
  bytes: number;
  ms: number;
}

export const COPY_APPLICATION_NAME = 'pgferry-copy';

/** Stream buffer per hop; memory per worker stays a small multiple of it. */
const HIGH_WATER_MARK = 256 * 1024;

const COMMON_SETTINGS: Record<string, string> = {
  ...CANONICAL_SETTINGS,
  lc_monetary: 'C',
  statement_timeout: '0',
  idle_in_transaction_session_timeout: '0',
};

// ---------------------------------------------------------------------------
// The relay: CopyData frames pass from source to target as they are.
//
// The server sends one CopyData message per row, and a client sends the same
// message type to the server. pg-copy-streams' copyTo strips each message's
// header into a Buffer object of its own and copyFrom frames the result again;
// on narrow rows that costs more CPU than pg_dump and pg_restore spend together
// (measured: ~0.35 µs per row). Subclasses of both streams keep everything
// else of the library (attaching to pg's connection, handing the tail and
// errors back to pg, row counts, backpressure, CopyDone/CopyFail) but relay
// the frames untouched: the reader walks message headers and passes runs of
// complete-or-continuing CopyData frames on as slices of the socket chunk,
// dropping only what is not data (notices, parameter status); the writer
// writes those bytes without adding a header. Rows are never parsed. A frame
// cut by a failure is never completed: every failure kills both connections,
// so the target's transaction cannot commit.

const MSG_COPY_DATA = 0x64; // d
const MSG_ERROR_RESPONSE = 0x45; // E
/** Messages that may arrive during COPY OUT without ending it. */
const MSG_CONTINUES = new Set([0x48 /* H CopyOutResponse */, MSG_COPY_DATA, 0x53 /* S ParameterStatus */, 0x4e /* N NoticeResponse */, 0x41 /* A NotificationResponse */]);

export interface CopyOutStep {
  /** CopyData frames (headers included) of this chunk, possibly cut at its end, or null. */
  frames: Buffer | null;
  /** Bytes for pg when done or failed: everything from the ErrorResponse, or after the end of the copy. */
  rest: Buffer;
  /** The copy ended (CopyDone or any other terminating message was consumed). */
  done: boolean;
  /** An ErrorResponse starts at the beginning of `rest`. */
  error: boolean;
}

/** Incremental reader of the backend's COPY OUT messages. Feed it raw socket chunks in order. */
export class CopyOutRelay {
  private code = 0;
  private unread = 0;
  private inMessage = false;
  private pending: Buffer | null = null;

  feed(chunk: Buffer): CopyOutStep {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    const end = buf.length;
    const spans: Buffer[] = [];
    let spanStart = -1;
    const closeSpan = (at: number) => {
      if (spanStart >= 0 && at > spanStart) spans.push(buf.subarray(spanStart, at));
      spanStart = -1;
    };
    let pos = 0;
    let done = false;
    let error = false;
    for (;;) {
      if (this.inMessage) {
        const n = Math.min(this.unread, end - pos);
        if (this.code === MSG_COPY_DATA) {
          if (spanStart < 0) spanStart = pos;
        } else {
          closeSpan(pos);
        }
        pos += n;
        this.unread -= n;
        if (this.unread > 0) break;
        this.inMessage = false;
        if (!MSG_CONTINUES.has(this.code)) {
          done = true;
          break;
        }
      }
      if (end - pos < 5) break;
      const code = buf[pos]!;
      if (code !== MSG_COPY_DATA) closeSpan(pos);
      if (code === MSG_ERROR_RESPONSE) {
        error = true;
        break;
      }
      if (code === MSG_COPY_DATA && spanStart < 0) spanStart = pos;
      this.code = code;
      this.unread = buf.readUInt32BE(pos + 1) - 4;
      this.inMessage = true;
      pos += 5;
    }
    closeSpan(pos);
    const rest = buf.subarray(pos);
    // A header split across chunks waits for the next chunk; anything else left over is for pg.
    if (!done && !error && rest.length) this.pending = Buffer.from(rest);
    const frames = spans.length === 0 ? null : spans.length === 1 ? spans[0]! : Buffer.concat(spans);
    return { frames, rest: done || error ? rest : Buffer.alloc(0), done, error };
  }
}

/** What the library's streams do internally that the subclasses rely on (pg-copy-streams 7.0). */
interface CopyToInternals {
  _buffer: { size: number; push(b: Buffer): void };
  _detach(): void;
  _cleanup(): void;
}
interface CopyFromInternals {
  connection: { stream: { write(b: Buffer): boolean } };
}

const CopyToBase = (copyTo('SELECT 1') as CopyToStreamQuery).constructor as new (text: string, options?: ReadableOptions) => CopyToStreamQuery;
const CopyFromBase = (copyFrom('SELECT 1') as CopyStreamQuery).constructor as new (text: string, options?: WritableOptions) => CopyStreamQuery;

class FrameReader extends CopyToBase {
  private readonly relay = new CopyOutRelay();

  /** Replaces the library's per-message parser; same contract (returns whether to keep reading). */
  _parse(chunk: Buffer): boolean | undefined {
    const self = this as unknown as CopyToInternals;
    const step = this.relay.feed(chunk);
    if (step.error) {
      // Hand the ErrorResponse (and what follows) back to pg, which reports it through handleError.
      self._buffer.push(step.rest);
      self._detach();
      return undefined;
    }
    const drained = step.frames ? this.push(step.frames) : true;
    if (step.done) {
      self._buffer.push(step.rest);
      self._detach();
      this.push(null);
      self._cleanup();
    }
    return drained;
  }
}

class FrameWriter extends CopyFromBase {
  /** The bytes are CopyData frames already: write them as they are. */
  flushChunk(chunk: Buffer): boolean {
    return (this as unknown as CopyFromInternals).connection.stream.write(chunk);
  }
}

/** COPY … TO STDOUT as a stream of CopyData frames (for copyInFrames only). */
export function copyOutFrames(sql: string, options?: ReadableOptions): CopyToStreamQuery {
  return new FrameReader(sql, options);
}

/** COPY … FROM STDIN fed with CopyData frames from copyOutFrames. */
export function copyInFrames(sql: string, options?: WritableOptions): CopyStreamQuery {
  return new FrameWriter(sql, options);
}

const brokenSessions = new WeakSet<CopySession>();
/** Errors after which the part must not be retried (a COMMIT whose outcome is unknown). */
const notRetryable = new WeakSet<object>();

function assertSnapshotId(snapshot: string): void {
  if (!/^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$/i.test(snapshot)) {
    throw new OperationError(`invalid snapshot id "${snapshot}"`);
  }
}

/** Close a client's socket now: the server aborts its open transaction when it notices. */
function killClient(client: pg.Client): void {
  try {
    client.connection.stream.destroy();
  } catch {
    // already gone
  }
}

function killSession(s: CopySession): void {
  brokenSessions.add(s);
  killClient(s.source);
  killClient(s.target);
}

export function isSessionBroken(s: CopySession): boolean {
  return brokenSessions.has(s);
}

/**
 * Open a worker's connection pair and import the snapshot on the source.
 * The exporting transaction (or replication connection) must still be open.
 */
export async function openCopySession(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
  snapshot: string,
): Promise<OpenedCopySession> {
  assertSnapshotId(snapshot);
  const src = await connect(source, {
    label: 'the source',
    applicationName: COPY_APPLICATION_NAME,
    settings: { ...COMMON_SETTINGS, row_security: 'off' },
  });
  let tgt: pg.Client | undefined;
  try {
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
    } catch (err) {
      throw operationError(err, `cannot import snapshot ${snapshot} on the source (the connection that exported it must stay open)`);
    }
    tgt = await connect(target, { label: 'the target', applicationName: COPY_APPLICATION_NAME, settings: COMMON_SETTINGS });
  } catch (err) {
    await src.end().catch(() => {});
    throw err;
  }
  const session: OpenedCopySession = {
    source: src,
    target: tgt,
    get broken() {
      return brokenSessions.has(session);
    },
    async close() {
      if (brokenSessions.has(session)) {
        killSession(session);
      } else {
        await src.query('COMMIT').catch(() => killClient(src));
      }
      await Promise.all([src.end().catch(() => {}), tgt.end().catch(() => {})]);
    },
  };
  return session;
}

function columnList(columns: readonly string[]): string {
  return columns.length ? ` (${quoteIdentList(columns)})` : '';
}

/** The source statement: plain COPY when there is neither filter nor range, else COPY (SELECT … FROM ONLY …). */
export function copyOutSql(relation: RelationName, columns: readonly string[], format: CopyFormat, filter?: string, range: PartRange = null, select?: string): string {
  const rel = qualifiedName(relation.schema, relation.name);
  // The newline ends a trailing "--" comment in the filter, which would otherwise swallow the range.
  const conds = [filter?.trim() ? `(${filter.trim()}\n)` : null, rangePredicate(range)].filter((c): c is string => !!c);
  if (!conds.length && !select) return `COPY ${rel}${columnList(columns)} TO STDOUT (FORMAT ${format})`;
  const list = select ?? (columns.length ? quoteIdentList(columns) : '');
  return `COPY (SELECT ${list} FROM ONLY ${rel}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}) TO STDOUT (FORMAT ${format})`;
}

/** The target statement. */
export function copyInSql(relation: RelationName, columns: readonly string[], format: CopyFormat, freeze: boolean): string {
  const rel = qualifiedName(relation.schema, relation.name);
  return `COPY ${rel}${columnList(columns)} FROM STDIN (FORMAT ${format}${freeze ? ', FREEZE' : ''})`;
}

export function describePart(part: Pick<TablePart, 'relation' | 'index' | 'count'>): string {
  const rel = displayName(part.relation.schema, part.relation.name);
  return part.count > 1 ? `${rel} part ${part.index + 1}/${part.count}` : rel;
}

function interrupted(signal: AbortSignal | undefined): InterruptedError {
  return signal?.reason instanceof InterruptedError ? signal.reason : new InterruptedError();
}

/** Copy one part: source rows under the session's snapshot → one target transaction. */
export async function copyPart(s: CopySession, part: TablePart, o: CopyPartOptions): Promise<PartResult> {
  if (o.signal?.aborted) throw interrupted(o.signal);
  if (brokenSessions.has(s)) throw new OperationError(`copying ${describePart(part)}: the copy session is broken; open a new one`);
  const started = performance.now();
  const rel = qualifiedName(part.relation.schema, part.relation.name);
  let side: 'source' | 'target' = 'target';
  let committing = false;
  const onAbort = () => killSession(s);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await s.target.query('BEGIN');
    if (o.truncateAndFreeze) await s.target.query(`TRUNCATE ONLY ${rel}`);
    const sink = s.target.query(copyInFrames(copyInSql(part.relation, o.columns, o.format, o.truncateAndFreeze), { highWaterMark: HIGH_WATER_MARK }));
    const src = s.source.query(copyOutFrames(copyOutSql(part.relation, o.columns, o.format, o.filter, part.range, o.select), { highWaterMark: HIGH_WATER_MARK }));
    const srcDone = readyForQuery(s.source, src);
    let firstFailure: 'source' | 'target' | undefined;
    // Persistent listeners: a stream may report the connection's death after the pipeline settled.
    src.on('error', () => (firstFailure ??= 'source'));
    sink.on('error', () => (firstFailure ??= 'target'));
    let bytes = 0;
    const counter = new Transform({
      highWaterMark: HIGH_WATER_MARK,
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        o.onBytes?.(chunk.length);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(src, counter, sink);
    } catch (err) {
      side = firstFailure ?? 'target';
      throw err;
    }
    // The source's CommandComplete (its row count) may trail the last data byte.
    side = 'source';
    await srcDone;
    side = 'target';
    if (src.rowCount !== sink.rowCount) {
      throw new OperationError(`the source sent ${src.rowCount} rows but the target received ${sink.rowCount}`);
    }
    committing = true;
    await s.target.query('COMMIT');
    return { rows: sink.rowCount, bytes, ms: performance.now() - started };
  } catch (err) {
    killSession(s);
    if (o.signal?.aborted) throw interrupted(o.signal);
    const code = sqlstate(err);
    const where = `copying ${describePart(part)}${describeRange(part.range)} (${side}${code ? `, SQLSTATE ${code}` : ''})`;
    const wrapped = err instanceof PgferryError ? new OperationError(`${where}: ${err.message}`, { cause: err }) : operationError(err, where);
    if (committing) notRetryable.add(wrapped);
    throw wrapped;
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Resolves when the server is ready for the next query after `query` (its
 * CommandComplete has arrived); rejects if the connection ends first.
 */
function readyForQuery(client: pg.Client, query: object): Promise<void> {
  const q = query as { handleReadyForQuery: (con: unknown) => void };
  const p = new Promise<void>((resolve, reject) => {
    const onEnd = () => reject(new Error('Connection terminated unexpectedly'));
    client.once('end', onEnd);
    const original = q.handleReadyForQuery.bind(query);
    q.handleReadyForQuery = (con) => {
      client.removeListener('end', onEnd);
      original(con);
      resolve();
    };
  });
  p.catch(() => {}); // awaited only on the success path
  return p;
}

function describeRange(range: PartRange): string {
  if (!range) return '';
  if (range.kind === 'ctid') return ` [pages ${range.fromPage}…${range.toPage ?? 'end'}]`;
  return ` [${range.column} ${range.from ?? '-∞'}…${range.to ?? '∞'}]`;
}

/** Whether a failed part may be tried again on a fresh session under the same snapshot. */
export function partRetryable(err: unknown): boolean {
  if (typeof err === 'object' && err !== null && notRetryable.has(err)) return false;
  const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
  return isRetryable(cause);
}

// ---------------------------------------------------------------------------
// Planning and running many tables

export interface CopyTableInput {
  table: ScopeTable;
  /** The predicate actually applied (table filter, or a time filter with its cutoff as a constant). */
  filter?: string | undefined;
}

export interface CopyPlanOptions {
  sourceMajor: number;
  targetMajor: number;
  splitThresholdBytes?: number | undefined;
  maxParts?: number | undefined;
  /** Workers that will copy: a table bigger than one worker's share is split too (see effectiveSplitThreshold). */
  jobs?: number | undefined;
}

export interface TableCopyPlan {
  table: ScopeTable;
  /** "schema.table", the key used in state and reports. */
  key: string;
  filter?: string | undefined;
  columns: string[];
  /** Masking SELECT list (data rules), or undefined. */
  select?: string | undefined;
  format: CopyFormat;
  parts: TablePart[];
  /** Relations of this table cut into more than one part (truncated up front, no FREEZE). */
  splitRelations: RelationName[];
  estimatedBytes: number;
}

export function tableKey(t: { schema: string; name: string }): string {
  return `${t.schema}.${t.name}`;
}

/**
 * Plan the copy of the given tables on the source (ideally inside the
 * snapshot): columns, format and parts. Schema-only tables are left out.
 */
export async function planCopy(client: pg.Client, inputs: readonly CopyTableInput[], opts: CopyPlanOptions): Promise<TableCopyPlan[]> {
  const copied = inputs.filter((i) => !i.table.schemaOnly);
  const types = await loadTypeInfo(client, copied.flatMap((i) => i.table.columns.map((c) => c.typeOid)));
  const totalBytes = copied.reduce((n, i) => n + Math.max(0, i.table.bytes), 0);
  const partOpts = {
    splitThresholdBytes: effectiveSplitThreshold(opts.splitThresholdBytes ?? DEFAULT_SPLIT_THRESHOLD_BYTES, totalBytes, opts.jobs),
    maxParts: opts.maxParts ?? DEFAULT_MAX_PARTS,
    sourceMajor: opts.sourceMajor,
  };
  const plans: TableCopyPlan[] = [];
  for (const input of copied) {
    const t = input.table;
    const cols = t.columns.filter((c) => !c.generated);
    const parts = await planParts(client, t, partOpts);
    const splitRelations = relationsOf(t).filter((r) => parts.some((p) => p.count > 1 && p.relation.schema === r.schema && p.relation.name === r.name));
    plans.push({
      table: t,
      key: tableKey(t),
      filter: input.filter,
      columns: cols.map((c) => c.name),
      select: maskedSelectList(cols.map((c) => c.name), t.masking),
      format: chooseFormat(cols, types, opts.sourceMajor, opts.targetMajor),
      parts,
      splitRelations,
      estimatedBytes: parts.reduce((n, p) => n + p.estimatedBytes, 0),
    });
  }
  return plans;
}

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

/**
 * Copy whole tables: plan (unless given), truncate split relations, then run
 * every part on `jobs` workers, largest first, one session per worker.
 */
export async function copyTables(opts: CopyTablesOptions): Promise<CopyTablesReport> {
  const started = performance.now();
  const progress = opts.progress ?? (() => {});
  const pid = opts.progressId ?? 'copy';
  const retries = opts.retries ?? 2;
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
  const runs = new Map<string, TableRun>();
  try {
    const first = await sessionFor(0);
    const plans = opts.plan ?? (await planCopy(first.source, opts.tables, opts));
    const split = plans.flatMap((p) => p.splitRelations);
    if (split.length) {
      // Parts of a split relation commit separately: empty it once, before any of them.
      const list = split.map((r) => qualifiedName(r.schema, r.name)).join(', ');
      try {
        await first.target.query(`TRUNCATE ONLY ${list}`);
      } catch (err) {
        throw operationError(err, `emptying split tables on the target before copying (${split.map((r) => displayName(r.schema, r.name)).join(', ')})`);
      }
    }
    for (const plan of plans) runs.set(plan.key, { plan, remaining: plan.parts.length, bytes: 0, rows: 0, lastUpdate: 0, parts: [] });
    const items = plans
      .flatMap((plan) => plan.parts.map((part) => ({ plan, part })))
      .sort((a, b) => b.part.estimatedBytes - a.part.estimatedBytes);

    const finishTable = async (run: TableRun) => {
      const { plan } = run;
      const report: TableCopyReport = {
        schema: plan.table.schema, name: plan.table.name, key: plan.key, format: plan.format, rows: run.rows, bytes: run.bytes,
        ms: performance.now() - (run.startedAt ?? performance.now()), parts: run.parts,
      };
      progress({ kind: 'end', id: `${pid}/${plan.key}`, status: 'ok', detail: `${run.rows} rows, ${formatBytes(run.bytes)}` });
      await opts.onTableDone?.(plan, report);
      return report;
    };
    const reports: TableCopyReport[] = [];
    // Tables with nothing to copy (a partitioned table without leaves) are done at once.
    for (const run of runs.values()) {
      if (run.remaining === 0) {
        run.startedAt = performance.now();
        progress({ kind: 'start', id: `${pid}/${run.plan.key}`, title: displayName(run.plan.table.schema, run.plan.table.name), parent: pid });
        reports.push(await finishTable(run));
      }
    }

    await runPool(
      items,
      opts.jobs,
      async ({ plan, part }, slot, signal) => {
        const run = runs.get(plan.key)!;
        if (run.startedAt === undefined) {
          run.startedAt = performance.now();
          progress({ kind: 'start', id: `${pid}/${plan.key}`, title: displayName(plan.table.schema, plan.table.name), parent: pid });
        }
        let attemptBytes = 0;
        const onBytes = (n: number) => {
          attemptBytes += n;
          run.bytes += n;
          const now = performance.now();
          if (now - run.lastUpdate < 250) return;
          run.lastUpdate = now;
          progress({ kind: 'update', id: `${pid}/${plan.key}`, detail: rateDetail(run, now), done: run.bytes, total: plan.estimatedBytes, unit: 'bytes' });
        };
        const truncateAndFreeze = !plan.splitRelations.some((r) => r.schema === part.relation.schema && r.name === part.relation.name);
        let result: PartResult | undefined;
        for (let attempt = 0; !result; attempt++) {
          const session = await sessionFor(slot);
          attemptBytes = 0;
          try {
            result = await copyPart(session, part, { columns: plan.columns, filter: plan.filter, select: plan.select, format: plan.format, truncateAndFreeze, signal, onBytes });
          } catch (err) {
            run.bytes -= attemptBytes;
            if (signal.aborted || attempt >= retries || !partRetryable(err)) throw err;
            progress({ kind: 'log', level: 'warn', message: `${(err as Error).message} — retrying (${attempt + 1}/${retries})` });
            await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
          }
        }
        run.rows += result.rows;
        run.parts.push({ id: part.id, ...result });
        await opts.onPartDone?.(plan, part, result);
        if (--run.remaining === 0) reports.push(await finishTable(run));
      },
      opts.signal,
    );
    const order = new Map(plans.map((p, i) => [p.key, i]));
    reports.sort((a, b) => order.get(a.key)! - order.get(b.key)!);
    return {
      tables: reports,
      rows: reports.reduce((n, r) => n + r.rows, 0),
      bytes: reports.reduce((n, r) => n + r.bytes, 0),
      ms: performance.now() - started,
    };
  } catch (err) {
    for (const run of runs.values()) {
      if (run.startedAt !== undefined && run.remaining > 0) {
        progress({ kind: 'end', id: `${pid}/${run.plan.key}`, status: 'fail', detail: err instanceof InterruptedError ? 'interrupted' : 'failed' });
      }
    }
    for (const s of sessions) if (s) killSession(s);
    throw err;
  } finally {
    await Promise.all(sessions.map((s) => s?.close()));
  }
}

function rateDetail(run: TableRun, now: number): string {
  const secs = (now - (run.startedAt ?? now)) / 1000;
  const rate = secs > 0 ? run.bytes / secs : 0;
  const total = run.plan.estimatedBytes;
  let detail = `${formatBytes(run.bytes)}${total ? ` of ~${formatBytes(total)}` : ''}, ${formatBytes(rate)}/s`;
  if (rate > 0 && total > run.bytes) detail += `, ETA ${Math.ceil((total - run.bytes) / rate)}s`;
  return detail;
}
