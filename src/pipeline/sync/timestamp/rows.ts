/**
 * The two ways a round brings a table up to date, both reading the source
 * inside the round's one REPEATABLE READ snapshot:
 *
 * - changed rows: every row whose timestamp is at or after the table's mark
 *   (or NULL: a row nobody stamped is never skipped), in key order through a
 *   cursor, upserted batch by batch. Batches follow the key, not the
 *   timestamp, so rows sharing a timestamp cannot fall between two batches.
 * - chunk comparison: key ranges of about a batch each, cut at source keys;
 *   the rows of each range are compared with the target's (the shared row
 *   diff) and only the differences written: missing and different rows
 *   upserted, extra rows deleted. With `keysOnly` (--detect-deletes on a
 *   table read by timestamp) only keys are compared.
 */
import type pg from 'pg';
import { faultPoint } from '../../../fault.js';
import { throwIfShuttingDown } from '../../../lifecycle.js';
import { quoteIdent } from '../../../postgres/identifiers.js';
import { columnText, diffKeyedChunk, fromClause, readKeys, type KeyRange, type RowReader, type RowValues } from '../../shared/row-diff.js';
import type { TsTable } from './tables.js';
import { applyBatch } from './uniques.js';

/** A widest time-zone offset: a `timestamp without time zone` was written in some writer's zone, unknown here. */
const NAIVE_TIMESTAMP_WIDENING = "interval '14 hours'";

export interface Sides {
  /** Source client inside the round's snapshot. */
  source: pg.Client;
  /** Target client that reads (autocommit). */
  target: pg.Client;
  /** Target client that writes, one transaction per batch. */
  writer: pg.Client;
  batchSize: number;
  signal?: AbortSignal | undefined;
}

export function reader(c: pg.Client): RowReader {
  return { query: async (q) => (await c.query(q.text, q.values)).rows };
}

function keyOrder(t: TsTable): string {
  return t.key.map((k) => quoteIdent(k.name)).join(', ');
}

/**
 * Rows written by a transaction whose 64-bit ID is at or above $1: `xmin` holds the low 32 bits, placed in the
 * 2^32 IDs below the snapshot's xmax (rows frozen long ago can alias to a recent ID: read again, never missed).
 * IDs 0-2 are the bootstrap and frozen ones.
 */
const WRITTEN_SINCE_XMIN =
  '(xmin::text::bigint >= 3 AND ((pgferry_snap.pgferry_xmax - xmin::text::bigint) % 4294967296 + 4294967296) % 4294967296 <= pgferry_snap.pgferry_xmax - $1::bigint)';
const SNAPSHOT_XMAX = '(SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()) AS pgferry_xmax) AS pgferry_snap';

/**
 * Where a table's read starts: by timestamp (`mark`), and by transaction ID (`xmin`) where the timestamp
 * cannot be trusted: on a standby (the primary's open transactions are invisible there), and on the
 * primary after a mark read on a standby. A missing mark or xmin where one is needed: every row.
 */
export interface ReadFrom {
  mark: string | null;
  xmin: string | null;
  /** The source is a standby. */
  standby: boolean;
  /** The mark was read on a standby. */
  markFromStandby: boolean;
}

function changedRowsSql(t: TsTable, from: ReadFrom): { text: string; values: unknown[] } {
  const conds: string[] = [];
  const values: unknown[] = [];
  let extraFrom = '';
  const needXmin = from.standby || from.markFromStandby;
  if (t.timestamp && from.mark !== null && !(needXmin && from.xmin === null)) {
    const either: string[] = [];
    if (needXmin) {
      values.push(from.xmin);
      either.push(WRITTEN_SINCE_XMIN);
      extraFrom = `, ${SNAPSHOT_XMAX}`;
    }
    if (!from.standby) {
      values.push(from.mark);
      const p = `$${values.length}::timestamptz`;
      const col = quoteIdent(t.timestamp.name);
      either.push(`${col} >= ${t.timestamp.withTimeZone ? p : `(${p} AT TIME ZONE 'UTC') - ${NAIVE_TIMESTAMP_WIDENING}`}`, `${col} IS NULL`);
    }
    conds.push(`(${either.join(' OR ')})`);
  }
  if (t.filter) conds.push(`(${t.filter})`);
  const cols = t.columns.map((c, i) => `${columnText(c.name)} AS c${i}`).join(', ');
  return { text: `SELECT ${cols} FROM ${fromClause(t)}${extraFrom}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${keyOrder(t)}`, values };
}

