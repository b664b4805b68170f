/**
 * Tablespaces. init restores the schema with --no-tablespaces: every table, index and materialized view is
 * created in the target database's default tablespace, whatever the target has (a tablespace is a directory of
 * one server, rarely laid out alike on another). Say what of the scope lives elsewhere on the source, so that a
 * layout chosen for a reason (a fast disk for hot indexes, a big one for archives) is rebuilt on purpose, or kept
 * (init --keep-tablespaces, when the target has tablespaces of the same names).
 */
import type { TablespaceFacts, TablespaceUse } from '../../postgres/catalog/tablespaces.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { plural } from '../../units.js';
import { warn, type CheckResult } from './types.js';

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
    `to keep that layout, create the tablespace${bySpace.size > 1 ? 's' : ''} on the target and run init with --keep-tablespaces, or move what belongs there after init: ${move}`,
    { details: f.relations.map((r) => `${displayName(r.schema, r.name)} (${KIND[r.kind] ?? r.kind}): ${r.tablespace}`) },
  );
}
