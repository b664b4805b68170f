/**
 * Unique constraints other than the key. A round writes rows of the source's
 * snapshot onto a target that still holds older versions of other rows, so
 * `INSERT … ON CONFLICT (key) DO UPDATE` alone can trip over another unique
 * constraint: row 1 gave up an email and row 2 took it (row 1's old version
 * is still on the target), or two rows swapped values.
 *
 * Every batch is therefore closed over its collisions before it is written:
 * target rows whose key differs from a batch row's but that hold one of its
 * values under a unique index (expressions and partial predicates evaluated
 * as the index does) are necessarily stale as of the round's snapshot — the
 * snapshot satisfies the constraint, and the batch row holds that value in
 * it. Their current source version (same snapshot) joins the batch, or, gone
 * from the source (or out of the filter), they are deleted; the rows that
 * join can collide in turn, so this repeats until nothing new collides. Then
 * the colliding target rows are deleted by key and the whole batch upserted:
 * no remaining target row holds a value the batch takes, and the batch itself
 * is consistent (one snapshot), so no unique check can trip, deferrable or
 * not. The writer's session_replication_role = replica keeps foreign keys
 * (and ON DELETE CASCADE) from firing on the delete-and-reinsert.
 *
 * Unique indexes that contain every key column cannot collide across keys
 * and are skipped; exclusion constraints cannot be closed this way and are
 * refused by name.
 */
import type pg from 'pg';
import { UsageError } from '../../../errors.js';
import { qualifiedName, quoteIdent } from '../../../postgres/identifiers.js';
import { fromClause, keyId, readKeys, type RowReader, type RowValues } from '../../shared/row-diff.js';
import type { TsTable } from './tables.js';
import { deleteKeys, upsertRows } from './writes.js';

export interface TsUnique {
  /** The index (schema-qualified as regclass prints it). */
  name: string;
  /** Each key column of the index as SQL over the table's columns (a quoted column or an expression). */
  exprs: string[];
  /** The partial index's predicate, or null. */
  predicate: string | null;
  /** NULLS NOT DISTINCT (PostgreSQL 15+): NULLs collide too. */
  nullsNotDistinct: boolean;
}

const UNIQUES_SQL = `
SELECT i.indexrelid::regclass::text AS name, i.indisexclusion AS exclusion,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k) AS exprs,
       ARRAY(SELECT a.attname FROM generate_series(1, i.indnkeyatts) k
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]) AS cols,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       coalesce((pg_catalog.to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS nnd
  FROM pg_catalog.pg_index i
 WHERE i.indrelid = $1::regclass AND (i.indisunique OR i.indisexclusion)
 ORDER BY 1`;

/**
 * The target table's unique indexes that can collide across keys. Refuses,
 * by name, exclusion constraints and indexes whose collisions cannot be
 * computed from the columns a round copies (e.g. over a generated column).
 */
export async function readUniques(c: pg.Client, t: TsTable): Promise<TsUnique[]> {
  const { rows } = await c.query<{ name: string; exclusion: boolean; exprs: string[]; cols: string[]; predicate: string | null; nnd: boolean }>(
    UNIQUES_SQL, [qualifiedName(t.schema, t.name)],
  );
  const keyNames = t.key.map((k) => k.name);
  const out: TsUnique[] = [];
  const refused: string[] = [];
  for (const r of rows) {
    if (r.exclusion) {
      refused.push(`${r.name} (an exclusion constraint)`);
      continue;
    }
    // Equal on every key column means the same key: such an index never collides across keys.
    if (keyNames.every((k) => r.cols.includes(k))) continue;
    const u: TsUnique = { name: r.name, exprs: r.exprs, predicate: r.predicate, nullsNotDistinct: r.nnd };
    try {
      // The collision query must be computable from the copied columns: try it with no rows.
      await c.query(collisionSql(t, u), t.columns.map(() => []));
    } catch (err) {
      refused.push(`${r.name} (${(err as Error).message})`);
      continue;
    }
    out.push(u);
  }
  if (refused.length) {
    throw new UsageError(`--method timestamp cannot keep these unique indexes of ${qualifiedName(t.schema, t.name)} consistent across rounds: ${refused.join(', ')}`, {
      hint: 'exclude the table (--exclude-tables), drop the index on the target until cutover, or use logical replication (sync without --method timestamp)',
    });
  }
  return out;
}

/**
 * Keys of target rows that hold a value of one of the given rows under `u`
 * but have another key. Rows travel as column texts (TsTable.columns order),
 * are cast to the target's types, and the index's expressions and predicate
 * are evaluated on them as on the table.
 */
