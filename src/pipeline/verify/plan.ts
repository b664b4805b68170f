/**
 * First-pass chunk plan of a keyed table, from the source: integer ranges of
 * equal width for a dense single integer key, otherwise boundaries taken from
 * a block sample of the key (TABLESAMPLE SYSTEM reads a few pages, not the
 * table). Chunks only need to be roughly even: the first range is open below
 * and the last open above, so rows outside the sampled span are still covered.
 */
import type { SideSession } from './sessions.js';
import {
  bucketRange, countQuery, integerBoundsQuery, keyValues, sampleKeysQuery, WHOLE_RANGE, type IntegerBuckets, type KeyRange,
  type VerifyTable,
} from './sql.js';

/**
 * One unit of work: a key range hashed as one chunk, or (dense integer keys)
 * a segment of consecutive buckets hashed per bucket in one scan.
 */
export interface ChunkTask {
  range: KeyRange;
  buckets?: IntegerBuckets & { first: number; last: number };
  /**
   * The whole table hashed once first (see PlanChunkOptions.wholeFirst), and
   * what happens when the two sides differ: 'bisect' cuts the table into
   * pieces at keys read from it; 'replan' compares it chunk by chunk as if it
   * had not been hashed whole, so differences are located exactly as before.
   */
  wholeFirst?: WholeFirst;
}

export type WholeFirst = 'bisect' | 'replan';

export interface ChunkPlan {
  /** Number of first-pass chunks (buckets count one each). */
  count: number;
  /** Number of tasks tasks() yields. */
  taskCount: number;
  /** The tasks in key order, made on demand (memory stays flat for huge tables). */
  tasks(): Generator<ChunkTask>;
}

/** At most this many buckets are hashed by one segment query. */
const BUCKETS_PER_SEGMENT = 64;

const SAMPLES_PER_CHUNK = 16;
const MAX_SAMPLE_ROWS = 200_000;

function single(wholeFirst?: WholeFirst): ChunkPlan {
  return {
    count: 1,
    taskCount: 1,
    *tasks() {
      yield wholeFirst ? { range: WHOLE_RANGE, wholeFirst } : { range: WHOLE_RANGE };
    },
  };
}

function fromBoundaries(bounds: string[][]): ChunkPlan {
  if (!bounds.length) return single();
  return {
    count: bounds.length + 1,
    taskCount: bounds.length + 1,
    *tasks() {
      let lo: string[] | null = null;
      for (const b of bounds) {
        yield { range: { lo, hi: b } };
        lo = b;
      }
      yield { range: { lo, hi: null } };
    },
  };
}

/**
 * Equal-width buckets of about `chunkRows` rows over [lo, hi], grouped into
 * segments so that each query scans a stretch of the table once and returns
 * one count and hash per bucket. Enough segments that every job has work.
 */
function integerPlan(lo: bigint, hi: bigint, chunks: number, jobs: number, wholeScan: boolean): ChunkPlan {
  const width = (hi - lo + 1n + BigInt(chunks) - 1n) / BigInt(chunks);
  const total = Number((hi - lo) / width) + 1;
  const buckets: IntegerBuckets = { origin: lo, width, total };
  const perSegment = wholeScan ? total : Math.max(1, Math.min(BUCKETS_PER_SEGMENT, Math.ceil(total / (jobs * 4))));
  return {
    count: total,
    taskCount: Math.ceil(total / perSegment),
    *tasks() {
      for (let first = 0; first < total; first += perSegment) {
        const last = Math.min(first + perSegment, total) - 1;
        // One segment of every bucket has no key bounds at all: a sequential scan.
        yield { range: { lo: bucketRange(buckets, first).lo, hi: bucketRange(buckets, last).hi }, buckets: { ...buckets, first, last } };
      }
    },
  };
}

export interface PlanChunkOptions {
  /**
   * Dense integer keys: hash every bucket in one sequential scan per side
   * instead of key-range segments over the index. Half the server work on a
   * table larger than shared_buffers (a sequential scan reads through a small
   * ring of buffers; index scans evict the cache page by page; measured 2.0 vs
   * 3.8 CPU s on 4 M pgbench_accounts rows), but the two sides read a row at
   * different moments, so only for a source that is not being written to
   * while replication applies (no subscription, or cutover's fence).
   */
  wholeScan?: boolean;
  /**
   * One whole-table hash per side first, split only where it differs: for
   * tables that are not being written to (cutover's gate, where the source is
   * fenced; verify without replication, or a table whose write counters did
   * not move), which are nearly always equal. A plain aggregate costs about
   * half a grouped one per row (0.16 against 0.34 CPU s per million
   * pgbench_accounts rows), and no plan query runs at all. See ChunkTask.
   */
  wholeFirst?: WholeFirst;
}

/** Plan the first pass. `estimatedRows` < 0 means the statistics know nothing. */
export async function planChunks(source: SideSession, t: VerifyTable, chunkRows: number, jobs = 1, opts: PlanChunkOptions = {}): Promise<ChunkPlan> {
  if (!t.key) return single();
  if (opts.wholeFirst) return single(opts.wholeFirst);
  await source.planFor('range');
  let rows = t.estimatedRows;
  const k = t.key;
  if (k.length === 1 && k[0]!.integer) {
    const [b] = await source.query<{ lo: string | null; hi: string | null }>(integerBoundsQuery(t));
    if (!b || b.lo === null || b.hi === null) return single();
    const lo = BigInt(b.lo);
    const hi = BigInt(b.hi);
    const span = hi - lo + 1n;
    if (rows < 0) rows = Number(span);
    const chunks = Math.max(1, Math.ceil(rows / chunkRows));
    if (chunks === 1) return single();
    // Dense enough: equal-width ranges hold about equal rows. Sparse keys fall through to sampling.
    // (Spans past 2^62 could overflow the bucket arithmetic in int8.)
    if (span <= BigInt(Math.ceil(rows)) * 4n && span < 1n << 62n) return integerPlan(lo, hi, chunks, jobs, !!opts.wholeScan);
  }
  if (rows < 0) {
    await source.planFor('whole');
    const [c] = await source.query<{ n: string }>(countQuery(t));
    rows = Number(c?.n ?? 0);
  }
  const chunks = Math.ceil(rows / chunkRows);
  if (chunks <= 1) return single();
  const wanted = Math.min(chunks * SAMPLES_PER_CHUNK, MAX_SAMPLE_ROWS);
  const percent = Math.min(100, (100 * wanted) / Math.max(rows, 1));
  let sample = await source.query<Record<string, string>>(sampleKeysQuery(t, percent));
  // SYSTEM samples whole pages: on a table of few pages it can pick none at all. Row sampling then
  // (it reads the whole table, which is small when this happens).
  if (sample.length < chunks) sample = await source.query<Record<string, string>>(sampleKeysQuery(t, percent, 'BERNOULLI'));
  if (sample.length < 2) return single();
  const every = Math.max(1, Math.floor(sample.length / chunks));
  const bounds: string[][] = [];
  let last = '';
  for (let i = every; i < sample.length; i += every) {
    const kv = keyValues(sample[i]!, k.length);
    const id = JSON.stringify(kv);
    if (id !== last) bounds.push(kv);
    last = id;
  }
  return fromBoundaries(bounds);
}
