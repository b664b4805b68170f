/**
 * Data comparison of one table. Keyed tables: a first-pass chunk is hashed
 * on both sides at once; a chunk that differs is cut into FANOUT pieces at
 * keys read from the side with more rows, the pieces are hashed again, and
 * so on until a piece holds at most LEAF_ROWS rows; then key + row hash of
 * those rows are fetched and compared. Every candidate key is confirmed by
 * looking it up by key equality on both sides (collation-proof), and while
 * replication is active only after the target has replayed past the source
 * LSN of the lookup (`recheck` rounds). Keyless tables: one count and hash
 * for the whole table, rechecked the same way.
 */
import { displayName } from '../../postgres/identifiers.js';
import { currentLsn, waitForReplay, type ReplicationLink } from './replication.js';
import type { SessionPair, SideSession } from './sessions.js';
import type { ChunkTask } from './plan.js';
import {
  batchHashQuery, bucketHashQuery, bucketRange, chunkHashQuery, keyValues, leafRowsQuery, lookupRowsQuery, splitPointsQuery, WHOLE_RANGE,
  type KeyRange, type Query, type Side, type VerifyTable,
} from './sql.js';
import type { DiffKind, RowDiff, TableReport } from './types.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { settleRowsUnderLock, settleUnderLock } from './settle.js';

/** Pieces a differing range is cut into per level. */
export const FANOUT = 16;
/** A range with at most this many rows (on each side) is compared row by row. */
export const LEAF_ROWS = 1000;

export interface Hash {
  n: number;
  h: string;
}

export interface CompareSettings {
  maxDiffs: number;
  recheck: number;
  lagTimeoutMs: number;
  replication: ReplicationLink;
  signal?: AbortSignal;
  /** The source database: a keyless table that does not settle is compared once more as of one source position (settle.ts). */
  sourceConn?: ResolvedConnInfo;
  /** Rows per first-pass chunk (a table found equal by one whole-table hash counts as 1 chunk). */
  chunkRows?: number;
  /** Told of every range whose difference was confirmed: a leaf range, a range not located further (--max-diffs), or a whole keyless table. */
  onDifferentRange?: (range: KeyRange) => void;
}

function keyId(values: readonly string[]): string {
  return JSON.stringify(values);
}

async function both<T>(pair: SessionPair, q: (side: Side) => Query, run: (s: SideSession, q: Query) => Promise<T>): Promise<[T, T]> {
  return Promise.all([run(pair.source, q('source')), run(pair.target, q('target'))]);
}

async function hashOn(s: SideSession, q: Query): Promise<Hash> {
  const rows = await s.query<{ n: string; h: string }>(q);
  return { n: Number(rows[0]?.n ?? 0), h: rows[0]?.h ?? '0' };
}

const same = (a: Hash, b: Hash) => a.n === b.n && a.h === b.h;

/**
 * Whole-table count and hash of several tables on both sides, one statement
 * per side: [source, target] per table, in the order given.
 */
export async function hashBatch(pair: SessionPair, tables: readonly VerifyTable[]): Promise<[Hash, Hash][]> {
  await Promise.all([pair.source.planFor('batch'), pair.target.planFor('batch')]);
  const perTable = async (s: SideSession, q: Query) => {
    const out: Hash[] = tables.map(() => ({ n: 0, h: '0' }));
    for (const r of await s.query<{ i: number; n: string; h: string }>(q)) out[Number(r.i)] = { n: Number(r.n), h: r.h };
    return out;
  };
  const [src, tgt] = await both(pair, (side) => batchHashQuery(tables, side), perTable);
  return tables.map((_t, i) => [src[i]!, tgt[i]!]);
}

export function emptyTableReport(t: Pick<VerifyTable, 'schema' | 'name' | 'filter'>, method: TableReport['method'], key: string[] | null): TableReport {
  return {
    schema: t.schema,
    name: t.name,
    display: displayName(t.schema, t.name),
    status: 'equal',
    method,
    keyColumns: key,
    filter: t.filter,
    rowsSource: 0,
    rowsTarget: 0,
    chunks: 0,
    chunksDifferent: 0,
    rechecked: 0,
    diffs: [],
    diffCounts: { missing: 0, extra: 0, different: 0 },
    diffsTruncated: false,
    schemaDifferences: [],
    notes: [],
    error: null,
    durationMs: 0,
  };
}

export class TableComparer {
  private lagNoted = false;

  constructor(
    readonly table: VerifyTable,
    readonly report: TableReport,
    private readonly settings: CompareSettings,
  ) {}

  private get located(): number {
    const c = this.report.diffCounts;
    return c.missing + c.extra + c.different;
  }

