/**
 * The row diff of one chunk: read a chunk's rows from the source (one
 * statement, so one snapshot) and from the target, and compare them — by key
 * for tables with a key, as a multiset for tables without one. Several steps
 * need this: `verify --repair` writes the differences, and an incremental
 * (timestamp-based) sync finds deleted rows with it.
 *
 * Rows are compared as the canonical text of each column (`col::text` under
 * CANONICAL_SETTINGS on both sides; columns matched by name), which is what
 * verify's row hash is computed from (src/pipeline/verify/sql.ts): integers,
 * timestamps and uuids hash by value there, and their text is equal exactly
 * when their value is. So what verify calls different is what this calls
 * different. Pure SQL builders plus small readers; identifiers go through
 * identifiers.ts and every value is a bind parameter.
 */
import { CANONICAL_SETTINGS } from '../../postgres/connect.js';
import { qualifiedName, quoteIdent } from '../../postgres/identifiers.js';

/** Session settings for reading rows as comparable text (canonical forms, money without locale). */
export const ROW_TEXT_SETTINGS: Readonly<Record<string, string>> = { ...CANONICAL_SETTINGS, lc_monetary: 'C', jit: 'off' };

export type Side = 'source' | 'target';

export interface RowKeyColumn {
  name: string;
  /** format_type() of the column on each side: key values travel as text and are cast. */
  sourceType: string;
  targetType: string;
}

/** What the row diff needs to know of a table (verify's VerifyTable has this shape). */
export interface RowTable {
  schema: string;
  name: string;
  /** Primary key or unique NOT NULL key, or null for a table compared as a multiset. */
  key: readonly RowKeyColumn[] | null;
  /** Columns present on both sides (the order is the order of RowValues). */
  columns: readonly { name: string }[];
  /** Row predicate both sides are compared under, or null. */
  filter: string | null;
  /** FROM ONLY: inheritance children are compared on their own. */
  only: boolean;
}

/** Key range: lo inclusive, hi exclusive, values as text; null = unbounded. */
export interface KeyRange {
  lo: readonly string[] | null;
  hi: readonly string[] | null;
}

export const ALL_ROWS: KeyRange = { lo: null, hi: null };

export interface Query {
  text: string;
  values: unknown[];
}

/** Anything that runs a query and returns its rows (a verify session, a wrapped pg client). */
export interface RowReader {
  query<R extends Record<string, unknown>>(q: Query): Promise<R[]>;
}

/** One row: the text of each column of RowTable.columns, null for NULL. */
export type RowValues = (string | null)[];

export interface KeyedRow {
  key: string[];
  values: RowValues;
  /** The row matches the table's filter (always true on the side read with the filter). */
  inFilter: boolean;
}

export interface KeyedDiff {
  /** On the source, not on the target. */
  missing: KeyedRow[];
  /** On the target (within the filter), not on the source. */
  extra: KeyedRow[];
  /** On both with other values, or on the target outside the filter: target row and source row. */
  different: { source: KeyedRow; target: KeyedRow }[];
}

export interface CountedRow {
  values: RowValues;
  count: number;
}

export interface MultisetDiff {
  /** Copies the source has more of. */
  missing: CountedRow[];
  /** Copies the target has more of. */
  extra: CountedRow[];
}

class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

export function fromClause(t: RowTable): string {
  return `${t.only ? 'ONLY ' : ''}${qualifiedName(t.schema, t.name)}`;
}

function keyType(k: RowKeyColumn, side: Side): string {
  return side === 'source' ? k.sourceType : k.targetType;
}

function keyTuple(key: readonly RowKeyColumn[]): string {
  const cols = key.map((k) => quoteIdent(k.name)).join(', ');
  return key.length === 1 ? cols : `(${cols})`;
}

function boundTuple(key: readonly RowKeyColumn[], values: readonly string[], side: Side, p: Params): string {
  const parts = key.map((k, i) => `${p.add(values[i])}::${keyType(k, side)}`);
  return key.length === 1 ? parts[0]! : `(${parts.join(', ')})`;
}

function rangeConditions(t: RowTable, range: KeyRange, side: Side, p: Params): string[] {
  const parts: string[] = [];
  if (t.key && range.lo) parts.push(`${keyTuple(t.key)} >= ${boundTuple(t.key, range.lo, side, p)}`);
  if (t.key && range.hi) parts.push(`${keyTuple(t.key)} < ${boundTuple(t.key, range.hi, side, p)}`);
  return parts;
}

function where(parts: readonly string[]): string {
  return parts.length ? ` WHERE ${parts.join(' AND ')}` : '';
}

/** The filter as a boolean that is never NULL. */
function filterFlag(t: RowTable): string {
  return t.filter ? `coalesce((${t.filter}), false)` : 'true';
}

/** Canonical text of column i: the form rows are compared in. */
export function columnText(name: string): string {
  return `${quoteIdent(name)}::text`;
}

function selectList(t: RowTable): string {
  const keys = (t.key ?? []).map((k, i) => `${columnText(k.name)} AS k${i}`);
  const cols = t.columns.map((c, i) => `${columnText(c.name)} AS c${i}`);
  return [...keys, ...cols, `${filterFlag(t)} AS pgferry_in`].join(', ');
}

