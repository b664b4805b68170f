/**
 * Applying buffered changes inside the open target transaction.
 *
 * Changes of different tables are independent at commit (foreign-key triggers
 * are off under session_replication_role = replica, every other constraint is
 * per table), so they are grouped per table, each table's changes in source
 * order. A TRUNCATE is a barrier: everything before it is applied first.
 *
 * Set-based (tables whose replica identity key is their only unique index):
 * the changes collapse to the last state of each key, then at most one
 * DELETE … USING, one UPDATE … FROM per shape of unchanged TOAST columns, and
 * one INSERT … ON CONFLICT DO UPDATE, each fed by unnest() of text arrays.
 * Keys are distinct within the set, so the order of these statements cannot
 * break the key; no other unique index exists to be broken midway.
 *
 * In order (REPLICA IDENTITY FULL, no identity, or another unique index):
 * one statement per update or delete, consecutive inserts as one INSERT.
 * Rows are found by key, or by the whole old row, taking one match
 * (tableoid, ctid … LIMIT 1) so that duplicate rows lose one copy each.
 */
import type pg from 'pg';
import { quoteIdent, quoteIdentList } from '../../../postgres/identifiers.js';
import { UNCHANGED, type Tuple, type Value } from './pgoutput.js';
import type { ApplyTable } from './tables.js';

export type Change =
  | { kind: 'insert'; t: ApplyTable; row: Tuple }
  | { kind: 'update'; t: ApplyTable; old: Tuple | null; row: Tuple }
  | { kind: 'delete'; t: ApplyTable; old: Tuple }
  | { kind: 'truncate'; tables: ApplyTable[]; cascade: boolean; restartIdentity: boolean };

export interface ApplyCounts {
  statements: number;
  /** Updates and deletes that found no row on the target (skipped, as the native worker does). */
  missing: number;
}

type Row = Exclude<Change, { kind: 'truncate' }>;

/** Apply changes in the open transaction of `client`. */
export async function applyChanges(client: pg.Client, changes: Change[], counts: ApplyCounts): Promise<void> {
  let groups = new Map<ApplyTable, Row[]>();
  const flush = async () => {
    for (const [t, list] of groups) {
      if (t.setBased) await applySetBased(client, t, list, counts);
      else await applyOrdered(client, t, list, counts);
    }
    groups = new Map();
  };
  for (const c of changes) {
    if (c.kind === 'truncate') {
      await flush();
      const names = c.tables.map((t) => t.sql).join(', ');
      await client.query(`TRUNCATE ${names}${c.restartIdentity ? ' RESTART IDENTITY' : ''}${c.cascade ? ' CASCADE' : ''}`);
      counts.statements++;
      continue;
    }
    let list = groups.get(c.t);
    if (!list) groups.set(c.t, (list = []));
    list.push(c);
  }
  await flush();
}

function keyOf(t: ApplyTable, tuple: Tuple): string {
  if (t.key.length === 1) {
    // One key column (NOT NULL): its text is the key.
    const v = tuple[t.key[0]!];
    if (typeof v === 'string') return v;
  }
  return JSON.stringify(t.key.map((i) => {
    const v = tuple[i];
    if (v === UNCHANGED) throw new Error(`${t.display}: a key column arrived as an unchanged TOAST value; this cannot be applied`);
    return v;
  }));
}

/** Fill unchanged TOAST values from an earlier full row of the same key, where there is one. */
function merge(row: Tuple, base: Tuple | null | undefined): Tuple {
  if (!base || !row.includes(UNCHANGED)) return row;
  return row.map((v, i) => (v === UNCHANGED ? base[i]! : v));
}

interface Entry {
  deleted: boolean;
  tuple: Tuple;
}