  private record(kind: DiffKind, key: readonly string[]): void {
    this.report.diffCounts[kind]++;
    if (this.report.diffs.length < this.settings.maxDiffs) {
      const obj: Record<string, string> = {};
      this.table.key!.forEach((k, i) => (obj[k.name] = key[i]!));
      this.report.diffs.push({ kind, key: obj } satisfies RowDiff);
    } else this.report.diffsTruncated = true;
  }

  private noteLag(lsn: string): void {
    if (this.lagNoted) return;
    this.lagNoted = true;
    this.report.notes.push(
      `the target did not replay past source LSN ${lsn} within ${Math.round(this.settings.lagTimeoutMs / 1000)}s: differences here may be changes not yet applied`,
    );
  }

  /** A table found equal by one whole-table hash: its rows, in one chunk (what was compared). */
  recordWholeEqual(s: Hash, t: Hash): void {
    this.report.rowsSource += s.n;
    this.report.rowsTarget += t.n;
    this.report.chunks += 1;
  }

  /**
   * The whole table hashed once on both sides. True (and recorded) when
   * equal; false, with nothing recorded, when the table must be compared
   * chunk by chunk.
   */
  async wholeEqual(pair: SessionPair): Promise<boolean> {
    await Promise.all([pair.source.planFor('whole'), pair.target.planFor('whole')]);
    const [s, t] = await both(pair, (side) => chunkHashQuery(this.table, WHOLE_RANGE, side), hashOn);
    if (!same(s, t)) return false;
    this.recordWholeEqual(s, t);
    return true;
  }

  /** One first-pass task: a chunk, a segment of integer buckets, or a whole keyless table. */
  async compareTask(pair: SessionPair, task: ChunkTask): Promise<void> {
    if (task.buckets) await this.compareBuckets(pair, task);
    else await this.compareChunk(pair, task.range);
  }

  /** A segment of integer buckets: one scan per side, then each bucket compared like a chunk. */
  private async compareBuckets(pair: SessionPair, task: ChunkTask): Promise<void> {
    const b = task.buckets!;
    await Promise.all([pair.source.planFor('whole'), pair.target.planFor('whole')]);
    const perBucket = async (s: SideSession, q: Query) => {
      const rows = await s.query<{ b: string; n: string; h: string }>(q);
      return new Map(rows.map((r) => [Number(r.b), { n: Number(r.n), h: r.h }]));
    };
    const [src, tgt] = await both(pair, (side) => bucketHashQuery(this.table, task.range, side, b), perBucket);
    const empty: Hash = { n: 0, h: '0' };
    for (let i = b.first; i <= b.last; i++) {
      const s = src.get(i) ?? empty;
      const t = tgt.get(i) ?? empty;
      this.report.rowsSource += s.n;
      this.report.rowsTarget += t.n;
      this.report.chunks++;
      if (same(s, t)) continue;
      if (this.settings.signal?.aborted) return;
      if (await this.resolveRange(pair, bucketRange(b, i), s, t)) this.report.chunksDifferent++;
      else this.report.rechecked++;
    }
  }

  /** One first-pass chunk (or the whole keyless table). */
  async compareChunk(pair: SessionPair, range: KeyRange): Promise<void> {
    const kind = this.table.key && (range.lo || range.hi) ? 'range' : 'whole';
    await Promise.all([pair.source.planFor(kind), pair.target.planFor(kind)]);
    const [s, t] = await both(pair, (side) => chunkHashQuery(this.table, range, side), hashOn);
    if (same(s, t) && range === WHOLE_RANGE) return this.recordWholeEqual(s, t);
    this.report.rowsSource += s.n;
    this.report.rowsTarget += t.n;
    this.report.chunks++;
    if (same(s, t)) return;
    const differs = this.table.key ? await this.resolveRange(pair, range, s, t) : await this.recheckRange(pair, range);
    if (differs && !this.table.key) this.settings.onDifferentRange?.(range);
    if (differs) this.report.chunksDifferent++;
    else this.report.rechecked++;
  }

  /**
   * Compare a range again, hashing the source first and the target after it
   * has replayed past the source position. True when it still differs.
   */
  private async recheckRange(pair: SessionPair, range: KeyRange): Promise<boolean> {
    const rep = this.settings.replication;
    if (!rep.active) return true;
    const kind = this.table.key && (range.lo || range.hi) ? 'range' : 'whole';
    await Promise.all([pair.source.planFor(kind), pair.target.planFor(kind)]);
    for (let round = 0; round < Math.max(1, this.settings.recheck); round++) {
      const s = await hashOn(pair.source, chunkHashQuery(this.table, range, 'source'));
      const lsn = await currentLsn(pair.source);
      if (!(await waitForReplay(pair.source, rep, lsn, this.settings.lagTimeoutMs, this.settings.signal))) {
        this.noteLag(lsn);
        return true;
      }
      const t = await hashOn(pair.target, chunkHashQuery(this.table, range, 'target'));
      if (same(s, t)) return false;
      // Rows written after the first read may have reached the target already:
      // a target that matches the source as it is now is in step too.
      if (same(await hashOn(pair.source, chunkHashQuery(this.table, range, 'source')), t)) return false;
    }
    return this.table.key ? true : this.settleKeyless(pair, range);
  }