/**
 * Rows of a key range with their key and column texts. The source side is
 * read with the filter (only rows that belong on the target); the target side
 * without it, each row flagged, so that a target row outside the filter whose
 * key the source has is an update rather than a conflicting insert.
 */
export function rangeRowsQuery(t: RowTable, range: KeyRange, side: Side): Query {
  const p = new Params();
  const conds = rangeConditions(t, range, side, p);
  if (side === 'source' && t.filter) conds.push(`(${t.filter})`);
  return { text: `SELECT ${selectList(t)} FROM ${fromClause(t)}${where(conds)}`, values: p.values };
}

/** The rows with these keys (source: within the filter; target: all, flagged). */
export function keyRowsQuery(t: RowTable, keys: readonly (readonly string[])[], side: Side): Query {
  const key = t.key!;
  const p = new Params();
  const arrays = key.map((k, i) => `${p.add(keys.map((row) => row[i]))}::${keyType(k, side)}[]`);
  const conds = [`${keyTuple(key)} IN (SELECT * FROM unnest(${arrays.join(', ')}))`];
  if (side === 'source' && t.filter) conds.push(`(${t.filter})`);
  return { text: `SELECT ${selectList(t)} FROM ${fromClause(t)}${where(conds)}`, values: p.values };
}

function toKeyedRow(t: RowTable, r: Record<string, unknown>): KeyedRow {
  const key: string[] = [];
  for (let i = 0; i < t.key!.length; i++) key.push(String(r[`k${i}`]));
  return { key, values: rowValues(t, r), inFilter: r.pgferry_in === true };
}

function rowValues(t: RowTable, r: Record<string, unknown>): RowValues {
  const values: RowValues = [];
  for (let i = 0; i < t.columns.length; i++) {
    const v = r[`c${i}`];
    values.push(v === null || v === undefined ? null : String(v));
  }
  return values;
}

export async function readRange(reader: RowReader, t: RowTable, range: KeyRange, side: Side): Promise<KeyedRow[]> {
  return (await reader.query(rangeRowsQuery(t, range, side))).map((r) => toKeyedRow(t, r));
}

export async function readKeys(reader: RowReader, t: RowTable, keys: readonly (readonly string[])[], side: Side): Promise<KeyedRow[]> {
  if (!keys.length) return [];
  return (await reader.query(keyRowsQuery(t, keys, side))).map((r) => toKeyedRow(t, r));
}

export function keyId(key: readonly string[]): string {
  return JSON.stringify(key);
}

export function sameValues(a: RowValues, b: RowValues): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Compare source rows (read with the filter) with target rows (read without it, flagged), by key. */
export function compareKeyed(source: readonly KeyedRow[], target: readonly KeyedRow[]): KeyedDiff {
  const byKey = new Map(target.map((r) => [keyId(r.key), r]));
  const out: KeyedDiff = { missing: [], extra: [], different: [] };
  for (const s of source) {
    const id = keyId(s.key);
    const t = byKey.get(id);
    byKey.delete(id);
    if (!t) out.missing.push(s);
    else if (!t.inFilter || !sameValues(s.values, t.values)) out.different.push({ source: s, target: t });
  }
  for (const t of byKey.values()) if (t.inFilter) out.extra.push(t);
  return out;
}

export function keyedDiffSize(d: KeyedDiff): number {
  return d.missing.length + d.extra.length + d.different.length;
}

/* ---- Tables without a key: rows as a multiset, located by hash buckets ---- */

/** Hash of a row's column texts (columns in RowTable order, so equal on both sides). */
function rowTextHash(t: RowTable): string {
  if (!t.columns.length) return '0::int8';
  return `hashtextextended((ROW(${t.columns.map((c) => columnText(c.name)).join(', ')}))::text, 0)`;
}

function bucketExpr(t: RowTable, p: Params, buckets: number): string {
  const b = p.add(buckets);
  return `((${rowTextHash(t)} % ${b}::int8) + ${b}::int8) % ${b}::int8`;
}

/** count and hash sum per bucket, rows within the filter. Returns columns b, n, h (text). */
export function bucketSummaryQuery(t: RowTable, buckets: number): Query {
  const p = new Params();
  const bucket = bucketExpr(t, p, buckets);
  const conds = t.filter ? [`(${t.filter})`] : [];
  return {
    text:
      `SELECT b::text AS b, count(*)::text AS n, sum(h)::text AS h FROM ` +
      `(SELECT ${bucket} AS b, ${rowTextHash(t)} AS h FROM ${fromClause(t)}${where(conds)} OFFSET 0) s GROUP BY b`,
    values: p.values,
  };
}

/** Column texts of the rows (within the filter) in these buckets. Returns c0…cn. */
export function bucketRowsQuery(t: RowTable, buckets: number, which: readonly number[]): Query {
  const p = new Params();
  const bucket = bucketExpr(t, p, buckets);
  const conds = [`${bucket} = ANY(${p.add(which.map(String))}::int8[])`];
  if (t.filter) conds.push(`(${t.filter})`);
  const cols = t.columns.map((c, i) => `${columnText(c.name)} AS c${i}`);
  return { text: `SELECT ${cols.length ? cols.join(', ') : '1 AS pgferry_one'} FROM ${fromClause(t)}${where(conds)}`, values: p.values };
}

