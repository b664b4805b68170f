/**
 * The statements `verify --repair` writes with. Every write carries a guard:
 * an UPDATE or DELETE changes a row only while it still has exactly the
 * values that were read (each column's canonical text), an INSERT of a keyed
 * row does nothing when the key exists by then. A guard that fails leaves the
 * row alone (rowCount 0) and the row is compared again in the next round.
 * Identifiers through identifiers.ts, values as parameters cast to the
 * target column's type.
 */
import { qualifiedName, quoteIdent } from '../../../postgres/identifiers.js';
import { fromClause, rowMatch, type Query, type RowTable, type RowValues } from '../../shared/row-diff.js';

/** A column repair writes: its position in RowTable.columns and its type on the target. */
export interface WriteColumn {
  index: number;
  name: string;
  targetType: string;
}

class Params {
  readonly values: unknown[] = [];
  add(v: unknown): string {
    this.values.push(v);
    return `$${this.values.length}`;
  }
}

function keyMatch(t: RowTable, key: readonly string[], p: Params): string[] {
  return t.key!.map((k, i) => `${quoteIdent(k.name)} = ${p.add(key[i])}::${k.targetType}`);
}

/** INSERT of one keyed row; nothing when its key (or another unique value) exists by now. */
export function insertKeyedSql(t: RowTable, cols: readonly WriteColumn[], values: RowValues): Query {
  const p = new Params();
  const vals = cols.map((c) => `${p.add(values[c.index])}::${c.targetType}`);
  return {
    text: `INSERT INTO ${qualifiedName(t.schema, t.name)} (${cols.map((c) => quoteIdent(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE VALUES (${vals.join(', ')}) ON CONFLICT DO NOTHING`,
    values: p.values,
  };
}

/** UPDATE of the columns that differ, only while the row holds exactly `current`. Null when no writable column differs. */
export function updateKeyedSql(t: RowTable, cols: readonly WriteColumn[], key: readonly string[], current: RowValues, wanted: RowValues): Query | null {
  const p = new Params();
  const sets = cols.filter((c) => current[c.index] !== wanted[c.index]).map((c) => `${quoteIdent(c.name)} = ${p.add(wanted[c.index])}::${c.targetType}`);
  if (!sets.length) return null;
  const conds = [...keyMatch(t, key, p), ...rowMatch(t, current, p)];
  return { text: `UPDATE ${fromClause(t)} SET ${sets.join(', ')} WHERE ${conds.join(' AND ')}`, values: p.values };
}

/** DELETE of one keyed row, only while it holds exactly `current`. */
export function deleteKeyedSql(t: RowTable, key: readonly string[], current: RowValues): Query {
  const p = new Params();
  const conds = [...keyMatch(t, key, p), ...rowMatch(t, current, p)];
  return { text: `DELETE FROM ${fromClause(t)} WHERE ${conds.join(' AND ')}`, values: p.values };
}

/** `count` copies of one row of a table without a key. */
export function insertCopiesSql(t: RowTable, cols: readonly WriteColumn[], values: RowValues, count: number): Query {
  const p = new Params();
  const vals = cols.map((c) => `${p.add(values[c.index])}::${c.targetType}`);
  const n = p.add(count);
  const into = `INSERT INTO ${qualifiedName(t.schema, t.name)} (${cols.map((c) => quoteIdent(c.name)).join(', ')}) OVERRIDING SYSTEM VALUE`;
  return { text: `${into} SELECT ${vals.join(', ')} FROM generate_series(1, ${n}::int8)`, values: p.values };
}

/**
 * Up to `count` of the rows (within the filter) equal to `values`, deleted by
 * physical address (tableoid with ctid: a ctid alone repeats across partitions).
 */
export function deleteCopiesSql(t: RowTable, values: RowValues, count: number): Query {
  const p = new Params();
  const conds = rowMatch(t, values, p);
  if (t.filter) conds.push(`(${t.filter})`);
  const n = p.add(count);
  return {
    text:
      `DELETE FROM ${fromClause(t)} WHERE (tableoid, ctid) IN ` +
      `(SELECT tableoid, ctid FROM ${fromClause(t)} WHERE ${conds.join(' AND ')} LIMIT ${n}::int8)`,
    values: p.values,
  };
}

/** The target's columns of a table: type and whether they are generated (never written). */
export function targetColumnsQuery(t: RowTable): Query {
  return {
    text: `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attgenerated <> '' AS generated
             FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
    values: [qualifiedName(t.schema, t.name)],
  };
}