  /** The last word on a keyless table that kept changing: both sides read as of one source position. */
  private async settleKeyless(pair: SessionPair, range: KeyRange): Promise<boolean> {
    const s = this.settings;
    if (!s.sourceConn) return true;
    const r = await settleUnderLock({ sourceConn: s.sourceConn, pair, table: this.table, range, replication: s.replication, lagTimeoutMs: s.lagTimeoutMs, signal: s.signal });
    if (r.outcome === 'unsettled') {
      this.report.notes.push(`kept changing while compared, and could not be read as of one source position: ${r.reason}`);
      return true;
    }
    this.report.notes.push(`kept changing while compared: read as of one source position, under a SHARE lock held ${r.heldMs} ms on the source`);
    return r.outcome === 'different';
  }

  /** Locate the differing rows of a range whose hashes differ. True when a difference is confirmed. */
  private async resolveRange(pair: SessionPair, range: KeyRange, s: Hash, t: Hash): Promise<boolean> {
    if (this.located >= this.settings.maxDiffs) {
      // Enough keys listed: only make sure this range really differs.
      const differs = await this.recheckRange(pair, range);
      if (differs) this.report.diffsTruncated = true;
      if (differs) this.settings.onDifferentRange?.(range);
      return differs;
    }
    const most = Math.max(s.n, t.n);
    if (most <= LEAF_ROWS) return this.resolveLeaf(pair, range, LEAF_ROWS);
    const from = s.n >= t.n ? pair.source : pair.target;
    await from.planFor('range');
    const step = Math.ceil(most / FANOUT);
    const points = (await from.query<Record<string, string>>(splitPointsQuery(this.table, range, from.side, step))).map((r) =>
      keyValues(r, this.table.key!.length),
    );
    if (!points.length) return this.resolveLeaf(pair, range, Math.min(most, 10 * LEAF_ROWS));
    const pieces: KeyRange[] = [];
    let lo = range.lo;
    for (const p of points) {
      pieces.push({ lo, hi: p });
      lo = p;
    }
    pieces.push({ lo, hi: range.hi });
    let found = false;
    for (const piece of pieces) {
      if (this.settings.signal?.aborted) break;
      await Promise.all([pair.source.planFor('range'), pair.target.planFor('range')]);
      const [ps, pt] = await both(pair, (side) => chunkHashQuery(this.table, piece, side), hashOn);
      if (same(ps, pt)) continue;
      if (await this.resolveRange(pair, piece, ps, pt)) found = true;
    }
    return found;
  }

  /** Row-by-row comparison of a small range. */
  private async resolveLeaf(pair: SessionPair, range: KeyRange, limit: number): Promise<boolean> {
    const width = this.table.key!.length;
    await Promise.all([pair.source.planFor('range'), pair.target.planFor('range')]);
    const [srows, trows] = await both(pair, (side) => leafRowsQuery(this.table, range, side, limit), (sess, q) =>
      sess.query<Record<string, string>>(q),
    );
    const target = new Map<string, string>();
    for (const r of trows) target.set(keyId(keyValues(r, width)), r.h!);
    const candidates: string[][] = [];
    for (const r of srows) {
      const kv = keyValues(r, width);
      const id = keyId(kv);
      const th = target.get(id);
      target.delete(id);
      if (th !== r.h) candidates.push(kv);
    }
    for (const id of target.keys()) candidates.push(JSON.parse(id) as string[]);
    if (!candidates.length) return false;
    const differs = (await this.confirm(pair, candidates)) > 0;
    if (differs) this.settings.onDifferentRange?.(range);
    return differs;
  }

