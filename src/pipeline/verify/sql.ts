/**
 * The SQL that verify runs, built from a table description. Pure functions:
 * identifiers go through identifiers.ts, every value is a bind parameter.
 *
 * Row hash. Each column is hashed on its own and the column hashes are XORed:
 *   int2/int4/int8             → hashint8extended(col::int8, seed)
 *   timestamp, timestamptz     → timestamp_hash_extended(col::timestamp, seed) (the µs value; the
 *                                 sessions run with TimeZone=UTC, so the cast shifts nothing)
 *   date                       → timestamp_hash_extended(col::timestamp, seed): midnight of the day
 *                                 (one timestamp per date); dates past timestamp's range (after
 *                                 294276 AD, and +infinity) are hashed as text instead
 *   uuid                       → uuid_hash_extended(col, seed)
 *   anything else              → hashtextextended(col::text COLLATE "C", seed); on a side where
 *                                 the column is char(n), hashbpcharextended(col COLLATE "C", seed),
 *                                 which gives the same value without building the text copy
 *   NULL                       → a fixed 64-bit constant per column position
 * with a different seed per column position (columns sorted by name, so
 * attnum order does not matter). The chunk aggregate is count(*) plus the
 * sum of the row hashes as numeric (PostgreSQL sums int8 in a 128-bit
 * accumulator: no overflow, constant size whatever the row count).
 *
 * Why this hash: the text forms are canonical under the session settings both
 * sides use (CANONICAL_SETTINGS), so equal data hash equal on any major;
 * the *extended functions are the hash-partitioning functions, whose values
 * PostgreSQL keeps stable across versions; a 64-bit hash makes an accidental
 * cancellation ~2^-64; and hashing columns one by one skips the
 * row-construction and quoting work of record_out, so it costs less CPU than
 * sum(hashtext(t::text)) (scripts/bench/verify-bench.mjs measures both). The binary paths
 * are used only where equal binary values always print alike (not numeric,
 * where 1.0 and 1.00 are equal but must count as different; not floats, -0).
 * XOR inside a row and addition across rows keep two rows that swap a value
 * from cancelling out.
 */
import { qualifiedName, quoteIdent } from '../../postgres/identifiers.js';

const INT_TYPES = new Set([20, 21, 23]); // int8, int2, int4
const TIMESTAMP_TYPES = new Set([1114, 1184]); // timestamp, timestamptz
const UUID_TYPE = 2950;
const DATE_TYPE = 1082;

export interface HashColumn {
  name: string;
  /** Hash path chosen from the source column's type; both sides use the same expression. */
  kind: 'int' | 'timestamp' | 'date' | 'uuid' | 'text';
  /** A masked column (data rules): the source side hashes this expression, the masked source value, instead of the column. */
  sourceExpr?: string;
  /**
   * The sides where the column is char(n). There hashbpcharextended hashes the
   * value without the cast to text (which strips the padding into a copy, and
   * costs 4× the hash): it gives exactly hashtextextended of that text.
   */
  bpchar?: { source: boolean; target: boolean };
  /**
   * The sides that hold no NULL in this column (a validated NOT NULL): there the
   * hash needs no coalesce (~7 % of the row hash on narrow tables). Equal values
   * hash the same either way; a NULL can only occur on a side that keeps it.
   */
  notNull?: { source: boolean; target: boolean };
}

export interface KeyColumn {
  name: string;
  /** format_type() on each side, used to cast key values passed as text. */
  sourceType: string;
  targetType: string;
  /** int2/int4/int8 on the source. */
  integer: boolean;
}

export type Side = 'source' | 'target';

export interface VerifyTable {
  schema: string;
  name: string;
  display: string;
  /** Key the chunks follow (primary key or unique NOT NULL key), or null. */
  key: KeyColumn[] | null;
  /** Columns present on both sides, sorted by name. */
  columns: HashColumn[];
  /** Row predicate, or null. */
  filter: string | null;
  /** SELECT … FROM ONLY: the table has inheritance children that are compared on their own. */
  only: boolean;
  /** pg_class.reltuples; -1 when the statistics know nothing. */
  estimatedRows: number;
  /** Where estimatedRows is -1, the live rows the cumulative statistics count (CatalogTable.liveRows), if read. */
  liveRows?: number | null;
}

