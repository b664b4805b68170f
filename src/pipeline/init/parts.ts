/**
 * How a table is cut into parts that workers copy in parallel, each part in
 * its own target transaction.
 *
 * - A partitioned table is copied through its leaf partitions; each leaf is a
 *   relation of its own and may be split further.
 * - A relation above the threshold is split by physical page ranges (CTID)
 *   when the source has TID range scans (PostgreSQL 14+): parts of equal size,
 *   each read without touching the rest of the table. Older sources split by
 *   ranges of a single-column integer primary key (an index range scan per
 *   part); a relation with neither stays whole.
 * - The first and last ranges are open-ended, so rows beyond the bounds seen
 *   at planning time (a plan made outside the snapshot, a table that grew)
 *   still belong to exactly one part.
 */
import type pg from 'pg';
import { displayName, qualifiedName, quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import type { ScopeTable } from '../../config/scope.js';

export interface RelationName {
  schema: string;
  name: string;
}

export type PartRange =
  | null
  | { kind: 'ctid'; fromPage: number; toPage: number | null }
  | { kind: 'key'; column: string; from: string | null; to: string | null };

export interface TablePart {
  /** Stable id, e.g. `public.orders#3` or `public.orders_2024#0` (names quoted where needed). */
  id: string;
  /** The table in scope. */
  root: RelationName;
  /** What COPY reads and writes (a leaf partition for partitioned tables). */
  relation: RelationName;
  /** Part index and number of parts of this relation. */
  index: number;
  count: number;
  /** [from, to) pages or [from, to) integer keys; null = the whole relation. */
  range: PartRange;
  estimatedBytes: number;
}

export interface PartOptions {
  /** Relations larger than this (heap + TOAST bytes) are split. */
  splitThresholdBytes: number;
  /** At most this many parts per relation. */
  maxParts: number;
  sourceMajor: number;
}

/** Splitting loses COPY FREEZE and a table rarely benefits below this size. */
export const DEFAULT_SPLIT_THRESHOLD_BYTES = 1024 ** 3;
export const DEFAULT_MAX_PARTS = 16;

/** First major with TID range scans (ctid >= … AND ctid < … reads only those pages). */
export const TID_RANGE_SCAN_MAJOR = 14;

const INTEGER_TYPES = new Set([20, 21, 23]); // int8, int2, int4

export function partId(relation: RelationName, index: number): string {
  return `${displayName(relation.schema, relation.name)}#${index}`;
}

/** Below this, splitting a table only to keep the workers busy is not worth losing COPY FREEZE. */
export const MIN_BALANCE_SPLIT_BYTES = 256 * 1024 ** 2;

/**
 * The threshold actually used: the configured one, lowered to one worker's
 * share of the whole copy when a single table would otherwise keep one
 * worker busy long after the others are done (e.g. a 900 MB table next to
 * 100 MB of others with 2 jobs is cut in two).
 */
export function effectiveSplitThreshold(thresholdBytes: number, totalBytes: number, jobs: number | undefined): number {
  if (!jobs || jobs <= 1 || !(thresholdBytes > 0)) return thresholdBytes;
  return Math.min(thresholdBytes, Math.max(MIN_BALANCE_SPLIT_BYTES, Math.ceil(totalBytes / jobs)));
}

/** Number of parts for a relation of this size. */
export function partCount(bytes: number, opts: Pick<PartOptions, 'splitThresholdBytes' | 'maxParts'>): number {
  if (!(opts.splitThresholdBytes > 0) || bytes <= opts.splitThresholdBytes) return 1;
  return Math.max(1, Math.min(Math.floor(opts.maxParts), Math.ceil(bytes / opts.splitThresholdBytes)));
}

/** `count` page ranges covering [0, ∞): equal widths over `pages`, the last one open-ended. */
export function pageRanges(pages: number, count: number): { fromPage: number; toPage: number | null }[] {
  const n = Math.max(1, Math.min(count, pages));
  const width = Math.ceil(pages / n);
  const out: { fromPage: number; toPage: number | null }[] = [];
  for (let i = 0; i < n; i++) {
    const from = i * width;
    if (i > 0 && from >= pages) break;
    out.push({ fromPage: from, toPage: i === n - 1 || (i + 1) * width >= pages ? null : (i + 1) * width });
  }
  return out;
}

/** `count` key ranges covering every integer: cut points spread evenly over [min, max], both ends open. */
export function keyRanges(min: bigint, max: bigint, count: number): { from: string | null; to: string | null }[] {
  if (max < min) return [{ from: null, to: null }];
  const span = max - min + 1n;
  const n = BigInt(Math.max(1, Math.min(count, Number(span < 1_000_000n ? span : 1_000_000n))));
  const cuts: bigint[] = [];
  for (let i = 1n; i < n; i++) {
    const cut = min + (span * i) / n;
    if (cuts.length === 0 || cut > cuts[cuts.length - 1]!) cuts.push(cut);
  }
  const out: { from: string | null; to: string | null }[] = [];
  let from: string | null = null;
  for (const cut of cuts) {
    out.push({ from, to: cut.toString() });
    from = cut.toString();
  }
  out.push({ from, to: null });
  return out;
}

/** The SQL condition that selects a part's rows (null for a whole relation). */
export function rangePredicate(range: PartRange): string | null {
  if (!range) return null;
  const conds: string[] = [];
  if (range.kind === 'ctid') {
    if (range.fromPage > 0) conds.push(`ctid >= ${quoteLiteral(`(${range.fromPage},0)`)}::tid`);
    if (range.toPage !== null) conds.push(`ctid < ${quoteLiteral(`(${range.toPage},0)`)}::tid`);
  } else {
    const col = quoteIdent(range.column);
    if (range.from !== null) conds.push(`${col} >= ${quoteLiteral(checkInteger(range.from))}`);
    if (range.to !== null) conds.push(`${col} < ${quoteLiteral(checkInteger(range.to))}`);
  }
  return conds.length ? conds.join(' AND ') : null;
}

function checkInteger(v: string): string {
  if (!/^-?\d+$/.test(v)) throw new Error(`key bound "${v}" is not an integer`);
  return v;
}

/** The relations COPY reads for a table: its leaf partitions, or itself. */
export function relationsOf(table: Pick<ScopeTable, 'schema' | 'name' | 'relkind' | 'partitions'>): RelationName[] {
  if (table.relkind === 'p') return table.partitions.map((p) => ({ schema: p.schema, name: p.name }));
  return [{ schema: table.schema, name: table.name }];
}

/** The single-column integer primary key usable for key ranges, if any. */
export function integerKeyColumn(table: Pick<ScopeTable, 'primaryKey' | 'columns'>): string | null {
  if (!table.primaryKey || table.primaryKey.length !== 1) return null;
  const col = table.columns.find((c) => c.name === table.primaryKey![0]);
  return col && INTEGER_TYPES.has(col.typeOid) ? col.name : null;
}

export interface RelationSize {
  mainBytes: number;
  totalBytes: number;
  blockSize: number;
}

/** Sizes of many relations in one query (planning 200 small tables must not cost 200 round trips). */
export async function relationSizes(client: pg.Client, relations: RelationName[]): Promise<RelationSize[]> {
  if (!relations.length) return [];
  // Sizes now (not statistics); a relation dropped meanwhile counts as empty.
  const { rows } = await client.query<{ ord: number; main: number; total: number; block_size: number }>(
    `SELECT r.ord::int AS ord,
            COALESCE(pg_relation_size(to_regclass(r.name)), 0)::float8 AS main,
            COALESCE(pg_table_size(to_regclass(r.name)), 0)::float8 AS total,
            current_setting('block_size')::int AS block_size
       FROM unnest($1::text[]) WITH ORDINALITY AS r(name, ord)
      ORDER BY r.ord`,
    [relations.map((r) => qualifiedName(r.schema, r.name))],
  );
  return rows.map((r) => ({ mainBytes: Number(r.main), totalBytes: Number(r.total), blockSize: r.block_size }));
}

/**
 * Plan the parts of one table. Run it on the source, ideally inside the
 * snapshot the copy will use (key bounds are then exact; either way the open
 * ends keep every row covered).
 */
export async function planParts(client: pg.Client, table: ScopeTable, opts: PartOptions, knownSizes?: RelationSize[]): Promise<TablePart[]> {
  const root = { schema: table.schema, name: table.name };
  const relations = relationsOf(table);
  const sizes = knownSizes ?? (await relationSizes(client, relations));
  const keyColumn = integerKeyColumn(table);
  const parts: TablePart[] = [];
  for (const [i, relation] of relations.entries()) {
    const size = sizes[i]!;
    const wanted = partCount(size.totalBytes, opts);
    let ranges: PartRange[] = [null];
    if (wanted > 1 && opts.sourceMajor >= TID_RANGE_SCAN_MAJOR) {
      const pages = Math.ceil(size.mainBytes / size.blockSize);
      const pr = pageRanges(pages, wanted);
      if (pr.length > 1) ranges = pr.map((r) => ({ kind: 'ctid', ...r }));
    } else if (wanted > 1 && keyColumn) {
      const col = quoteIdent(keyColumn);
      const { rows } = await client.query<{ lo: string | null; hi: string | null }>(
        `SELECT min(${col})::text AS lo, max(${col})::text AS hi FROM ONLY ${qualifiedName(relation.schema, relation.name)}`,
      );
      const lo = rows[0]?.lo;
      const hi = rows[0]?.hi;
      if (lo != null && hi != null) {
        const kr = keyRanges(BigInt(lo), BigInt(hi), wanted);
        if (kr.length > 1) ranges = kr.map((r) => ({ kind: 'key', column: keyColumn, ...r }));
      }
    }
    const count = ranges.length;
    ranges.forEach((range, index) => {
      parts.push({
        id: partId(relation, index),
        root,
        relation,
        index,
        count,
        range,
        estimatedBytes: Math.round(size.totalBytes / count),
      });
    });
  }
  return parts;
}