  /**
   * Look candidate keys up by equality on both sides and record those that
   * still differ. While replicating: source first, then the target once it
   * has replayed past the source position, up to `recheck` rounds.
   */
  private async confirm(pair: SessionPair, candidates: string[][]): Promise<number> {
    const rep = this.settings.replication;
    const width = this.table.key!.length;
    let pending = candidates;
    let verdicts = new Map<string, DiffKind>();
    const rounds = rep.active ? Math.max(1, this.settings.recheck) : 1;
    // Keys whose source row changed between two of our reads: a row rewritten
    // faster than a round lasts, which only a locked read can settle.
    const seen = new Map<string, string>();
    const moving = new Set<string>();
    const watch = (keys: string[][], rows: Record<string, string>[]) => {
      const h = new Map(rows.map((r) => [keyId(keyValues(r, width)), r.h!]));
      for (const k of keys) {
        const id = keyId(k);
        const now = h.get(id) ?? '';
        const before = seen.get(id);
        if (before !== undefined && before !== now) moving.add(id);
        seen.set(id, now);
      }
    };
    let lagged = false;
    await Promise.all([pair.source.planFor('range'), pair.target.planFor('range')]);
    for (let round = 0; round < rounds && pending.length; round++) {
      let srows: Record<string, string>[];
      let trows: Record<string, string>[];
      if (rep.active) {
        srows = await pair.source.query<Record<string, string>>(lookupRowsQuery(this.table, pending, 'source'));
        watch(pending, srows);
        const lsn = await currentLsn(pair.source);
        if (!(await waitForReplay(pair.source, rep, lsn, this.settings.lagTimeoutMs, this.settings.signal))) {
          this.noteLag(lsn);
          lagged = true;
          trows = await pair.target.query<Record<string, string>>(lookupRowsQuery(this.table, pending, 'target'));
          verdicts = this.judge(pending, srows, trows, width);
          break;
        }
        trows = await pair.target.query<Record<string, string>>(lookupRowsQuery(this.table, pending, 'target'));
        verdicts = this.judge(pending, srows, trows, width);
        // A row written again after the source read may already be newer on the
        // target: it is in step when it matches the source as it is now.
        const differing = pending.filter((k) => verdicts.has(keyId(k)));
        if (differing.length) {
          const now = await pair.source.query<Record<string, string>>(lookupRowsQuery(this.table, differing, 'source'));
          watch(differing, now);
          verdicts = this.judge(differing, now, trows, width);
        }
      } else {
        [srows, trows] = await both(pair, (side) => lookupRowsQuery(this.table, pending, side), (sess, q) =>
          sess.query<Record<string, string>>(q),
        );
        verdicts = this.judge(pending, srows, trows, width);
      }
      pending = pending.filter((k) => verdicts.has(keyId(k)));
    }
    const hot = pending.filter((k) => moving.has(keyId(k)));
    if (hot.length && !lagged && !this.settings.signal?.aborted) verdicts = await this.settleRows(pair, hot, verdicts);
    let n = 0;
    for (const k of pending) {
      const kind = verdicts.get(keyId(k));
      if (!kind) continue;
      this.record(kind, k);
      n++;
    }
    return n;
  }

  /**
   * Rows still differing that changed on the source while rechecked: read
   * both sides as of one source position with those rows locked (settle.ts).
   * Returns the verdicts with theirs replaced; unchanged if that is not possible.
   */
  private async settleRows(pair: SessionPair, hot: string[][], verdicts: Map<string, DiffKind>): Promise<Map<string, DiffKind>> {
    const s = this.settings;
    if (!s.sourceConn || hot.length > LEAF_ROWS) return verdicts;
    const r = await settleRowsUnderLock({ sourceConn: s.sourceConn, pair, table: this.table, keys: hot, replication: s.replication, lagTimeoutMs: s.lagTimeoutMs, signal: s.signal });
    if (r.outcome === 'unsettled') {
      this.report.notes.push(`${hot.length} row(s) kept changing while compared, and could not be read as of one source position: ${r.reason}`);
      return verdicts;
    }
    this.report.notes.push(`${hot.length} row(s) kept changing while compared: read as of one source position, with the rows locked FOR SHARE for ${r.heldMs} ms on the source`);
    const settled = this.judge(hot, r.source, r.target, this.table.key!.length);
    const out = new Map(verdicts);
    for (const k of hot) {
      const id = keyId(k);
      const kind = settled.get(id);
      if (kind) out.set(id, kind);
      else out.delete(id);
    }
    return out;
  }

  private judge(keys: string[][], srows: Record<string, string>[], trows: Record<string, string>[], width: number): Map<string, DiffKind> {
    const sh = new Map(srows.map((r) => [keyId(keyValues(r, width)), r.h!]));
    const th = new Map(trows.map((r) => [keyId(keyValues(r, width)), r.h!]));
    const out = new Map<string, DiffKind>();
    for (const k of keys) {
      const id = keyId(k);
      const a = sh.get(id);
      const b = th.get(id);
      if (a === undefined && b === undefined) continue;
      if (b === undefined) out.set(id, 'missing');
      else if (a === undefined) out.set(id, 'extra');
      else if (a !== b) out.set(id, 'different');
    }
    return out;
  }
}

export { WHOLE_RANGE };