async function applySetBased(client: pg.Client, t: ApplyTable, list: Row[], counts: ApplyCounts): Promise<void> {
  let state = new Map<string, Entry>();
  for (const c of list) {
    if (c.kind === 'insert') {
      state.set(keyOf(t, c.row), { deleted: false, tuple: c.row });
    } else if (c.kind === 'delete') {
      state.set(keyOf(t, c.old), { deleted: true, tuple: c.old });
    } else {
      const newKey = keyOf(t, c.row);
      const oldKey = c.old ? keyOf(t, c.old) : newKey;
      const prev = state.get(oldKey);
      const row = merge(c.row, prev && !prev.deleted ? prev.tuple : null);
      if (oldKey !== newKey && row.includes(UNCHANGED)) {
        // The key moved and a TOAST value stayed behind on the old row: apply what came before, then this one as it is.
        await writeState(client, t, state, counts);
        state = new Map();
        await updateOne(client, t, c.old!, row, counts);
        continue;
      }
      if (oldKey !== newKey) state.set(oldKey, { deleted: true, tuple: c.old! });
      state.set(newKey, { deleted: false, tuple: row });
    }
  }
  await writeState(client, t, state, counts);
}

/**
 * Columns as text[] literals for unnest(), one per column index, built here rather than by pg's array
 * serialisation (which escapes every element with two regular expressions and wraps each in a call): a column
 * without NULLs or characters to escape is one join of its values.
 */
function columnArrays(tuples: Tuple[], cols: number[]): string[] {
  const n = tuples.length;
  const values = new Array<string>(n);
  return cols.map((c) => {
    let plain = true;
    for (let r = 0; r < n; r++) {
      const v = tuples[r]![c] as string | null;
      if (v === null || v.indexOf('"') >= 0 || v.indexOf('\\') >= 0) plain = false;
      values[r] = v!;
    }
    if (plain) return n ? `{"${values.join('","')}"}` : '{}';
    for (let r = 0; r < n; r++) {
      const v = values[r] as string | null;
      values[r] = v === null ? 'NULL' : `"${v.replace(/[\\"]/g, '\\$&')}"`;
    }
    return `{${values.join(',')}}`;
  });
}

function unnestFrom(cols: number[]): string {
  return `unnest(${cols.map((_, k) => `$${k + 1}::text[]`).join(', ')}) AS k(${cols.map((i) => `c${i}`).join(', ')})`;
}

function cast(t: ApplyTable, i: number): string {
  return `k.c${i}::${t.types[i]!.type}`;
}

function keyMatch(t: ApplyTable): string {
  return t.key.map((i) => `t.${quoteIdent(t.relation.columns[i]!.name)} = ${cast(t, i)}`).join(' AND ');
}

async function writeState(client: pg.Client, t: ApplyTable, state: Map<string, Entry>, counts: ApplyCounts): Promise<void> {
  const deletes: Tuple[] = [];
  const upserts: Tuple[] = [];
  const patches = new Map<string, Tuple[]>();
  for (const e of state.values()) {
    if (e.deleted) deletes.push(e.tuple);
    else if (!e.tuple.includes(UNCHANGED)) upserts.push(e.tuple);
    else {
      const shape = e.tuple.map((v) => (v === UNCHANGED ? 'u' : '.')).join('');
      let l = patches.get(shape);
      if (!l) patches.set(shape, (l = []));
      l.push(e.tuple);
    }
  }
  const names = t.relation.columns.map((c) => c.name);
  if (deletes.length) {
    await client.query(`DELETE FROM ${t.sql} t USING ${unnestFrom(t.key)} WHERE ${keyMatch(t)}`, columnArrays(deletes, t.key));
    counts.statements++;
  }
  for (const rows of patches.values()) {
    const present = rows[0]!.flatMap((v, i) => (v === UNCHANGED ? [] : [i]));
    const set = present.filter((i) => !t.key.includes(i)).map((i) => `${quoteIdent(names[i]!)} = ${cast(t, i)}`);
    if (!set.length) continue;
    const r = await client.query(`UPDATE ${t.sql} t SET ${set.join(', ')} FROM ${unnestFrom(present)} WHERE ${keyMatch(t)}`, columnArrays(rows, present));
    counts.statements++;
    counts.missing += rows.length - (r.rowCount ?? rows.length);
  }
  if (upserts.length) {
    const all = names.map((_, i) => i);
    const keyCols = t.key.map((i) => names[i]!);
    const others = all.filter((i) => !t.key.includes(i)).map((i) => `${quoteIdent(names[i]!)} = EXCLUDED.${quoteIdent(names[i]!)}`);
    const onConflict = others.length ? `DO UPDATE SET ${others.join(', ')}` : 'DO NOTHING';
    await client.query(
      `INSERT INTO ${t.sql} (${quoteIdentList(names)}) SELECT ${all.map((i) => cast(t, i)).join(', ')} FROM ${unnestFrom(all)} ON CONFLICT (${quoteIdentList(keyCols)}) ${onConflict}`,
      columnArrays(upserts, all),
    );
    counts.statements++;
  }
}

