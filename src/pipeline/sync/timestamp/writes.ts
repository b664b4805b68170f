/**
 * Target writes of a timestamp round: upserts (INSERT … ON CONFLICT on the
 * key) and deletes by key. Values travel as the canonical text each column
 * was read as on the source, in one array per column, cast to the target
 * column's type; identifiers through identifiers.ts.
 */
import type pg from 'pg';
import { quoteIdent } from '../../../postgres/identifiers.js';
import { fromClause, type RowValues } from '../../shared/row-diff.js';
import type { TsTable } from './tables.js';

function upsertSql(t: TsTable): string {
  const names = t.columns.map((c) => quoteIdent(c.name));
  const casts = t.columns.map((c, i) => `u.c${i}::${c.targetType}`);
  const arrays = t.columns.map((_, i) => `$${i + 1}::text[]`);
  const keyNames = new Set(t.key.map((k) => k.name));
  const sets = t.columns.filter((c) => !keyNames.has(c.name)).map((c) => `${quoteIdent(c.name)} = EXCLUDED.${quoteIdent(c.name)}`);
  const overriding = t.columns.some((c) => c.identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  const conflict = `ON CONFLICT (${t.key.map((k) => quoteIdent(k.name)).join(', ')}) ${sets.length ? `DO UPDATE SET ${sets.join(', ')}` : 'DO NOTHING'}`;
  return (
    `INSERT INTO ${fromClause({ ...t, only: false })} (${names.join(', ')})${overriding} ` +
    `SELECT ${casts.join(', ')} FROM unnest(${arrays.join(', ')}) AS u(${t.columns.map((_, i) => `c${i}`).join(', ')}) ${conflict}`
  );
}

/** Upsert rows (texts in TsTable.columns order). Returns the rows written. */
export async function upsertRows(c: pg.Client, t: TsTable, rows: readonly RowValues[]): Promise<number> {
  if (!rows.length) return 0;
  const arrays = t.columns.map((_, i) => rows.map((r) => r[i] ?? null));
  const res = await c.query(upsertSql(t), arrays);
  return res.rowCount ?? rows.length;
}

/** Delete the rows with these keys (key texts in key order). Returns the rows deleted. */
export async function deleteKeys(c: pg.Client, t: TsTable, keys: readonly (readonly string[])[]): Promise<number> {
  if (!keys.length) return 0;
  const arrays = t.key.map((_, i) => keys.map((k) => k[i]));
  const using = `unnest(${t.key.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS u(${t.key.map((_, i) => `k${i}`).join(', ')})`;
  const match = t.key.map((k, i) => `x.${quoteIdent(k.name)} = u.k${i}::${k.targetType}`).join(' AND ');
  const res = await c.query(`DELETE FROM ${fromClause(t)} AS x USING ${using} WHERE ${match}`, arrays);
  return res.rowCount ?? 0;
}