/** A key range: lo inclusive, hi exclusive, values as text; null = unbounded. */
export interface KeyRange {
  lo: string[] | null;
  hi: string[] | null;
}

export const WHOLE_RANGE: KeyRange = { lo: null, hi: null };

const BPCHAR_TYPE = 1042;

/** Is this format_type() text char(n)? */
export function isBpcharType(formatted: string): boolean {
  return /^(character(\(\d+\))?|bpchar)$/.test(formatted);
}

export function bpcharSides(sourceTypeOid: number, targetType: string): HashColumn['bpchar'] {
  const sides = { source: sourceTypeOid === BPCHAR_TYPE, target: isBpcharType(targetType) };
  return sides.source || sides.target ? sides : undefined;
}

export function hashKind(typeOid: number): HashColumn['kind'] {
  if (INT_TYPES.has(typeOid)) return 'int';
  if (TIMESTAMP_TYPES.has(typeOid)) return 'timestamp';
  if (typeOid === UUID_TYPE) return 'uuid';
  if (typeOid === DATE_TYPE) return 'date';
  return 'text';
}

function columnHash(c: HashColumn, seed: number, side?: Side): string {
  const col = side === 'source' && c.sourceExpr ? `(${c.sourceExpr})` : quoteIdent(c.name);
  switch (c.kind) {
    case 'int':
      return `hashint8extended(${col}::int8, ${seed})`;
    case 'timestamp':
      return `timestamp_hash_extended(${col}::timestamp, ${seed})`;
    case 'date':
      // date → timestamp is exact below 294277 AD and an error above it (there the text form is hashed).
      return `CASE WHEN ${col}::date < '294277-01-01'::date THEN timestamp_hash_extended(${col}::date::timestamp, ${seed}) ELSE hashtextextended(${col}::text COLLATE "C", ${seed}) END`;
    case 'uuid':
      return `uuid_hash_extended(${col}::uuid, ${seed})`;
    default:
      if (side && c.bpchar?.[side] && !(side === 'source' && c.sourceExpr)) return `hashbpcharextended(${col} COLLATE "C", ${seed})`;
      return `hashtextextended(${col}::text COLLATE "C", ${seed})`;
  }
}

const nullConstants: string[] = [];

/** splitmix64: fixed, well-spread 64-bit constants for NULLs, one per column position. */
export function nullConstant(position: number): string {
  // Computed once per position: every statement for every table spells them out.
  return (nullConstants[position] ??= splitmix64(position));
}

function splitmix64(position: number): string {
  const mask = (1n << 64n) - 1n;
  let z = (BigInt(position + 1) * 0x9e3779b97f4a7c15n) & mask;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask;
  z = z ^ (z >> 31n);
  return BigInt.asIntN(64, z).toString();
}

/** The per-row hash expression (int8). */
export function rowHashExpr(columns: readonly HashColumn[], side?: Side): string {
  if (columns.length === 0) return '0::int8';
  return columns
    .map((c, i) => {
      const hash = columnHash(c, i + 1, side);
      // A masked source value is an expression, which may be NULL whatever the column's constraint.
      const neverNull = side !== undefined && !!c.notNull?.[side] && !(side === 'source' && c.sourceExpr);
      return neverNull ? hash : `coalesce(${hash}, (${nullConstant(i)})::int8)`;
    })
    .join(' # ');
}

function fromClause(t: VerifyTable): string {
  return `${t.only ? 'ONLY ' : ''}${qualifiedName(t.schema, t.name)}`;
}

/** A SHARE lock on the table (and its partitions or children unless ONLY): its writers wait, its readers do not. */
export function shareLockStatement(t: VerifyTable): string {
  return `LOCK TABLE ${fromClause(t)} IN SHARE MODE`;
}

function keyType(k: KeyColumn, side: Side): string {
  return side === 'source' ? k.sourceType : k.targetType;
}

function keyTuple(key: readonly KeyColumn[]): string {
  const cols = key.map((k) => quoteIdent(k.name)).join(', ');
  return key.length === 1 ? cols : `(${cols})`;
}

