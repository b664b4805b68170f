/**
 * The rate the estimate before the copy uses: a short read of the largest
 * table through the same COPY the copy will run (format, masking, filter),
 * discarded as it arrives. It measures the source and the wire, not the
 * target's writes, so the time it gives is a floor; the copy's own progress
 * replaces it with the rate measured end to end after a few seconds.
 */
import type pg from 'pg';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { to as copyTo } from 'pg-copy-streams';
import { copyOutSql } from './copy-part.js';
import type { TableCopyPlan } from './copy-plan.js';

/** Below this much data the copy takes seconds whatever the rate: not worth a sample. */
export const SAMPLE_MIN_TOTAL_BYTES = 64 * 1024 * 1024;
/** How much of the table (in its on-disk size) one sample reads. */
export const SAMPLE_BYTES = 24 * 1024 * 1024;

export interface SampledRate {
  /** On-disk bytes of the table read per second by one stream (the unit of the plan's byte figures). */
  bytesPerSecond: number;
  /** "schema.table" sampled. */
  table: string;
  sampledBytes: number;
  ms: number;
}

/**
 * Read about `sampleBytes` of the plan's first part and discard it. Null when
 * the table has no row statistics to turn rows into bytes, or gave no rows.
 */
export async function sampleReadRate(client: pg.Client, plan: TableCopyPlan, sampleBytes = SAMPLE_BYTES): Promise<SampledRate | null> {
  const rows = plan.table.estimatedRows;
  const part = plan.parts[0];
  if (!part || !(rows > 0) || !(plan.estimatedBytes > 0)) return null;
  const bytesPerRow = plan.estimatedBytes / rows;
  const limit = Math.max(1, Math.ceil(sampleBytes / bytesPerRow));
  // LIMIT rather than a ctid range: before 14 a ctid range is a full scan.
  const query = copyTo(copyOutSql(part.relation, plan.columns, plan.format, plan.filter, null, plan.select, limit));
  const t0 = performance.now();
  await pipeline(client.query(query), new Writable({ write(_chunk: Buffer, _enc, cb) { cb(); } }));
  const ms = performance.now() - t0;
  const read = Math.min(query.rowCount, limit);
  if (read === 0 || ms <= 0) return null;
  const sampledBytes = read * bytesPerRow;
  return { bytesPerSecond: (sampledBytes * 1000) / ms, table: plan.key, sampledBytes, ms };
}
