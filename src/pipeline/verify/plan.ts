/**
 * First-pass chunk plan of a keyed table, from the source: integer ranges of
 * equal width for a dense single integer key, otherwise boundaries taken from
 * a block sample of the key (TABLESAMPLE SYSTEM reads a few pages, not the
 * table). Chunks only need to be roughly even: the first range is open below
 * and the last open above, so rows outside the sampled span are still covered.
 */
import type { SideSession } from './sessions.js';
import { countQuery, integerBoundsQuery, keyValues, sampleKeysQuery, WHOLE_RANGE, type KeyRange, type VerifyTable } from './sql.js';

export interface ChunkPlan {
  /** Number of ranges. */
  count: number;
  /** The ranges in key order, made on demand (memory stays flat for huge tables). */
  ranges(): Generator<KeyRange>;
}

const SAMPLES_PER_CHUNK = 16;
const MAX_SAMPLE_ROWS = 200_000;

function single(): ChunkPlan {
  return {
    count: 1,
    *ranges() {
      yield WHOLE_RANGE;
    },
  };
}

function fromBoundaries(bounds: string[][]): ChunkPlan {
  if (!bounds.length) return single();
  return {
    count: bounds.length + 1,
    *ranges() {
      let lo: string[] | null = null;
      for (const b of bounds) {
        yield { lo, hi: b };
        lo = b;
      }
      yield { lo, hi: null };
    },
  };
}

function integerPlan(lo: bigint, hi: bigint, chunks: number): ChunkPlan {
  const width = (hi - lo + 1n + BigInt(chunks) - 1n) / BigInt(chunks);
  const first = lo + width;
  const inner = first <= hi ? Number((hi - first) / width) + 1 : 0;
  return {
    count: inner + 1,
    *ranges() {
      let prev: string[] | null = null;
      for (let b = first; b <= hi; b += width) {
        const cur = [b.toString()];
        yield { lo: prev, hi: cur };
        prev = cur;
      }
      yield { lo: prev, hi: null };
    },
  };
}

/** Plan the first pass. `estimatedRows` < 0 means the statistics know nothing. */
export async function planChunks(source: SideSession, t: VerifyTable, chunkRows: number): Promise<ChunkPlan> {
  if (!t.key) return single();
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
    if (span <= BigInt(Math.ceil(rows)) * 4n) return integerPlan(lo, hi, chunks);
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
  const sample = await source.query<Record<string, string>>(sampleKeysQuery(t, percent));
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
