/**
 * One session of the client applier for one database pair: a target
 * connection (session_replication_role = replica, the replication origin set
 * up for the session) and a replication connection to the source, streaming
 * from the origin's committed position.
 *
 * Exactly once: many source transactions go into one target transaction,
 * never part of one; before its COMMIT, pg_replication_origin_xact_setup
 * records the end of the last source commit in it, so the changes and the
 * position commit together. The slot is acknowledged only up to that
 * committed position (or, while nothing is pending, up to the position of a
 * keepalive, as the native worker does), so a crash anywhere replays exactly
 * the transactions the target does not have.
 *
 * Memory: the buffer of changes is applied into the open target transaction
 * whenever it exceeds the budget (also in the middle of a source
 * transaction); the stream's socket is paused while the queue is full. On a
 * source of 14+, a transaction bigger than the source's
 * logical_decoding_work_mem is streamed before its commit (protocol 2) and
 * spooled to a file (spool.ts) until it commits, then applied like any other.
 */
import type pg from 'pg';
import { faultPoint } from '../../../fault.js';
import { CANONICAL_SETTINGS, connect } from '../../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../../postgres/conninfo.js';
import { sqlstate } from '../../../postgres/errors.js';
import { formatLsn, lsnToBigInt } from '../../../postgres/lsn.js';
import { ensureOrigin, originRefusal } from '../../shared/replication-origin.js';
import { applyChanges, type ApplyCounts, type Change } from './apply.js';
import { decodePgoutput, tupleBytes, type PgoutputMessage, type Relation } from './pgoutput.js';
import { Spools } from './spool.js';
import { ReplicationStream, type StreamItem } from './stream.js';
import { describeTarget, type ApplyTable } from './tables.js';

export interface ApplierOptions {
  sourceConn: ResolvedConnInfo;
  targetConn: ResolvedConnInfo;
  slot: string;
  publication: string;
  origin: string;
  /**
   * Bytes of buffered changes before they are applied into the open target transaction: the target works on
   * one piece while the next is received and decoded, and a transaction of any size fits in memory.
   */
  batchBytes: number;
  /** Where streamed transactions are spooled until they end (a directory of pgferry's own; emptied at start). */
  spoolDir: string;
  /** Stop once everything before this source position is committed on the target (--until-caught-up). */
  untilLsn: bigint | null;
  /**
   * Tables ("schema.name") copied again under a later snapshot (resync.ts): their changes in source transactions
   * that committed before this position are in the copy, so they are skipped, as table synchronisation does.
   */
  skipBefore?: ReadonlyMap<string, bigint>;
  signal: AbortSignal;
  warn: (message: string) => void;
}

export interface ApplierStats {
  changes: number;
  transactions: number;
  batches: number;
  lastBatchChanges: number;
  /** Position acknowledged to the source (everything before it is on the target). */
  acked: bigint;
  /** The source's WAL end as last heard on the stream (the walsender's sent position). */
  walEnd: bigint;
  /** The source's WAL end as last polled over an ordinary connection (0n: not known yet), for the lag and its ETA. */
  sourceEnd: bigint;
  missing: number;
  statements: number;
  /** Transactions that arrived streamed (protocol 2) and were committed, and those aborted. */
  streamed: number;
  streamedAborted: number;
  /** Bytes spooled for streamed transactions not yet ended (as of the last stream block). */
  spooledBytes: number;
}

export function newStats(): ApplierStats {
  return { changes: 0, transactions: 0, batches: 0, lastBatchChanges: 0, acked: 0n, walEnd: 0n, sourceEnd: 0n, missing: 0, statements: 0, streamed: 0, streamedAborted: 0, spooledBytes: 0 };
}