function countRows(rows: readonly RowValues[]): Map<string, CountedRow> {
  const m = new Map<string, CountedRow>();
  for (const v of rows) {
    const id = JSON.stringify(v);
    const c = m.get(id);
    if (c) c.count++;
    else m.set(id, { values: v, count: 1 });
  }
  return m;
}

export function compareMultiset(source: readonly RowValues[], target: readonly RowValues[]): MultisetDiff {
  const s = countRows(source);
  const t = countRows(target);
  const out: MultisetDiff = { missing: [], extra: [] };
  for (const [id, sc] of s) {
    const n = sc.count - (t.get(id)?.count ?? 0);
    if (n > 0) out.missing.push({ values: sc.values, count: n });
  }
  for (const [id, tc] of t) {
    const n = tc.count - (s.get(id)?.count ?? 0);
    if (n > 0) out.extra.push({ values: tc.values, count: n });
  }
  return out;
}

export function multisetDiffSize(d: MultisetDiff): number {
  return d.missing.reduce((n, r) => n + r.count, 0) + d.extra.reduce((n, r) => n + r.count, 0);
}

export interface PairReaders {
  source: RowReader;
  target: RowReader;
}

export interface ChunkDiffOptions {
  /**
   * Runs after the source was read and before the target is: e.g. wait until
   * the target has applied past the source position of that read.
   */
  beforeTarget?: () => Promise<void>;
}

/** The row diff of one key range of a keyed table: source first (one statement, one snapshot), then the target. */
export async function diffKeyedChunk(pair: PairReaders, t: RowTable, range: KeyRange, opts: ChunkDiffOptions = {}): Promise<KeyedDiff> {
  if (!t.key) throw new Error(`${t.schema}.${t.name} has no key: use diffKeylessTable`);
  const source = await readRange(pair.source, t, range, 'source');
  await opts.beforeTarget?.();
  const target = await readRange(pair.target, t, range, 'target');
  return compareKeyed(source, target);
}

/** The row diff of the rows with these keys (a recheck of located rows). */
export async function diffKeys(pair: PairReaders, t: RowTable, keys: readonly (readonly string[])[], opts: ChunkDiffOptions = {}): Promise<KeyedDiff> {
  const source = await readKeys(pair.source, t, keys, 'source');
  await opts.beforeTarget?.();
  const target = await readKeys(pair.target, t, keys, 'target');
  return compareKeyed(source, target);
}

/** Rows per hash bucket aimed at when a table without a key is located. */
export const KEYLESS_BUCKET_ROWS = 1000;

/**
 * The row diff of a table without a key. The rows are cut into hash buckets
 * (about KEYLESS_BUCKET_ROWS rows each): a count and hash sum per bucket on
 * both sides finds the buckets that differ, and only their rows are read and
 * compared as multisets (source first, then the target, `beforeTarget`
 * between both reads). Memory holds the differing buckets, not the table.
 */
export async function diffKeylessTable(pair: PairReaders, t: RowTable, estimatedRows: number, opts: ChunkDiffOptions = {}): Promise<MultisetDiff> {
  const buckets = Math.max(1, Math.min(1_000_000, Math.ceil(Math.max(estimatedRows, 1) / KEYLESS_BUCKET_ROWS)));
  const summary = async (reader: RowReader) =>
    new Map((await reader.query<{ b: string; n: string; h: string }>(bucketSummaryQuery(t, buckets))).map((r) => [Number(r.b), `${r.n}/${r.h}`]));
  const src = await summary(pair.source);
  await opts.beforeTarget?.();
  const tgt = await summary(pair.target);
  const differing: number[] = [];
  for (const b of new Set([...src.keys(), ...tgt.keys()])) if (src.get(b) !== tgt.get(b)) differing.push(b);
  if (!differing.length) return { missing: [], extra: [] };
  const rows = async (reader: RowReader) => (await reader.query(bucketRowsQuery(t, buckets, differing))).map((r) => rowValues(t, r));
  const sourceRows = await rows(pair.source);
  await opts.beforeTarget?.();
  const targetRows = await rows(pair.target);
  return compareMultiset(sourceRows, targetRows);
}

/** How many rows equal to `values` (and within the filter) a side holds. */
export function countEqualRowsQuery(t: RowTable, values: RowValues): Query {
  const p = new Params();
  const conds = rowMatch(t, values, p);
  if (t.filter) conds.push(`(${t.filter})`);
  return { text: `SELECT count(*)::text AS n FROM ${fromClause(t)}${where(conds)}`, values: p.values };
}

/** Conditions that a row's column texts equal `values` (NULL matches NULL only). */
export function rowMatch(t: RowTable, values: RowValues, p: { add(v: unknown): string }): string[] {
  return t.columns.map((c, i) => `(${columnText(c.name)} COLLATE "C") IS NOT DISTINCT FROM ${p.add(values[i])}::text`);
}
