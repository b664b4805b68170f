/**
 * An extension's configuration relations: the tables and sequences its script
 * marked with pg_extension_config_dump (pg_cron's jobs and their id sequence,
 * pg_partman's part_config, PostGIS's spatial_ref_sys). They are members of the
 * extension, so the target's CREATE EXTENSION makes them, but the rows the
 * condition selects are the user's: pg_dump copies them with the extension.
 */
import type pg from 'pg';

export interface ExtensionConfigRelation {
  /** pg_class OID, as text (it may exceed int4). */
  oid: string;
  extension: string;
  schema: string;
  name: string;
  /** 'r' a table, 'S' a sequence (other kinds pg_dump does not copy). */
  relkind: 'r' | 'S';
  /** For a table, the extension's own `WHERE …` (or empty for every row), as pg_dump runs it. */
  condition: string;
}

export async function extensionConfigRelations(client: pg.Client): Promise<ExtensionConfigRelation[]> {
  const { rows } = await client.query<ExtensionConfigRelation>(
    `SELECT c.oid::text AS oid, e.extname AS extension, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind, coalesce(u.cond, '') AS condition
       FROM pg_extension e
      CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS u(cfg, cond)
       JOIN pg_class c ON c.oid = u.cfg AND c.relkind IN ('r', 'S')
       JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY 1, 2, 3`,
  );
  return rows;
}

/** Foreign keys between the given tables (self references left out): child and parent OIDs, as text. */
export async function foreignKeysAmong(client: pg.Client, oids: readonly string[]): Promise<{ child: string; parent: string }[]> {
  if (oids.length < 2) return [];
  const { rows } = await client.query<{ child: string; parent: string }>(
    `SELECT conrelid::text AS child, confrelid::text AS parent FROM pg_constraint
      WHERE contype = 'f' AND conrelid = ANY($1::oid[]) AND confrelid = ANY($1::oid[]) AND conrelid <> confrelid`,
    [oids],
  );
  return rows;
}
