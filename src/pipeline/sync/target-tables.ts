/**
 * The published tables as the target has them: present or not, empty or not,
 * and emptied before PostgreSQL's table synchronisation copies them again.
 */
import type pg from 'pg';
import { qualifiedName } from '../../postgres/identifiers.js';

export interface TargetTable {
  schema: string;
  name: string;
  /** OID on the target, null when the table does not exist there. */
  oid: number | null;
}

export async function locateTargetTables(client: pg.Client, tables: { schema: string; name: string }[]): Promise<TargetTable[]> {
  if (!tables.length) return [];
  const { rows } = await client.query<{ i: number; oid: number | null }>(
    `SELECT x.i::int AS i, c.oid::int AS oid
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(s, n, i)
       LEFT JOIN pg_namespace ns ON ns.nspname = x.s
       LEFT JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = x.n AND c.relkind IN ('r', 'p')`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  return rows.sort((a, b) => a.i - b.i).map((r, k) => ({ schema: tables[k]!.schema, name: tables[k]!.name, oid: r.oid }));
}

/** Tables among these that hold at least one row. */
export async function nonEmptyTables(client: pg.Client, tables: TargetTable[]): Promise<TargetTable[]> {
  const out: TargetTable[] = [];
  for (const t of tables) {
    if (t.oid === null) continue;
    const { rows } = await client.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${qualifiedName(t.schema, t.name)}) AS any`);
    if (rows[0]!.any) out.push(t);
  }
  return out;
}

/**
 * Empty tables on the target before table synchronisation copies them:
 * TRUNCATE when no foreign key from another table points at them, otherwise
 * DELETE with session_replication_role = replica (foreign-key triggers off,
 * as the apply worker runs), so the rows that reference them stay.
 */
export async function emptyTargetTables(client: pg.Client, tables: TargetTable[]): Promise<'truncate' | 'delete' | 'none'> {
  if (!tables.some((t) => t.oid !== null)) return 'none';
  await client.query('BEGIN');
  try {
    const how = await emptyInTransaction(client, tables);
    await client.query('COMMIT');
    return how;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** emptyTargetTables' work inside the caller's open transaction (which it may then fill again). */
export async function emptyInTransaction(client: pg.Client, tables: TargetTable[]): Promise<'truncate' | 'delete' | 'none'> {
  const present = tables.filter((t): t is TargetTable & { oid: number } => t.oid !== null);
  if (!present.length) return 'none';
  const { rows } = await client.query<{ referenced: boolean }>(
    `WITH rels AS (SELECT pt.relid FROM unnest($1::oid[]) r(oid), pg_partition_tree(r.oid) pt)
     SELECT EXISTS (SELECT 1 FROM pg_constraint c
                     WHERE c.contype = 'f' AND c.confrelid IN (SELECT relid FROM rels)
                       AND c.conrelid NOT IN (SELECT relid FROM rels)) AS referenced`,
    [present.map((t) => t.oid)],
  );
  const names = present.map((t) => qualifiedName(t.schema, t.name));
  if (rows[0]!.referenced) {
    await client.query("SET LOCAL session_replication_role = 'replica'");
    for (const n of names) await client.query(`DELETE FROM ${n}`);
    return 'delete';
  }
  await client.query(`TRUNCATE ${names.join(', ')}`);
  return 'truncate';
}
