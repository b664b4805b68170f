/**
 * validate's view of foreign keys under the scope: a filter, a schema-only
 * table or an exclusion must not leave copied rows pointing at rows that are
 * not copied. The same exact test init runs before copying (fk-check), here
 * under one read-only snapshot with time filters cut off at the current time,
 * and with a time limit so that a huge table cannot stall the preflight.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { withTransaction } from '../../postgres/connect.js';
import { listForeignKeys } from '../../postgres/catalog/foreign-keys.js';
import { sqlstate } from '../../postgres/errors.js';
import { checkForeignKeys, fkProblemHint } from '../shared/foreign-key-check.js';
import { effectiveFilters, fixTimeCutoffs } from '../shared/filters.js';
import { fail, ok, warn, type CheckResult } from './types.js';

const ID = 'tables.foreign_keys';

/** Statement time limit per foreign key test; beyond it validate warns and leaves the test to init. */
export const FK_CHECK_TIMEOUT_MS = 30_000;

export async function checkFilterForeignKeys(
  client: pg.Client,
  tables: ScopeTable[],
  timeoutMs = FK_CHECK_TIMEOUT_MS,
  refusedFilters: ReadonlySet<string> = new Set(),
): Promise<CheckResult[]> {
  const narrowed = tables.some((t) => t.schemaOnly || t.filter !== undefined || t.timeFilter !== undefined);
  const fks = await listForeignKeys(client);
  const inScope = new Set(tables.map((t) => `${t.schema}\u0000${t.name}`));
  const relevant = fks.filter((fk) => inScope.has(`${fk.schema}\u0000${fk.table}`));
  // Nothing can break when every table is copied whole (excluded parents are caught below too).
  const someParentMissing = relevant.some((fk) => !inScope.has(`${fk.refSchema}\u0000${fk.refTable}`));
  if (!relevant.length || (!narrowed && !someParentMissing)) return [];
  const refused = relevant.flatMap((fk) => [`${fk.schema}.${fk.table}`, `${fk.refSchema}.${fk.refTable}`]).filter((t) => refusedFilters.has(t));
  if (refused.length) {
    // The test runs the filters; one that PostgreSQL refused is reported above and would only fail again here.
    return [warn(ID, 'source', `foreign keys under the filters were not checked: the row filter of ${[...new Set(refused)].join(', ')} is not valid`, 'fix that filter (see above) and run validate again')];
  }
  try {
    const problems = await withTransaction(
      client,
      async (c) => {
        await c.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`);
        const cutoffs = await fixTimeCutoffs(c, tables, {});
        return checkForeignKeys(c, relevant, tables, effectiveFilters(tables, cutoffs));
      },
      { isolation: 'repeatable read', readOnly: true },
    );
    if (!problems.length) return [ok(ID, 'source', `foreign keys among the tables in scope stay satisfied with the filters and schema-only tables (${relevant.length} checked)`)];
    return problems.map((p) => fail(ID, 'source', p.message, fkProblemHint([p])));
  } catch (err) {
    if (sqlstate(err) !== '57014') throw err;
    return [
      warn(ID, 'source', `foreign keys under the filters could not be checked within ${Math.round(timeoutMs / 1000)}s (large tables)`, 'nothing to change now: init runs the same check under its snapshot before it copies anything'),
    ];
  }
}