/** Collects bind parameters and hands out $n placeholders. */
export class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

function boundTuple(key: readonly KeyColumn[], values: readonly string[], side: Side, p: Params): string {
  const parts = key.map((k, i) => `${p.add(values[i])}::${keyType(k, side)}`);
  return key.length === 1 ? parts[0]! : `(${parts.join(', ')})`;
}

/** WHERE clause for a key range plus the table filter ('' when neither applies). */
export function whereClause(t: VerifyTable, range: KeyRange, side: Side, p: Params): string {
  const parts: string[] = [];
  if (t.key && range.lo) parts.push(`${keyTuple(t.key)} >= ${boundTuple(t.key, range.lo, side, p)}`);
  if (t.key && range.hi) parts.push(`${keyTuple(t.key)} < ${boundTuple(t.key, range.hi, side, p)}`);
  if (t.filter) parts.push(`(${t.filter})`);
  return parts.length ? ` WHERE ${parts.join(' AND ')}` : '';
}

export interface Query {
  text: string;
  values: unknown[];
}

/** count and hash sum of a range (or of the whole table). Returns columns n, h (text). */
export function chunkHashQuery(t: VerifyTable, range: KeyRange, side: Side): Query {
  const p = new Params();
  const where = whereClause(t, range, side, p);
  return {
    text: `SELECT count(*)::text AS n, coalesce(sum(${rowHashExpr(t.columns, side)}), 0)::text AS h FROM ${fromClause(t)}${where}`,
    values: p.values,
  };
}

/**
 * count and hash sum of several whole tables in one statement: one branch per
 * table (with its filter), returning columns i (the table's position), n, h.
 * Many small tables then cost one round trip and one plan per side instead of
 * one each.
 */
export function batchHashQuery(tables: readonly VerifyTable[], side: Side): Query {
  const p = new Params();
  const branches = tables.map((t, i) => {
    const where = whereClause(t, WHOLE_RANGE, side, p);
    return `SELECT ${i}::int AS i, count(*)::text AS n, coalesce(sum(${rowHashExpr(t.columns, side)}), 0)::text AS h FROM ${fromClause(t)}${where}`;
  });
  return { text: branches.join(' UNION ALL '), values: p.values };
}

function keyTextColumns(key: readonly KeyColumn[]): string {
  return key.map((k, i) => `${quoteIdent(k.name)}::text AS k${i}`).join(', ');
}

function keyOrder(key: readonly KeyColumn[]): string {
  return key.map((k) => quoteIdent(k.name)).join(', ');
}

/**
 * Keys that cut a range into pieces of `step` rows: the key of every
 * step-th row after the first, in index order. Returns columns k0…kn.
 */
export function splitPointsQuery(t: VerifyTable, range: KeyRange, side: Side, step: number): Query {
  const key = t.key!;
  const p = new Params();
  const where = whereClause(t, range, side, p);
  const stepParam = p.add(step);
  const outer = key.map((_k, i) => `k${i}`).join(', ');
  return {
    text:
      `SELECT ${outer} FROM (SELECT ${keyTextColumns(key)}, row_number() OVER (ORDER BY ${keyOrder(key)}) AS pgferry_rn ` +
      `FROM ${fromClause(t)}${where}) s WHERE pgferry_rn > 1 AND pgferry_rn % ${stepParam}::int8 = 1 ORDER BY pgferry_rn`,
    values: p.values,
  };
}

/**
 * Equal-width integer buckets: bucket i of `total` covers [origin + i·width,
 * origin + (i+1)·width), the first open below and the last open above.
 */
export interface IntegerBuckets {
  origin: bigint;
  width: bigint;
  total: number;
}

export function bucketRange(b: IntegerBuckets, i: number): KeyRange {
  const lo = b.origin + BigInt(i) * b.width;
  return { lo: i === 0 ? null : [lo.toString()], hi: i === b.total - 1 ? null : [(lo + b.width).toString()] };
}

/**
 * count and hash sum per integer bucket within a range, in one scan. Returns
 * columns b, n, h (text); empty buckets are absent.
 */
