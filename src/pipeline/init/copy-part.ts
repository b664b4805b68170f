/**
 * One part's copy: source rows under the session's snapshot → one target
 * transaction, relayed as CopyData frames (copy-frames.ts), and the retries of
 * a part on a fresh session after a retryable failure.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import type { CopyToStreamQuery } from 'pg-copy-streams';
import { InterruptedError, OperationError, PgferryError } from '../../errors.js';
import { isRetryable, operationError, sqlstate } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdentList } from '../../postgres/identifiers.js';
import type { CopyFormat } from './format.js';
import { rangePredicate, type PartRange, type RelationName, type TablePart } from './parts.js';
import { copyInFrames, copyOutFrames } from './copy-frames.js';
import { isSessionBroken, killSession, type CopySession } from './copy-session.js';
import type { ReadAheadPart } from './read-ahead.js';

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
  /** The part's rows, read ahead by the same statement under the same snapshot (read-ahead.ts): written instead of read. */
  readAhead?: ReadAheadPart | undefined;
}

export interface PartResult {
  rows: number;
  /** Bytes relayed: the COPY stream as CopyData frames (row data plus 5 bytes per row). */
  bytes: number;
  ms: number;
}

/** Stream buffer per hop; memory per worker stays a small multiple of it. */
const HIGH_WATER_MARK = 256 * 1024;

/** Errors after which the part must not be retried (a COMMIT whose outcome is unknown). */
const notRetryable = new WeakSet<object>();

function columnList(columns: readonly string[]): string {
  return columns.length ? ` (${quoteIdentList(columns)})` : '';
}

/**
 * The source statement: plain COPY when there is neither filter nor range, else COPY (SELECT … FROM ONLY …).
 * `limit` (the rate sample before the copy) reads only the first rows.
 */
