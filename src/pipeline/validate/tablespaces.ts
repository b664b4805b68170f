/**
 * Tablespaces. init restores the schema with --no-tablespaces: every table, index and materialized view is
 * created in the target database's default tablespace, whatever the target has (a tablespace is a directory of
 * one server, rarely laid out alike on another). Say what of the scope lives elsewhere on the source, so that a
 * layout chosen for a reason (a fast disk for hot indexes, a big one for archives) is rebuilt on purpose.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { plural } from '../../units.js';
import { warn, type CheckResult } from './types.js';

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
export async function gatherTablespaces(client: pg.Client, tables: ScopeTable[]): Promise<TablespaceFacts> {
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

const KIND: Record<string, string> = { r: 'table', p: 'table', i: 'index', I: 'index', m: 'materialized view' };

export function checkTablespaces(f: TablespaceFacts): CheckResult | null {
  if (!f.relations.length && !f.databaseDefault) return null;
  const bySpace = new Map<string, TablespaceUse[]>();
  for (const r of f.relations) bySpace.set(r.tablespace, [...(bySpace.get(r.tablespace) ?? []), r]);
  const where = [...bySpace].map(([space, rs]) => {
    const counts = ['table', 'index', 'materialized view'].map((k) => [k, rs.filter((r) => KIND[r.kind] === k).length] as const).filter(([, n]) => n > 0);
    return `${space}: ${counts.map(([k, n]) => plural(n, k, k === 'index' ? 'indexes' : `${k}s`)).join(', ')}`;
  });
  const parts = [
    ...(f.relations.length ? [`${plural(f.relations.length, 'relation')} of the scope live outside the database's default tablespace (${where.join('; ')})`] : []),
    ...(f.databaseDefault ? [`the database's default tablespace is ${f.databaseDefault}`] : []),
  ];
  const first = f.relations[0];
  const move = first
    ? `ALTER ${KIND[first.kind] === 'index' ? 'INDEX' : KIND[first.kind] === 'materialized view' ? 'MATERIALIZED VIEW' : 'TABLE'} ${qualifiedName(first.schema, first.name)} SET TABLESPACE ${quoteIdent(first.tablespace)};  -- and so for each one listed`
    : `ALTER DATABASE … SET TABLESPACE ${quoteIdent(f.databaseDefault!)}  -- with no one connected`;
  return warn(
    'tables.tablespaces',
    'source',
    `${parts.join('; ')}: init creates everything in the target database's default tablespace (as pg_dump --no-tablespaces)`,
    `to keep that layout, create the tablespace${bySpace.size > 1 ? 's' : ''} on the target and move what belongs there after init: ${move}`,
    { details: f.relations.map((r) => `${displayName(r.schema, r.name)} (${KIND[r.kind] ?? r.kind}): ${r.tablespace}`) },
  );
}