export function bucketHashQuery(t: VerifyTable, range: KeyRange, side: Side, b: IntegerBuckets): Query {
  const p = new Params();
  const where = whereClause(t, range, side, p);
  const k = quoteIdent(t.key![0]!.name);
  const bucket = `greatest(least((${k}::int8 - ${p.add(b.origin.toString())}::int8) / ${p.add(b.width.toString())}::int8, ${p.add(b.total - 1)}::int8), 0)`;
  // Grouped by the int8 bucket (a text key would make the planner sort whole rows), with the
  // row hash computed below the aggregate so that any sort or spill carries 16 bytes a row.
  return {
    text:
      `SELECT b::text AS b, count(*)::text AS n, coalesce(sum(h), 0)::text AS h ` +
      `FROM (SELECT ${bucket} AS b, ${rowHashExpr(t.columns, side)} AS h FROM ${fromClause(t)}${where} OFFSET 0) s GROUP BY b`,
    values: p.values,
  };
}

/** Key texts and row hash of every row in a (small) range. Returns k0…kn, h. */
export function leafRowsQuery(t: VerifyTable, range: KeyRange, side: Side, limit: number): Query {
  const key = t.key!;
  const p = new Params();
  const where = whereClause(t, range, side, p);
  const lim = p.add(limit);
  return {
    text: `SELECT ${keyTextColumns(key)}, (${rowHashExpr(t.columns, side)})::text AS h FROM ${fromClause(t)}${where} LIMIT ${lim}::int8`,
    values: p.values,
  };
}

/** Key texts and row hash of the rows with these keys (that match the filter). Returns k0…kn, h. */
export function lookupRowsQuery(t: VerifyTable, keys: readonly string[][], side: Side): Query {
  const key = t.key!;
  const p = new Params();
  const arrays = key.map((k, i) => `${p.add(keys.map((row) => row[i]))}::${keyType(k, side)}[]`);
  const conds = [`${keyTuple(key)} IN (SELECT * FROM unnest(${arrays.join(', ')}))`];
  if (t.filter) conds.push(`(${t.filter})`);
  return {
    text: `SELECT ${keyTextColumns(key)}, (${rowHashExpr(t.columns, side)})::text AS h FROM ${fromClause(t)} WHERE ${conds.join(' AND ')}`,
    values: p.values,
  };
}

/**
 * The source rows of these keys locked FOR SHARE, so their writers wait
 * (settle.ts). No filter: a row about to move out of it is held too.
 */
export function rowShareLockQuery(t: VerifyTable, keys: readonly string[][]): Query {
  const key = t.key!;
  const p = new Params();
  const arrays = key.map((k, i) => `${p.add(keys.map((row) => row[i]))}::${keyType(k, 'source')}[]`);
  return {
    text: `SELECT 1 FROM ${fromClause(t)} WHERE ${keyTuple(key)} IN (SELECT * FROM unnest(${arrays.join(', ')})) FOR SHARE`,
    values: p.values,
  };
}

/** Smallest and largest value of a single integer key (no filter: planning only). */
export function integerBoundsQuery(t: VerifyTable): Query {
  const k = quoteIdent(t.key![0]!.name);
  return { text: `SELECT min(${k})::text AS lo, max(${k})::text AS hi FROM ${fromClause(t)}`, values: [] };
}

/** A block sample of keys in key order (planning only). Returns k0…kn. */
export function sampleKeysQuery(t: VerifyTable, percent: number, method: 'SYSTEM' | 'BERNOULLI' = 'SYSTEM'): Query {
  const key = t.key!;
  const p = new Params();
  const pct = p.add(percent);
  return {
    text: `SELECT ${keyTextColumns(key)} FROM ${fromClause(t)} TABLESAMPLE ${method} (${pct}::float8) ORDER BY ${keyOrder(key)}`,
    values: p.values,
  };
}

/** Exact row count of the whole table (planning, when the statistics know nothing). */
export function countQuery(t: VerifyTable): Query {
  return { text: `SELECT count(*)::text AS n FROM ${fromClause(t)}`, values: [] };
}

/** Key values of a result row (columns k0…kn). */
export function keyValues(row: Record<string, unknown>, width: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < width; i++) out.push(String(row[`k${i}`]));
  return out;
}