export function copyOutSql(relation: RelationName, columns: readonly string[], format: CopyFormat, filter?: string, range: PartRange = null, select?: string, limit?: number): string {
  const rel = qualifiedName(relation.schema, relation.name);
  // The newline ends a trailing "--" comment in the filter, which would otherwise swallow the range.
  const conds = [filter?.trim() ? `(${filter.trim()}\n)` : null, rangePredicate(range)].filter((c): c is string => !!c);
  if (!conds.length && !select && limit === undefined) return `COPY ${rel}${columnList(columns)} TO STDOUT (FORMAT ${format})`;
  const list = select ?? (columns.length ? quoteIdentList(columns) : '');
  const limitClause = limit === undefined ? '' : ` LIMIT ${Math.max(0, Math.floor(limit))}`;
  return `COPY (SELECT ${list} FROM ONLY ${rel}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}${limitClause}) TO STDOUT (FORMAT ${format})`;
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

/** One part of a group copied in one target transaction (copyParts). */
export interface GroupMember {
  part: TablePart;
  o: CopyPartOptions;
}

/** Copy one part: source rows under the session's snapshot → one target transaction. */
export async function copyPart(s: CopySession, part: TablePart, o: CopyPartOptions): Promise<PartResult> {
  return (await copyParts(s, [{ part, o }]))[0]!;
}

/**
 * Copy parts one after the other into one target transaction, committed once
 * after the last: a group of small tables then costs one BEGIN and one COMMIT
 * (with its WAL flush and, after TRUNCATE, its one pass over the buffer pool)
 * instead of one per table. Each truncateAndFreeze member is truncated in that
 * transaction, so COPY FREEZE still applies. Any failure rolls back the whole
 * group; nothing of it is recorded before the COMMIT returns.
 */
export async function copyParts(s: CopySession, members: readonly GroupMember[]): Promise<PartResult[]> {
  const signal = members[0]?.o.signal;
  if (!members.length) return [];
  if (signal?.aborted) throw interrupted(signal);
  let current = members[0]!.part;
  if (isSessionBroken(s)) throw new OperationError(`copying ${describePart(current)}: the copy session is broken; open a new one`);
  let side: 'source' | 'target' = 'target';
  let committing = false;
  const onAbort = () => killSession(s);
  signal?.addEventListener('abort', onAbort, { once: true });
  const done: { rows: number; bytes: number; started: number }[] = [];
  // The next member's source COPY is queued on the source session while this one's rows go to the target:
  // pg sends it as soon as the source is ready, so the source reads the next table while the target loads
  // this one (its rows wait in the socket until they are piped; nothing is buffered here).
  const reads: SourceRead[] = [];
  const readFor = (i: number): SourceRead | undefined => {
    const m = members[i];
    if (!m) return undefined;
    return (reads[i] ??= m.o.readAhead ? readAheadRead(m) : startSourceRead(s.source, m));
  };
  try {
    for (const [i, { part, o }] of members.entries()) {
      current = part;
      const rel = qualifiedName(part.relation.schema, part.relation.name);
      // BEGIN, TRUNCATE and COPY go as one simple query (one message, no round trip before the rows flow):
      // on a database of many small tables the round trips were a good part of each table's cost.
      // The copy stream takes its row count from the COPY's own CommandComplete only.
      const prelude = `${i === 0 ? 'BEGIN; ' : ''}${o.truncateAndFreeze ? `TRUNCATE ONLY ${rel}; ` : ''}`;
      const sink = s.target.query(copyInFrames(prelude + copyInSql(part.relation, o.columns, o.format, o.truncateAndFreeze), { highWaterMark: HIGH_WATER_MARK }));
      const read = readFor(i)!;
      readFor(i + 1);
      // A queued read may have failed before it was piped; then the source failed first.
      let firstFailure: 'source' | 'target' | undefined = read.failed ? 'source' : undefined;
      // Persistent listeners: a stream may report the connection's death after the pipeline settled.
      read.src.on('error', () => (firstFailure ??= 'source'));
      sink.on('error', () => (firstFailure ??= 'target'));
      side = 'target';
      try {
        await pipeline(read.src, sink);
      } catch (err) {
        side = firstFailure ?? 'target';
        throw err;
      }
      // The source's CommandComplete (its row count) may trail the last data byte.
      side = 'source';
      await read.done;
      side = 'target';
      if (read.src.rowCount !== sink.rowCount) {
        throw new OperationError(`the source sent ${read.src.rowCount} rows but the target received ${sink.rowCount}`);
      }
      done.push({ rows: sink.rowCount, bytes: read.bytes, started: read.started });
    }
    committing = true;
    await s.target.query('COMMIT');
    const end = performance.now();
    return done.map((d) => ({ rows: d.rows, bytes: d.bytes, ms: end - d.started }));
  } catch (err) {
    killSession(s);
    if (signal?.aborted) throw interrupted(signal);
    const code = sqlstate(err);
    const what = committing && members.length > 1 ? `${members.length} tables ending with ${describePart(current)}` : `${describePart(current)}${describeRange(current.range)}`;
    const where = `copying ${what} (${side}${code ? `, SQLSTATE ${code}` : ''})`;
    const wrapped = err instanceof PgferryError ? new OperationError(`${where}: ${err.message}`, { cause: err }) : operationError(err, where);
    if (committing) notRetryable.add(wrapped);
    throw wrapped;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** A member's source COPY, started (or queued on the session) before its target COPY. */
interface SourceRead {
  src: Readable & Pick<CopyToStreamQuery, 'rowCount'>;
  /** The source's ReadyForQuery after this COPY (its row count is known). */
  done: Promise<void>;
  /** The source stream failed (possibly before it was piped). */
  failed: boolean;
  readonly bytes: number;
  started: number;
}

function startSourceRead(source: pg.Client, { part, o }: GroupMember): SourceRead {
  const started = performance.now();
  let bytes = 0;
  const src = source.query(
    copyOutFrames(copyOutSql(part.relation, o.columns, o.format, o.filter, part.range, o.select), { highWaterMark: HIGH_WATER_MARK }, (n) => {
      bytes += n;
      o.onBytes?.(n);
    }),
  );
  const read: SourceRead = { src, done: readyForQuery(source, src), failed: false, started, get bytes() { return bytes; } };
  // Listened to from the start: a queued read may fail before it is piped (a killed session, an aborted transaction).
  src.on('error', () => (read.failed = true));
  return read;
}

/** A member read ahead: its frames from memory, counted for progress as they go. */
function readAheadRead({ o }: GroupMember): SourceRead {
  const p = o.readAhead!;
  const frames = p.frames;
  const src = Object.assign(
    Readable.from(
      (function* () {
        for (const f of frames) {
          o.onBytes?.(f.length);
          yield f;
        }
      })(),
    ),
    { rowCount: p.rows },
  );
  return { src, done: Promise.resolve(), failed: false, started: performance.now(), bytes: p.bytes };
}

/**
 * Resolves when the server is ready for the next query after `query` (its
 * CommandComplete has arrived); rejects if the connection ends first.
 */
export function readyForQuery(client: pg.Client, query: object): Promise<void> {
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

/**
 * Copy parts (copyParts: one target transaction), trying the whole group again on a fresh session (same
 * snapshot) after a retryable failure, up to `retries` times, with a growing pause. onFailedAttempt gets
 * the bytes each member had relayed (already passed to its onBytes), to take them back.
 */
export async function copyPartsWithRetries(
  session: () => Promise<CopySession>,
  members: readonly GroupMember[],
  retries: number,
  hooks: { onFailedAttempt: (bytesPerMember: number[]) => void; onRetry: (message: string) => void },
): Promise<PartResult[]> {
  const attemptBytes = members.map(() => 0);
  const counted = members.map((m, i) => ({
    part: m.part,
    o: {
      ...m.o,
      onBytes: (n: number) => {
        attemptBytes[i]! += n;
        m.o.onBytes?.(n);
      },
    },
  }));
  const signal = members[0]?.o.signal;
  for (let attempt = 0; ; attempt++) {
    const s = await session();
    attemptBytes.fill(0);
    try {
      return await copyParts(s, counted);
    } catch (err) {
      hooks.onFailedAttempt([...attemptBytes]);
      if (signal?.aborted || attempt >= retries || !partRetryable(err)) throw err;
      hooks.onRetry(`${(err as Error).message} — retrying (${attempt + 1}/${retries})`);
      await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
    }
  }
}