function collisionSql(t: TsTable, u: TsUnique): string {
  const arrays = t.columns.map((_, i) => `$${i + 1}::text[]`);
  const casts = t.columns.map((c, i) => `u.c${i}::${c.targetType} AS ${quoteIdent(c.name)}`);
  const keyOut = t.key.map((k, i) => `${quoteIdent(k.name)} AS pgferry_k${i}`);
  const exprOut = u.exprs.map((e, i) => `(${e}) AS pgferry_e${i}`);
  const pred = u.predicate ? ` WHERE (${u.predicate})` : '';
  const eq = u.exprs.map((e, i) =>
    u.nullsNotDistinct ? `((${e}) = nv.pgferry_e${i} OR ((${e}) IS NULL AND nv.pgferry_e${i} IS NULL))` : `(${e}) = nv.pgferry_e${i}`,
  );
  const keyTuple = `(${t.key.map((k) => quoteIdent(k.name)).join(', ')})`;
  const batchKey = `(${t.key.map((_, i) => `nv.pgferry_k${i}`).join(', ')})`;
  const keyText = t.key.map((k, i) => `${quoteIdent(k.name)}::text AS k${i}`);
  return (
    `WITH n AS (SELECT ${casts.join(', ')} FROM unnest(${arrays.join(', ')}) AS u(${t.columns.map((_, i) => `c${i}`).join(', ')})), ` +
    `nv AS (SELECT ${[...keyOut, ...exprOut].join(', ')} FROM n${pred}) ` +
    `SELECT DISTINCT x.* FROM nv, LATERAL (SELECT ${keyText.join(', ')} FROM ${fromClause(t)} ` +
    // OFFSET 0 keeps the subquery from being flattened into a join, which the planner would hash over a
    // sequential scan of the whole table (it guesses few rows from unnest): one index probe per row instead.
    `WHERE ${eq.join(' AND ')}${u.predicate ? ` AND (${u.predicate})` : ''} AND ${keyTuple} IS DISTINCT FROM ${batchKey} OFFSET 0) AS x`
  );
}

export interface Applied {
  upserted: number;
  deleted: number;
}

/**
 * Write one batch inside the writer's open transaction: delete `deletes`
 * (keys the source no longer has), upsert `rows`, closed over unique
 * collisions as the module comment explains. `source` reads the round's
 * snapshot.
 */
export async function applyBatch(
  writer: pg.Client, source: RowReader, t: TsTable, uniques: readonly TsUnique[], rows: readonly RowValues[], deletes: readonly (readonly string[])[],
): Promise<Applied> {
  if (!uniques.length) {
    const deleted = await deleteKeys(writer, t, deletes);
    return { upserted: await upsertRows(writer, t, rows), deleted };
  }
  const keyAt = t.key.map((k) => t.columns.findIndex((c) => c.name === k.name));
  const keyOf = (r: RowValues): string[] => keyAt.map((i) => r[i] ?? '');
  const batch = new Map<string, RowValues>(rows.map((r) => [keyId(keyOf(r)), r]));
  const gone = new Map<string, readonly string[]>(deletes.map((k) => [keyId(k), k]));
  const colliding = new Map<string, string[]>();
  let pending: readonly RowValues[] = rows;
  while (pending.length) {
    const fresh = new Map<string, string[]>();
    const arrays = t.columns.map((_, i) => pending.map((r) => r[i] ?? null));
    for (const u of uniques) {
      const { rows: hits } = await writer.query<Record<string, string>>(collisionSql(t, u), arrays);
      for (const h of hits) {
        const key = t.key.map((_, i) => h[`k${i}`]!);
        const id = keyId(key);
        colliding.set(id, key);
        if (!batch.has(id) && !gone.has(id)) fresh.set(id, key);
      }
    }
    if (!fresh.size) break;
    const found = await readKeys(source, t, [...fresh.values()], 'source');
    for (const r of found) {
      batch.set(keyId(r.key), r.values);
      fresh.delete(keyId(r.key));
    }
    for (const [id, key] of fresh) gone.set(id, key);
    pending = found.map((r) => r.values);
  }
  // Every colliding key is now either in the batch (rewritten) or gone (deleted).
  const deleted = await deleteKeys(writer, t, [...gone.values()]);
  await deleteKeys(writer, t, [...colliding].filter(([id]) => batch.has(id)).map(([, k]) => k));
  return { upserted: await upsertRows(writer, t, [...batch.values()]), deleted };
}
