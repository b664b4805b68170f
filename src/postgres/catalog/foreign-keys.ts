/**
 * Foreign keys of a database: which table references which, over which
 * columns, whether the key is validated, and its definition as
 * pg_get_constraintdef() prints it (schema-qualified when search_path is empty).
 */
import type pg from 'pg';

export interface ForeignKey {
  oid: number;
  name: string;
  schema: string;
  table: string;
  /** The referencing table is partitioned (the key is added to the parent, not ONLY). */
  partitioned: boolean;
  refSchema: string;
  refTable: string;
  refPartitioned: boolean;
  columns: string[];
  refColumns: string[];
  /** false for keys added NOT VALID and never validated. */
  validated: boolean;
  /** FOREIGN KEY (…) REFERENCES …, as pg_get_constraintdef prints it. */
  definition: string;
}

/**
 * Every top-level foreign key (partition clones left out). Run with
 * `search_path = ''` for definitions with schema-qualified references.
 */
export async function listForeignKeys(client: pg.Client): Promise<ForeignKey[]> {
  const { rows } = await client.query<{
    oid: number; name: string; schema: string; table: string; partitioned: boolean; ref_schema: string; ref_table: string;
    ref_partitioned: boolean; columns: string[]; ref_columns: string[]; validated: boolean; definition: string;
  }>(`
    SELECT c.oid::int AS oid, c.conname AS name, n.nspname AS schema, t.relname AS table, t.relkind = 'p' AS partitioned,
           rn.nspname AS ref_schema, r.relname AS ref_table, r.relkind = 'p' AS ref_partitioned,
           (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS columns,
           (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS ref_columns,
           c.convalidated AS validated,
           pg_get_constraintdef(c.oid) AS definition
      FROM pg_constraint c
      JOIN pg_class t ON t.oid = c.conrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
      JOIN pg_class r ON r.oid = c.confrelid
      JOIN pg_namespace rn ON rn.oid = r.relnamespace
     WHERE c.contype = 'f' AND c.conparentid = 0
     ORDER BY n.nspname, t.relname, c.conname`);
  return rows.map((r) => ({
    oid: r.oid, name: r.name, schema: r.schema, table: r.table, partitioned: r.partitioned, refSchema: r.ref_schema,
    refTable: r.ref_table, refPartitioned: r.ref_partitioned, columns: r.columns, refColumns: r.ref_columns,
    validated: r.validated, definition: r.definition,
  }));
}
