/**
 * The relay: CopyData frames pass from source to target as they are.
 *
 * The server sends one CopyData message per row, and a client sends the same
 * message type to the server. pg-copy-streams' copyTo strips each message's
 * header into a Buffer object of its own and copyFrom frames the result again;
 * on narrow rows that costs more CPU than pg_dump and pg_restore spend together
 * (measured: ~0.35 µs per row). Subclasses of both streams keep everything
 * else of the library (attaching to pg's connection, handing the tail and
 * errors back to pg, row counts, backpressure, CopyDone/CopyFail) but relay
 * the frames untouched: the reader walks message headers and passes runs of
 * complete-or-continuing CopyData frames on as slices of the socket chunk,
 * dropping only what is not data (notices, parameter status); the writer
 * writes those bytes without adding a header. Rows are never parsed. A frame
 * cut by a failure is never completed: every failure kills both connections,
 * so the target's transaction cannot commit.
 */
import type { ReadableOptions, WritableOptions } from 'node:stream';
import { from as copyFrom, to as copyTo, type CopyStreamQuery, type CopyToStreamQuery } from 'pg-copy-streams';

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
        if (this.code !== MSG_COPY_DATA && !MSG_CONTINUES.has(this.code)) {
          done = true;
          break;
        }
      }
      // Whole CopyData frames, the common case (one per row): skipped by their length alone.
      while (end - pos >= 5 && buf[pos] === MSG_COPY_DATA) {
        const next = pos + 1 + buf.readUInt32BE(pos + 1);
        if (next > end) break;
        if (spanStart < 0) spanStart = pos;
        pos = next;
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
  connection: { stream: WritableSocket } | null;
  _gotCopyInResponse: boolean;
  uncork(): void;
}
interface WritableSocket {
  write(b: Buffer): boolean;
  cork(): void;
  uncork(): void;
  readonly writableLength: number;
  readonly writableNeedDrain: boolean;
}

/** A table's rows held back with its COPY statement up to this size, so that a small table goes out in one write. */
const HOLD_BYTES = 256 * 1024;

const CopyToBase = (copyTo('SELECT 1') as CopyToStreamQuery).constructor as new (text: string, options?: ReadableOptions) => CopyToStreamQuery;
const CopyFromBase = (copyFrom('SELECT 1') as CopyStreamQuery).constructor as new (text: string, options?: WritableOptions) => CopyStreamQuery;

class FrameReader extends CopyToBase {
  private readonly relay = new CopyOutRelay();

  constructor(
    text: string,
    options: ReadableOptions | undefined,
    /** Told the size of every run of frames passed on (progress; no stream stage of its own). */
    private readonly onFrames?: (bytes: number) => void,
  ) {
    super(text, options);
  }

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
    if (step.frames) this.onFrames?.(step.frames.length);
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
  /** The socket is corked by this copy (from the statement until the rows pass HOLD_BYTES or end). */
  private held: WritableSocket | null = null;

  /**
   * Rows go out right behind the COPY statement, without waiting for the server's CopyInResponse:
   * the server reads them once it is in COPY mode, and if the statement fails first it skips
   * CopyData and CopyDone by protocol (PostgresMain ignores them outside COPY). On many small
   * tables that wait was a round trip per table on the critical path.
   *
   * The statement is also held in the socket (corked) until the rows pass HOLD_BYTES or end, so a
   * small table's statement, rows and CopyDone reach the target in one write: every write on a
   * local socket wakes the backend, and on many small tables those wake-ups were most of the
   * relay's CPU. The target's session waits in its transaction meanwhile (copy sessions run
   * without idle_in_transaction_session_timeout).
   */
  override submit(connection: unknown): void {
    const stream = (connection as { stream: WritableSocket }).stream;
    stream.cork();
    this.held = stream;
    super.submit(connection as Parameters<CopyStreamQuery['submit']>[0]);
    const self = this as unknown as CopyFromInternals;
    self._gotCopyInResponse = true;
    self.uncork();
  }

  private release(): void {
    const stream = this.held;
    this.held = null;
    stream?.uncork();
  }

  /** The bytes are CopyData frames already: write them as they are. */
  flushChunk(chunk: Buffer): boolean {
    const stream = (this as unknown as CopyFromInternals).connection!.stream;
    const ok = stream.write(chunk);
    if (!this.held) return ok;
    // While held, a full buffer is expected: report room until the limit (the 'drain' a false would wait for never comes while corked).
    if (stream.writableLength < HOLD_BYTES) return true;
    this.release();
    return !stream.writableNeedDrain;
  }

  // CopyDone (or CopyFail) is written synchronously by the library's _final (_destroy) once the stream is ready; then let it all go.
  override _final(callback: (error?: Error | null) => void): void {
    super._final(callback);
    this.release();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    super._destroy(error, callback);
    this.release();
  }
}

/** COPY … TO STDOUT as a stream of CopyData frames (for copyInFrames only). */
export function copyOutFrames(sql: string, options?: ReadableOptions, onFrames?: (bytes: number) => void): CopyToStreamQuery {
  return new FrameReader(sql, options, onFrames);
}

/** COPY … FROM STDIN fed with CopyData frames from copyOutFrames. */
export function copyInFrames(sql: string, options?: WritableOptions): CopyStreamQuery {
  return new FrameWriter(sql, options);
}
