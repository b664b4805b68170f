/**
 * The replication stream of one slot: START_REPLICATION … LOGICAL over a
 * pgferry replication connection (same TLS and password handling as every
 * other connection), the CopyBoth framing, and standby status updates.
 *
 * Why not pg-logical-replication's service (see docs/architecture.md,
 * "Client applier"): its acknowledge() reports lsn + 1, which can confirm the
 * start of the next commit record and so skip a transaction after a crash; its
 * timer acknowledges the last *received* position; it parses values through
 * JavaScript types; and it opens its own pg.Client. The framing is small.
 *
 * Messages (XLogData and keepalives) are queued in arrival order and handed
 * to the consumer one at a time; while the queue holds more than `maxQueuedBytes`
 * the socket is paused, which is the back-pressure from the target to the source.
 *
 * With `streaming` (source 14+), protocol 2 is asked for with streaming on: a
 * transaction bigger than the source's logical_decoding_work_mem arrives in
 * pieces before its commit. The messages inside a stream block are passed on
 * encoded (copied out of the socket's buffer), to be spooled by the applier.
 */
import type pg from 'pg';
import { quoteIdent, quoteLiteral } from '../../../postgres/identifiers.js';
import { formatLsn } from '../../../postgres/lsn.js';
import { decodePgoutput, type PgoutputMessage } from './pgoutput.js';

export type StreamItem =
  | { kind: 'data'; walStart: bigint; message: PgoutputMessage; bytes: number }
  | { kind: 'keepalive'; walEnd: bigint; replyRequested: boolean };

/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_MS = 946_684_800_000;

interface Connection {
  on(event: 'copyData', fn: (msg: { chunk: Buffer }) => void): void;
  sendCopyFromChunk(buf: Buffer): void;
  stream: { pause(): void; resume(): void };
}

export class ReplicationStream {
  // A queue with a head index: Array.shift is linear, and the queue holds tens of thousands of messages.
  private queue: StreamItem[] = [];
  private head = 0;
  private queuedBytes = 0;
  private paused = false;
  private waiter: (() => void) | null = null;
  private ended: unknown = undefined;
  private done = false;
  /** Between Stream Start and Stream Stop (protocol 2). */
  private inStreamBlock = false;
  private readonly conn: Connection;

  constructor(
    private readonly client: pg.Client,
    private readonly maxQueuedBytes: number,
  ) {
    this.conn = (client as unknown as { connection: Connection }).connection;
  }

  /** Start streaming from `startLsn` (the server starts from the slot's confirmed position if that is later). */
  start(slot: string, publication: string, startLsn: bigint, streaming: boolean): void {
    this.conn.on('copyData', ({ chunk }) => this.onChunk(chunk));
    const proto = streaming ? "proto_version '2', streaming 'on'" : "proto_version '1'";
    const sql = `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(startLsn)} (${proto}, publication_names ${quoteLiteral(quoteIdent(publication))})`;
    this.client.query(sql).then(
      () => this.finish(new Error('the source ended the replication stream')),
      (err: unknown) => this.finish(err),
    );
    this.client.on('error', (err) => this.finish(err));
    this.client.on('end', () => this.finish(new Error('the replication connection to the source was closed')));
  }

  private finish(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.ended = err;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private onChunk(chunk: Buffer): void {
    const type = chunk[0];
    if (type === 0x77) {
      // 'w': walStart, walEnd, sendTime, then one pgoutput message.
      const bytes = chunk.length - 25;
      // Only a transaction's last message carries its position (the others send 0): no BigInt for those.
      const walStart = chunk.readUInt32BE(1) === 0 && chunk.readUInt32BE(5) === 0 ? 0n : chunk.readBigUInt64BE(1);
      if (this.inStreamBlock && chunk[25] !== 0x45 /* E: Stream Stop */) {
        // The socket's buffer is reused: the spooled message needs its own copy.
        this.push({ kind: 'data', walStart, message: { tag: 'streamed', xid: chunk.readUInt32BE(26), payload: Buffer.from(chunk.subarray(25)) }, bytes });
        return;
      }
      const message = decodePgoutput(chunk, false, 25);
      if (message.tag === 'stream-start') this.inStreamBlock = true;
      else if (message.tag === 'stream-stop') this.inStreamBlock = false;
      this.push({ kind: 'data', walStart, message, bytes });
    } else if (type === 0x6b) {
      // 'k': walEnd, sendTime, replyRequested.
      this.push({ kind: 'keepalive', walEnd: chunk.readBigUInt64BE(1), replyRequested: chunk[17] === 1 });
    }
  }

  private push(item: StreamItem): void {
    this.queue.push(item);
    this.queuedBytes += item.kind === 'data' ? item.bytes : 0;
    if (!this.paused && this.queuedBytes > this.maxQueuedBytes) {
      this.paused = true;
      this.conn.stream.pause();
    }
    this.wake();
  }

  /** Messages already received and not yet taken. */
  get pending(): number {
    return this.queue.length - this.head;
  }

  /** The next message already received, without waiting (undefined when there is none). */
  take(): StreamItem | undefined {
    if (this.head === this.queue.length) return undefined;
    const item = this.queue[this.head++]!;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (item.kind === 'data') this.queuedBytes -= item.bytes;
    if (this.paused && this.queuedBytes <= this.maxQueuedBytes / 2) {
      this.paused = false;
      this.conn.stream.resume();
    }
    return item;
  }

  /** The next message; waits up to `timeoutMs` (null when none came). Throws once the stream has ended. */
  async next(timeoutMs: number): Promise<StreamItem | null> {
    if (!this.pending) {
      if (this.done) throw this.ended;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.waiter = null;
          resolve();
        }, timeoutMs);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (!this.pending) {
        if (this.done) throw this.ended;
        return null;
      }
    }
    return this.take()!;
  }

  /**
   * Standby status update: written, flushed and applied all = `flushed`, the
   * position up to which the target has committed everything (never lsn + 1).
   */
  sendStatus(flushed: bigint, replyRequested = false): void {
    if (this.done) return;
    const buf = Buffer.alloc(34);
    buf[0] = 0x72; // 'r'
    buf.writeBigUInt64BE(flushed, 1);
    buf.writeBigUInt64BE(flushed, 9);
    buf.writeBigUInt64BE(flushed, 17);
    buf.writeBigInt64BE(BigInt(Date.now() - PG_EPOCH_MS) * 1000n, 25);
    buf[33] = replyRequested ? 1 : 0;
    try {
      this.conn.sendCopyFromChunk(buf);
    } catch {
      // the connection is going away; the stream reports why
    }
  }

  async close(): Promise<void> {
    this.done = true;
    await this.client.end().catch(() => {});
  }
}