async function applyOrdered(client: pg.Client, t: ApplyTable, list: Row[], counts: ApplyCounts): Promise<void> {
  let inserts: Tuple[] = [];
  const insertAll = async () => {
    if (!inserts.length) return;
    const all = t.relation.columns.map((_, i) => i);
    await client.query(
      `INSERT INTO ${t.sql} (${quoteIdentList(t.relation.columns.map((c) => c.name))}) SELECT ${all.map((i) => cast(t, i)).join(', ')} FROM ${unnestFrom(all)}`,
      columnArrays(inserts, all),
    );
    counts.statements++;
    inserts = [];
  };
  for (const c of list) {
    if (c.kind === 'insert') {
      inserts.push(c.row);
      continue;
    }
    await insertAll();
    if (c.kind === 'update') await updateOne(client, t, c.old ?? c.row, c.row, counts);
    else await deleteOne(client, t, c.old, counts);
  }
  await insertAll();
}

/** WHERE clause finding one row: by key, or by every column of the old row (one match of several identical rows). */
function locate(t: ApplyTable, old: Tuple, values: unknown[]): string {
  const cols = t.key.length ? t.key : old.map((_, i) => i);
  const conds: string[] = [];
  for (const i of cols) {
    const v: Value = old[i]!;
    if (v === UNCHANGED) continue;
    const col = `s.${quoteIdent(t.relation.columns[i]!.name)}`;
    if (v === null) {
      conds.push(`${col} IS NULL`);
      continue;
    }
    values.push(v);
    conds.push(t.types[i]!.textCompare ? `${col}::text = $${values.length}` : `${col} = $${values.length}::${t.types[i]!.type}`);
  }
  const where = conds.length ? conds.join(' AND ') : 'true';
  return `(tableoid, ctid) = (SELECT s.tableoid, s.ctid FROM ${t.sql} s WHERE ${where} LIMIT 1)`;
}

async function updateOne(client: pg.Client, t: ApplyTable, old: Tuple, row: Tuple, counts: ApplyCounts): Promise<void> {
  const values: unknown[] = [];
  const set: string[] = [];
  row.forEach((v, i) => {
    if (v === UNCHANGED) return;
    values.push(v);
    set.push(`${quoteIdent(t.relation.columns[i]!.name)} = $${values.length}::${t.types[i]!.type}`);
  });
  const where = locate(t, old, values);
  const r = await client.query(`UPDATE ${t.sql} SET ${set.join(', ')} WHERE ${where}`, values);
  counts.statements++;
  if (r.rowCount === 0) counts.missing++;
}

async function deleteOne(client: pg.Client, t: ApplyTable, old: Tuple, counts: ApplyCounts): Promise<void> {
  const values: unknown[] = [];
  const r = await client.query(`DELETE FROM ${t.sql} WHERE ${locate(t, old, values)}`, values);
  counts.statements++;
  if (r.rowCount === 0) counts.missing++;
}
