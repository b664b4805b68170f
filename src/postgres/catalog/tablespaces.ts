/**
 * The tablespaces a database's relations live in, when not the database's default: init restores with
 * --no-tablespaces unless asked to keep them (--keep-tablespaces), and validate says which relations move.
 */
import type pg from 'pg';

/** A table of the scope (and its partitions). */
interface ScopeRelation {
  oid: number;
  partitions: { oid: number }[];
}

export interface TablespaceUse {
  schema: string;
  name: string;
  /** pg_class.relkind: r, p, i, I, m. */
  kind: string;
  tablespace: string;
}

export interface TablespaceFacts {
  /** The database's own default tablespace when it is not pg_default. */
  databaseDefault: string | null;
  relations: TablespaceUse[];
}

/** The scope's tables and their indexes, and every materialized view, that live outside the database's default tablespace. */
export async function gatherTablespaces(client: pg.Client, tables: readonly ScopeRelation[]): Promise<TablespaceFacts> {
  const oids = tables.flatMap((t) => [t.oid, ...t.partitions.map((p) => p.oid)]);
  const { rows } = await client.query<TablespaceUse & { dbDefault: string | null }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, s.spcname AS tablespace, NULL::text AS "dbDefault"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_tablespace s ON s.oid = c.reltablespace
      WHERE c.reltablespace <> 0
        AND (c.oid = ANY($1::oid[]) OR c.relkind = 'm' OR c.oid IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = ANY($1::oid[])))
     UNION ALL
     SELECT NULL, NULL, NULL, NULL, s.spcname FROM pg_database d JOIN pg_tablespace s ON s.oid = d.dattablespace
      WHERE d.datname = current_database() AND s.spcname <> 'pg_default'
      ORDER BY 1, 2`,
    [oids],
  );
  return {
    databaseDefault: rows.find((r) => r.dbDefault !== null)?.dbDefault ?? null,
    relations: rows.filter((r) => r.dbDefault === null).map(({ schema, name, kind, tablespace }) => ({ schema, name, kind, tablespace })),
  };
}
