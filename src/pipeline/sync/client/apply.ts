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
 * one statement per update or delete, consecutive inserts as one INSERT, or
 * as one COPY when there are COPY_MIN_ROWS or more (the target then inserts
 * them in bulk, with no statement to plan and no cast per value).
 * Rows are found by key, or by the whole old row, taking one match
 * (tableoid, ctid … LIMIT 1) so that duplicate rows lose one copy each.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { quoteIdent, quoteIdentList } from '../../../postgres/identifiers.js';
import { OperationError } from '../../../errors.js';
import { columnsKey, entries, tupleOf, UNCHANGED, values as tupleValues, type Tuple, type Value } from './pgoutput.js';
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
  const key = columnsKey(tuple, t.key);
  if (key === undefined) throw new Error(`${t.display}: a key column arrived as an unchanged TOAST value; this cannot be applied`);
  return key;
}

/** Fill unchanged TOAST values from an earlier full row of the same key, where there is one. */
function merge(row: Tuple, base: Tuple | null | undefined): Tuple {
  if (!base || !row.unchanged) return row;
  const from = entries(base);
  return tupleOf(entries(row).map((e, i) => (e[0][e[1]] === 0x75 ? (from[i] ?? e) : e)));
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
      if (oldKey !== newKey && row.unchanged) {
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

const TEXT_OID = 25;

/**
 * Columns as text[] parameters in binary form (array_recv), one per column index, built straight from the
 * tuples' bytes: a pgoutput text entry after its kind byte (int32 length, then the text) is exactly a binary
 * array element, so each value is one copy, with no JavaScript string, no escaping, and no array literal for
 * the target to parse. The text is in the replication connection's client encoding (UTF8, as the target
 * session's), and the target checks it as it would a literal.
 */
function columnArrays(tuples: Tuple[], cols: number[]): Buffer[] {
  const n = tuples.length;
  const k = cols.length;
  const slot = new Int32Array(Math.max(0, ...cols) + 1).fill(-1);
  cols.forEach((c, j) => (slot[c] = j));
  // Where each wanted entry starts (-1: the tuple has no such column), and each array's size.
  const starts = new Int32Array(n * k).fill(-1);
  const sizes = new Array<number>(k).fill(20);
  const nulls = new Array<boolean>(k).fill(false);
  for (let r = 0; r < n; r++) {
    const t = tuples[r]!;
    const b = t.buf;
    let p = t.pos + 2;
    const last = Math.min(t.n, slot.length);
    for (let i = 0; i < last; i++) {
      const s = p;
      const kind = b[p];
      const len = kind === 0x74 ? b.readInt32BE(p + 1) : 0;
      p += kind === 0x74 ? 5 + len : 1;
      const j = slot[i]!;
      if (j < 0) continue;
      if (kind === 0x75) throw new Error('an unchanged TOAST value cannot be written as a column value');
      starts[r * k + j] = s;
      sizes[j]! += 4 + len;
    }
  }
  const out: Buffer[] = [];
  for (let j = 0; j < k; j++) {
    for (let r = 0; r < n; r++) {
      const s = starts[r * k + j]!;
      if (s < 0 || tuples[r]!.buf[s] !== 0x74) {
        nulls[j] = true;
        break;
      }
    }
    const a = Buffer.allocUnsafe(n ? sizes[j]! : 12);
    a.writeInt32BE(n ? 1 : 0, 0); // dimensions
    a.writeInt32BE(nulls[j] ? 1 : 0, 4);
    a.writeInt32BE(TEXT_OID, 8);
    if (n) {
      a.writeInt32BE(n, 12);
      a.writeInt32BE(1, 16); // lower bound
    }
    let w = 20;
    for (let r = 0; r < n; r++) {
      const s = starts[r * k + j]!;
      const b = tuples[r]!.buf;
      if (s < 0 || b[s] !== 0x74) {
        a.writeInt32BE(-1, w);
        w += 4;
        continue;
      }
      // Length and text as they are; short values byte by byte (a copy() call costs more than a few bytes).
      const e = s + 5 + b.readInt32BE(s + 1);
      if (e - s < 48) for (let q = s + 1; q < e; q++) a[w++] = b[q]!;
      else w += b.copy(a, w, s + 1, e);
    }
    out.push(a);
  }
  return out;
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

/** `OVERRIDING SYSTEM VALUE` where the table has a GENERATED ALWAYS identity column (tables.ts, TargetColumn.always). */
function overriding(t: ApplyTable): string {
  return t.types.some((c) => c.always) ? ' OVERRIDING SYSTEM VALUE' : '';
}

async function writeState(client: pg.Client, t: ApplyTable, state: Map<string, Entry>, counts: ApplyCounts): Promise<void> {
  const deletes: Tuple[] = [];
  const upserts: Tuple[] = [];
  const patches = new Map<string, Tuple[]>();
  for (const e of state.values()) {
    if (e.deleted) deletes.push(e.tuple);
    else if (!e.tuple.unchanged) upserts.push(e.tuple);
    else {
      const shape = entries(e.tuple).map(([b, s]) => (b[s] === 0x75 ? 'u' : '.')).join('');
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
    const present = entries(rows[0]!).flatMap(([b, s], i) => (b[s] === 0x75 ? [] : [i]));
    // An identity column GENERATED ALWAYS may only be set to DEFAULT; the source cannot give it another value either.
    const set = present.filter((i) => !t.key.includes(i) && !t.types[i]!.always).map((i) => `${quoteIdent(names[i]!)} = ${cast(t, i)}`);
    if (!set.length) continue;
    const r = await client.query(`UPDATE ${t.sql} t SET ${set.join(', ')} FROM ${unnestFrom(present)} WHERE ${keyMatch(t)}`, columnArrays(rows, present));
    counts.statements++;
    counts.missing += rows.length - (r.rowCount ?? rows.length);
  }
  if (upserts.length) {
    const all = names.map((_, i) => i);
    const keyCols = t.key.map((i) => names[i]!);
    const others = all.filter((i) => !t.key.includes(i) && !t.types[i]!.always).map((i) => `${quoteIdent(names[i]!)} = EXCLUDED.${quoteIdent(names[i]!)}`);
    const onConflict = others.length ? `DO UPDATE SET ${others.join(', ')}` : 'DO NOTHING';
    await client.query(
      `INSERT INTO ${t.sql} (${quoteIdentList(names)})${overriding(t)} SELECT ${all.map((i) => cast(t, i)).join(', ')} FROM ${unnestFrom(all)} ON CONFLICT (${quoteIdentList(keyCols)}) ${onConflict}`,
      columnArrays(upserts, all),
    );
    counts.statements++;
  }
}

/** Consecutive inserts of the in-order path from this many rows on go by COPY (below it, the INSERT's one round trip is cheaper). */
const COPY_MIN_ROWS = 8;

/**
 * Rows in COPY's text format, straight from the tuples' bytes: columns separated by tabs, NULL as \N, and
 * backslash, newline, carriage return and tab escaped (no other byte needs it, and UTF8's multibyte sequences
 * never contain these). Every backslash of a value is escaped, so no line can read as the end marker.
 */
function copyText(tuples: Tuple[], width: number): Buffer {
  let size = 0;
  for (const t of tuples) {
    const b = t.buf;
    let p = t.pos + 2;
    for (let i = 0; i < width; i++) {
      const kind = i < t.n ? b[p] : 0x6e;
      if (kind === 0x74) {
        const e = p + 5 + b.readInt32BE(p + 1);
        size += e - p - 4; // the text and its separator
        for (let q = p + 5; q < e; q++) {
          const c = b[q];
          if (c === 0x5c || c === 0x0a || c === 0x0d || c === 0x09) size++;
        }
        p = e;
      } else {
        if (kind === 0x75) throw new Error('an unchanged TOAST value cannot be written as a column value');
        size += 3;
        if (i < t.n) p++;
      }
    }
  }
  const out = Buffer.allocUnsafe(size);
  let w = 0;
  for (const t of tuples) {
    const b = t.buf;
    let p = t.pos + 2;
    for (let i = 0; i < width; i++) {
      if (i < t.n && b[p] === 0x74) {
        const e = p + 5 + b.readInt32BE(p + 1);
        for (let q = p + 5; q < e; q++) {
          const c = b[q]!;
          if (c === 0x5c) {
            out[w++] = 0x5c;
            out[w++] = 0x5c;
          } else if (c === 0x0a || c === 0x0d || c === 0x09) {
            out[w++] = 0x5c;
            out[w++] = c === 0x0a ? 0x6e : c === 0x0d ? 0x72 : 0x74; // n, r, t
          } else out[w++] = c;
        }
        p = e;
      } else {
        out[w++] = 0x5c;
        out[w++] = 0x4e; // \N
        if (i < t.n) p++;
      }
      out[w++] = i === width - 1 ? 0x0a : 0x09;
    }
  }
  return out;
}

async function applyOrdered(client: pg.Client, t: ApplyTable, list: Row[], counts: ApplyCounts): Promise<void> {
  let inserts: Tuple[] = [];
  const insertAll = async () => {
    if (!inserts.length) return;
    const all = t.relation.columns.map((_, i) => i);
    if (inserts.length >= COPY_MIN_ROWS) {
      const copy = client.query(copyFrom(`COPY ${t.sql} (${quoteIdentList(t.relation.columns.map((c) => c.name))}) FROM STDIN`));
      await pipeline(Readable.from([copyText(inserts, all.length)]), copy);
      counts.statements++;
      inserts = [];
      return;
    }
    await client.query(
      `INSERT INTO ${t.sql} (${quoteIdentList(t.relation.columns.map((c) => c.name))})${overriding(t)} SELECT ${all.map((i) => cast(t, i)).join(', ')} FROM ${unnestFrom(all)}`,
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
function locate(t: ApplyTable, oldTuple: Tuple, values: unknown[]): string {
  const old = tupleValues(oldTuple);
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
  const before = tupleValues(old);
  tupleValues(row).forEach((v, i) => {
    if (v === UNCHANGED) return;
    if (t.types[i]!.always) {
      // May only be set to DEFAULT: left out. A key of such a column that changed (UPDATE … SET id = DEFAULT on the source) cannot be
      // written so; say so rather than leave the row under its old key.
      const was = before[i];
      if ((t.key.includes(i) || !t.key.length) && was !== undefined && was !== UNCHANGED && was !== v) {
        throw new OperationError(`${t.display}: the source gave identity column "${t.relation.columns[i]!.name}" (GENERATED ALWAYS) a new value, which an UPDATE cannot write on the target`, {
          hint: 'apply it by hand on the target (DELETE the row, INSERT it with OVERRIDING SYSTEM VALUE) or run pgferry verify --repair, then sync again; or use the native subscription, which applies it',
        });
      }
      return;
    }
    values.push(v);
    set.push(`${quoteIdent(t.relation.columns[i]!.name)} = $${values.length}::${t.types[i]!.type}`);
  });
  if (!set.length) return; // only GENERATED ALWAYS identity columns, unchanged
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
