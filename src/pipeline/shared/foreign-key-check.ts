/**
 * Foreign keys that the scope would break, found before anything is copied.
 *
 * A key among copied tables breaks when the referencing table keeps rows whose
 * referenced rows are not copied: the referenced table is schema-only or
 * filtered (and the referencing rows are not filtered along), or excluded
 * altogether (then the key cannot even be created). Keys that are NOT VALID
 * on the source never block: they stay NOT VALID. For schema-only and
 * filtered referenced tables the answer is exact: a query looks for one
 * referencing row without its referenced row, under a snapshot.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import type { ForeignKey } from '../../postgres/catalog/foreign-keys.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { tableKey } from '../../state/checkpoint.js';

export interface ForeignKeyProblem {
  fk: ForeignKey;
  /** What leaves the key violated. */
  cause: 'excluded' | 'schema-only' | 'filtered';
  /** True when a violating row was found (or, for an excluded table, the key cannot exist). */
  message: string;
  /** --fk-not-valid can get past it (not for excluded referenced tables). */
  notValidHelps: boolean;
}

function fkName(fk: ForeignKey): string {
  return `${quoteIdent(fk.name)} on ${displayName(fk.schema, fk.table)}`;
}

function from(schema: string, name: string, partitioned: boolean): string {
  // A foreign key sees only the referenced table's own rows, not inheritance children.
  return `${partitioned ? '' : 'ONLY '}${qualifiedName(schema, name)}`;
}

/** SQL that returns a row when some referencing row would be left without its referenced row. */
export function violationQuery(fk: ForeignKey, childFilter: string | undefined, parent: { schemaOnly: boolean; filter?: string | undefined }): string {
  const notNull = fk.columns.map((c) => `c.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
  const child = `(SELECT * FROM ${from(fk.schema, fk.table, fk.partitioned)}${childFilter ? ` WHERE (${childFilter})` : ''}) c`;
  if (parent.schemaOnly) return `SELECT 1 FROM ${child} WHERE ${notNull} LIMIT 1`;
  const match = fk.columns.map((c, i) => `p.${quoteIdent(fk.refColumns[i]!)} = c.${quoteIdent(c)}`).join(' AND ');
  const parentRows = `(SELECT * FROM ${from(fk.refSchema, fk.refTable, fk.refPartitioned)} WHERE (${parent.filter})) p`;
  return `SELECT 1 FROM ${child} WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${parentRows} WHERE ${match}) LIMIT 1`;
}

/**
 * Check every foreign key of the scope. `client` should be inside a
 * REPEATABLE READ transaction so that all queries see one snapshot.
 */
export async function checkForeignKeys(
  client: pg.Client,
  fks: ForeignKey[],
  tables: ScopeTable[],
  filters: Record<string, string>,
): Promise<ForeignKeyProblem[]> {
  const byKey = new Map(tables.map((t) => [tableKey(t.schema, t.name), t]));
  const problems: ForeignKeyProblem[] = [];
  for (const fk of fks) {
    const child = byKey.get(tableKey(fk.schema, fk.table));
    if (!child) continue; // the key belongs to a table left out: not dumped
    const parent = byKey.get(tableKey(fk.refSchema, fk.refTable));
    const childName = displayName(fk.schema, fk.table);
    const parentName = displayName(fk.refSchema, fk.refTable);
    if (!parent) {
      problems.push({
        fk,
        cause: 'excluded',
        notValidHelps: false,
        message: `foreign key ${fkName(fk)} references ${parentName}, which is excluded from the scope: the key cannot be created on the target`,
      });
      continue;
    }
    if (child.schemaOnly || !fk.validated) continue;
    const childFilter = filters[tableKey(fk.schema, fk.table)];
    const parentFilter = filters[tableKey(fk.refSchema, fk.refTable)];
    if (!parent.schemaOnly && !parentFilter) continue;
    const { rowCount } = await client.query(violationQuery(fk, childFilter, { schemaOnly: parent.schemaOnly, filter: parentFilter }));
    if (!rowCount) continue;
    const why = parent.schemaOnly ? `${parentName} is copied without rows (schema-only)` : `the filter on ${parentName} leaves out rows`;
    problems.push({
      fk,
      cause: parent.schemaOnly ? 'schema-only' : 'filtered',
      notValidHelps: true,
      message: `foreign key ${fkName(fk)} references ${parentName}, but ${why} that ${childName} keeps (checked on the source: at least one such row exists)`,
    });
  }
  return problems;
}

/** How to get past the problems, for the error's hint. */
export function fkProblemHint(problems: ForeignKeyProblem[]): string {
  const children = [...new Set(problems.map((p) => displayName(p.fk.schema, p.fk.table)))];
  const ways = [
    `filter the referencing table${children.length > 1 ? 's' : ''} too (--table-filter "${children[0]}:…")`,
    `exclude ${children.join(', ')} (--exclude-tables)`,
  ];
  if (problems.some((p) => p.cause === 'excluded')) ways.push('include the referenced table (with --schema-only-tables if its rows are not wanted)');
  if (problems.every((p) => p.notValidHelps)) ways.push('or pass --fk-not-valid to create these keys NOT VALID on the target');
  return ways.join('; ');
}