function values(t: TsTable, r: Record<string, unknown>): RowValues {
  return t.columns.map((_, i) => {
    const v = r[`c${i}`];
    return v === null || v === undefined ? null : String(v);
  });
}

async function inTransaction<T>(c: pg.Client, fn: () => Promise<T>): Promise<T> {
  await c.query('BEGIN');
  try {
    const out = await fn();
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Upsert the rows stamped at or after the mark (on a standby: written since the mark's xmin; every row without
 * one), batch by batch. Returns rows upserted.
 */
export async function upsertChanged(s: Sides, t: TsTable, from: ReadFrom): Promise<number> {
  const cursor = 'pgferry_changed';
  const q = changedRowsSql(t, from);
  await s.source.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR ${q.text}`, q.values);
  let total = 0;
  try {
    for (;;) {
      if (s.signal) throwIfShuttingDown(s.signal);
      const { rows } = await s.source.query(`FETCH ${Number(s.batchSize)} FROM ${cursor}`);
      if (!rows.length) break;
      total += (await inTransaction(s.writer, () => applyBatch(s.writer, reader(s.source), t, t.uniques, rows.map((r) => values(t, r)), []))).upserted;
      faultPoint('sync.timestamp.mid-round');
      if (rows.length < s.batchSize) break;
    }
  } finally {
    await s.source.query(`CLOSE ${cursor}`).catch(() => {});
  }
  return total;
}

/** The first source key at or after `lo` that starts the next chunk, or null when the rest fits in one. */
async function nextBoundary(s: Sides, t: TsTable, lo: readonly string[] | null): Promise<string[] | null> {
  const params: unknown[] = [];
  const conds: string[] = [];
  if (lo) {
    const tuple = t.key.map((k, i) => (params.push(lo[i]), `$${params.length}::${k.sourceType}`));
    const cols = t.key.map((k) => quoteIdent(k.name));
    conds.push(t.key.length === 1 ? `${cols[0]} >= ${tuple[0]}` : `(${cols.join(', ')}) >= (${tuple.join(', ')})`);
  }
  if (t.filter) conds.push(`(${t.filter})`);
  params.push(s.batchSize);
  const sel = t.key.map((k, i) => `${columnText(k.name)} AS k${i}`).join(', ');
  const sql = `SELECT ${sel} FROM ${fromClause(t)}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''} ORDER BY ${keyOrder(t)} OFFSET $${params.length} LIMIT 1`;
  const { rows } = await s.source.query(sql, params);
  const r = rows[0] as Record<string, unknown> | undefined;
  return r ? t.key.map((_, i) => String(r[`k${i}`])) : null;
}

export interface CompareCounts {
  chunks: number;
  upserted: number;
  deleted: number;
}

/** Compare the table chunk by chunk and write only the differences. */
export async function compareAndFix(s: Sides, t: TsTable, keysOnly: boolean): Promise<CompareCounts> {
  const compared = keysOnly ? { ...t, columns: [] } : t;
  const out: CompareCounts = { chunks: 0, upserted: 0, deleted: 0 };
  let lo: string[] | null = null;
  for (;;) {
    if (s.signal) throwIfShuttingDown(s.signal);
    const hi = await nextBoundary(s, t, lo);
    const range: KeyRange = { lo, hi };
    const diff = await diffKeyedChunk({ source: reader(s.source), target: reader(s.target) }, compared, range);
    out.chunks++;
    let rows: RowValues[] = [...diff.missing.map((r) => r.values), ...diff.different.map((d) => d.source.values)];
    if (keysOnly) {
      const keys = [...diff.missing.map((r) => r.key), ...diff.different.map((d) => d.source.key)];
      rows = (await readKeys(reader(s.source), t, keys, 'source')).map((r) => r.values);
    }
    const extra = diff.extra.map((r) => r.key);
    if (rows.length || extra.length) {
      const done = await inTransaction(s.writer, () => applyBatch(s.writer, reader(s.source), t, t.uniques, rows, extra));
      out.upserted += done.upserted;
      out.deleted += done.deleted;
    }
    if (!hi) break;
    lo = hi;
  }
  return out;
}