const STATUS_EVERY_MS = 10_000;
/** While a spooled transaction is applied the stream is not read (keepalives wait): a status update this often. */
const REPLAY_STATUS_MS = 1_000;
/** Messages handled in a row while a piece is in flight before the event loop gets a turn. */
const YIELD_EVERY = 256;
/** Commit a batch at the latest this long after its first transaction, even while more keeps arriving. */
const BATCH_MAX_MS = 1_000;

async function openTarget(o: ApplierOptions): Promise<pg.Client> {
  const tgt = await connect(o.targetConn, { label: 'the target', settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync (client applier)' });
  try {
    try {
      // Triggers and foreign keys behave as under the native apply worker.
      await tgt.query("SET session_replication_role = 'replica'");
    } catch (err) {
      throw originRefusal(err, 'SET session_replication_role = replica');
    }
    // The slot is acknowledged once COMMIT returns: the commit must be durable by then, whatever the server's default.
    await tgt.query("SET synchronous_commit = 'on'");
    await ensureOrigin(tgt, o.origin);
    try {
      await tgt.query('SELECT pg_replication_origin_session_setup($1)', [o.origin]);
    } catch (err) {
      if (sqlstate(err) === '55006') throw err; // another session still holds it: the caller retries
      throw originRefusal(err, 'use replication origins');
    }
    return tgt;
  } catch (err) {
    await tgt.end().catch(() => {});
    throw err;
  }
}

/** Run until the signal aborts, the target has caught up with untilLsn, or an error (the caller decides whether to retry). */
export async function runSession(o: ApplierOptions, stats: ApplierStats): Promise<'caught-up' | 'stopped'> {
  // Both connections at once (start-up is part of every drain); a failure of one closes the other.
  const [target, replication] = await Promise.allSettled([
    openTarget(o),
    connect(o.sourceConn, { label: 'the source (replication connection)', replication: true, settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync (client applier)' }),
  ]);
  if (target.status === 'rejected' || replication.status === 'rejected') {
    if (target.status === 'fulfilled') await target.value.end().catch(() => {});
    if (replication.status === 'fulfilled') await replication.value.end().catch(() => {});
    throw target.status === 'rejected' ? target.reason : (replication as PromiseRejectedResult).reason;
  }
  const tgt = target.value;
  const repl = replication.value;
  // 2 MB of pgoutput payload queued (several times that once decoded); beyond it the socket waits.
  const stream = new ReplicationStream(repl, 2 * 1024 * 1024);
  const spools = new Spools(o.spoolDir);
  try {
    await spools.reset();
    const { rows } = await tgt.query<{ lsn: string }>('SELECT pg_replication_origin_session_progress(true)::text AS lsn');
    const start = lsnToBigInt(rows[0]?.lsn ?? '0/0');
    if (start > stats.acked) stats.acked = start;
    // Streamed in-progress transactions (protocol 2) exist from PostgreSQL 14 on.
    const { rows: v } = await repl.query<{ server_version_num: string }>('SHOW server_version_num');
    stream.start(o.slot, o.publication, start, Number(v[0]?.server_version_num) >= 140000);
    return await new Session(o, stats, tgt, stream, spools).run();
  } finally {
    await stream.close();
    await spools.close().catch(() => {});
    await tgt.end().catch(() => {});
  }
}

class Session {
  private readonly tables = new Map<number, ApplyTable>();
  private buffer: Change[] = [];
  private bufferBytes = 0;
  private txOpen = false;
  private inSource = false;
  /** Source transactions committed into the open batch, and the last one's end and time. */
  private batchTx = 0;
  private batchChanges = 0;
  private batchStarted = 0;
  private lastCommit: { end: bigint; time: bigint } | null = null;
  private lastStatus = 0;
  private readonly counts: ApplyCounts = { statements: 0, missing: 0 };
  /** The piece of changes, or the batch's COMMIT, sent to the target and not yet done (flushBuffer, commit). */
  private inFlight: Promise<void> | null = null;
  /** inFlight is a COMMIT (its acknowledgement follows it). */
  private committing = false;
  /** The top-level transaction of the open stream block (protocol 2), if any. */
  private streaming: number | null = null;
  /** Commit position of the source transaction being received (its Begin's final LSN). */
  private finalLsn = 0n;
  /** Relations whose changes in the current transaction are skipped (see ApplierOptions.skipBefore). */
  private readonly skipping = new Set<number>();

  constructor(
    private readonly o: ApplierOptions,
    private readonly stats: ApplierStats,
    private readonly tgt: pg.Client,
    private readonly stream: ReplicationStream,
    private readonly spools: Spools,
  ) {}

  async run(): Promise<'caught-up' | 'stopped'> {
    const { o, stream } = this;
    let handled = 0;
    for (;;) {
      if (o.signal.aborted) return this.stop();
      // Messages already received are handled without a promise each; nothing more within 20 ms: the backlog is
      // drained, commit what is complete.
      // Nothing received while a COMMIT is in flight: its acknowledgement first (--until-caught-up may end with it).
      const item = stream.take() ?? (this.committing ? await this.settle().then(() => null) : await stream.next(this.batchTx > 0 ? 20 : 1000));
      if (item) {
        const pending = this.handle(item);
        if (pending) await pending;
        // The piece in flight sends its next statement when the previous one's result has been read, which needs the
        // event loop: handling a full queue without a pause left the target idle for tens of milliseconds at a time.
        else if (this.inFlight && ++handled % YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      } else if (this.batchTx > 0 && !this.inSource) await this.commit();
      if (this.batchTx > 0 && !this.inSource && Date.now() - this.batchStarted > BATCH_MAX_MS) await this.commit();
      if (o.untilLsn !== null && this.stats.acked >= o.untilLsn && this.idle()) {
        stream.sendStatus(this.stats.acked);
        return 'caught-up';
      }
      const waiting = o.untilLsn !== null && this.idle() && stream.pending === 0;
      // While waiting for the last position, ask the source for a keepalive (its WAL end) at least every second.
      if (Date.now() - this.lastStatus > (waiting ? 1000 : STATUS_EVERY_MS)) this.status(waiting);
    }
  }

  private idle(): boolean {
    return !this.inSource && !this.txOpen && this.batchTx === 0 && this.buffer.length === 0 && this.inFlight === null;
  }

  private status(replyRequested = false): void {
    this.stream.sendStatus(this.stats.acked, replyRequested);
    this.lastStatus = Date.now();
  }

  /** Handle one item; a promise only when it has to wait for the target or the spool. */
  private handle(item: StreamItem): Promise<void> | undefined {
    const { stats } = this;
    if (item.kind === 'keepalive') {
      if (item.walEnd > stats.walEnd) stats.walEnd = item.walEnd;
      if (this.idle() && item.walEnd > stats.acked) {
        stats.acked = item.walEnd;
        this.status();
      } else if (item.replyRequested) {
        this.status();
      }
      return;
    }
    if (item.walStart > stats.walEnd) stats.walEnd = item.walStart;
    return this.message(item.message);
  }

  private message(m: PgoutputMessage): Promise<void> | undefined {
    const { stats } = this;
    switch (m.tag) {
      case 'begin':
        this.inSource = true;
        if (this.batchTx === 0 && !this.txOpen) this.batchStarted = Date.now();
        this.finalLsn = m.finalLsn;
        this.markSkipped();
        return;
      case 'commit':
        this.inSource = false;
        this.lastCommit = { end: m.endLsn, time: m.commitTime };
        this.batchTx++;
        stats.transactions++;
        // Over budget, or the position --until-caught-up waits for: commit now rather than after the idle wait.
        if (this.bufferBytes >= this.o.batchBytes || (this.o.untilLsn !== null && m.endLsn >= this.o.untilLsn)) return this.commit();
        return;
      case 'relation':
        return this.relation(m.relation);
      case 'insert':
        if (this.skipping.has(m.relid)) return;
        return this.add({ kind: 'insert', t: this.table(m.relid), row: m.row }, tupleBytes(m.row));
      case 'update':
        if (this.skipping.has(m.relid)) return;
        return this.add({ kind: 'update', t: this.table(m.relid), old: m.old, row: m.row }, tupleBytes(m.row) + tupleBytes(m.old));
      case 'delete':
        if (this.skipping.has(m.relid)) return;
        return this.add({ kind: 'delete', t: this.table(m.relid), old: m.old }, tupleBytes(m.old));
      case 'truncate': {
        const relids = m.relids.filter((r) => !this.skipping.has(r));
        if (!relids.length) return;
        return this.add({ kind: 'truncate', tables: relids.map((r) => this.table(r)), cascade: m.cascade, restartIdentity: m.restartIdentity }, 64);
      }
      default:
        return this.streamMessage(m);
    }
  }

  private async relation(r: Relation): Promise<void> {
    // The piece in flight first: a failure of it is reported as itself, not as the next statement's "aborted".
    await this.settle();
    this.tables.set(r.oid, await describeTarget(this.tgt, r, this.o.warn));
    this.markSkipped();
  }

  /**
   * Protocol 2: stream blocks go to the spool of their transaction; a Stream Commit applies the spool as a
   * source transaction in its place in commit order, a Stream Abort drops it (or a subtransaction's part).
   * A spooled transaction is not "pending" for the keepalive acknowledgement, as for the native worker: the
   * server decides what to send again by the position of a transaction's commit, and it has none yet.
   */
  private async streamMessage(m: PgoutputMessage): Promise<void> {
    await this.streamFrame(m);
    if (m.tag !== 'streamed') this.stats.spooledBytes = this.spools.bytes;
  }

  private async streamFrame(m: PgoutputMessage): Promise<void> {
    switch (m.tag) {
      case 'stream-start':
        if (m.first) await this.spools.begin(m.xid);
        this.streaming = m.xid;
        return;
      case 'stream-stop':
        if (this.streaming !== null) await this.spools.pause(this.streaming);
        this.streaming = null;
        return;
      case 'streamed':
        if (this.streaming === null) throw new Error('pgoutput: a streamed message outside a stream block');
        return this.spools.append(this.streaming, m.xid, m.payload);
      case 'stream-abort':
        if (m.subxid === m.xid) this.stats.streamedAborted++;
        return this.spools.abort(m.xid, m.subxid);
      case 'stream-commit':
        await this.message({ tag: 'begin', finalLsn: m.commitLsn, commitTime: m.commitTime, xid: m.xid });
        for await (const payload of this.spools.commit(m.xid)) {
          await this.message(decodePgoutput(payload, true));
          // Applying a big spool takes minutes, and the stream is not read meanwhile: without a status update the
          // walsender ends the connection after wal_sender_timeout (and the slot is never acknowledged).
          if (Date.now() - this.lastStatus > REPLAY_STATUS_MS) this.status();
        }
        this.stats.streamed++;
        return this.message({ tag: 'commit', commitLsn: m.commitLsn, endLsn: m.endLsn, commitTime: m.commitTime });
      default:
    }
  }

  /** Which known relations the current transaction's changes are skipped for: those resynced at a later position. */
  private markSkipped(): void {
    this.skipping.clear();
    const skip = this.o.skipBefore;
    if (!skip?.size) return;
    for (const [oid, t] of this.tables) {
      const from = skip.get(`${t.relation.schema}.${t.relation.name}`);
      if (from !== undefined && this.finalLsn < from) this.skipping.add(oid);
    }
  }

  private table(relid: number): ApplyTable {
    const t = this.tables.get(relid);
    if (!t) throw new Error(`the stream sent a change of relation ${relid} before describing it`);
    return t;
  }

  private add(c: Change, bytes: number): Promise<void> | undefined {
    this.buffer.push(c);
    this.bufferBytes += bytes;
    this.batchChanges++;
    this.stats.changes++;
    // Over budget: into the open target transaction with it, also in the middle of a source transaction.
    if (this.bufferBytes >= this.o.batchBytes) return this.flushBuffer();
    return undefined;
  }

  /**
   * Send the buffered changes into the open target transaction (opening it first) without waiting for them: the
   * stream goes on filling the next piece meanwhile. At most one piece is in flight: the next flush, the commit,
   * and a stop wait for it (and fail with its error). Statements go over the one target connection in order.
   */
  private async flushBuffer(): Promise<void> {
    if (!this.buffer.length) return;
    await this.settle();
    const changes = this.buffer;
    this.buffer = [];
    this.bufferBytes = 0;
    const begin = !this.txOpen;
    this.txOpen = true;
    const piece = (async () => {
      if (begin) await this.tgt.query('BEGIN');
      await applyChanges(this.tgt, changes, this.counts);
    })();
    piece.catch(() => {}); // awaited (and its error thrown) by settle()
    this.inFlight = piece;
  }

  /** Wait for the piece or COMMIT in flight, if any. */
  private async settle(): Promise<void> {
    const piece = this.inFlight;
    this.inFlight = null;
    this.committing = false;
    if (piece) await piece;
  }

  /**
   * Commit the batch (at a source transaction boundary) with its position, then acknowledge it. The COMMIT goes
   * in flight like a piece: the stream goes on filling the next piece meanwhile (the target is the slower side,
   * and a commit waited for left it idle until the next piece was gathered). The next piece's BEGIN waits for it
   * (settle), and the position is acknowledged only once COMMIT has returned: until then the session is not idle,
   * so no keepalive is acknowledged either.
   */
  private async commit(): Promise<void> {
    const last = this.lastCommit!;
    const changes = this.batchChanges;
    this.batchChanges = 0;
    this.batchTx = 0;
    const acknowledge = () => {
      // A batch without changes (transactions of other tables) needs no target transaction: nothing to replay.
      this.stats.lastBatchChanges = changes;
      this.stats.statements = this.counts.statements;
      this.stats.missing = this.counts.missing;
      if (last.end > this.stats.acked) this.stats.acked = last.end;
      this.status();
    };
    if (!this.buffer.length && !this.txOpen) {
      // Never ahead of a COMMIT still in flight.
      if (this.inFlight) await this.settle();
      acknowledge();
      return;
    }
    await this.flushBuffer();
    const piece = this.inFlight;
    this.txOpen = false;
    const done = (async () => {
      await piece;
      // Crash-test points, reached after two committed batches.
      if (this.stats.batches >= 2) faultPoint('sync.client.mid-batch');
      const at = new Date(Number(last.time / 1000n) + 946_684_800_000).toISOString();
      await this.tgt.query('SELECT pg_replication_origin_xact_setup($1::pg_lsn, $2::timestamptz)', [formatLsn(last.end), at]);
      await this.tgt.query('COMMIT');
      if (this.stats.batches >= 2) faultPoint('sync.client.after-commit');
      this.stats.batches++;
      acknowledge();
    })();
    done.catch(() => {}); // awaited (and its error thrown) by settle()
    this.inFlight = done;
    this.committing = true;
  }

  /** Signal: commit what is complete, roll back a partial transaction (it is streamed again next time). */
  private async stop(): Promise<'stopped'> {
    if (this.batchTx > 0 && !this.inSource) await this.commit();
    else if (this.txOpen) {
      await this.settle().catch(() => {});
      await this.tgt.query('ROLLBACK').catch(() => {});
    }
    await this.settle(); // a COMMIT in flight, and its acknowledgement
    this.status();
    return 'stopped';
  }
}

/** Errors worth another session rather than an exit: the origin or slot still held by a session that is going away. */
export function inUseByDeparted(err: unknown): boolean {
  return sqlstate(err) === '55006';
}
