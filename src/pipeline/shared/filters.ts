/**
 * Row filters as init applies them. A table filter is the user's predicate; a
 * time filter becomes `"col" >= '<cutoff>'::timestamptz` with the cutoff
 * computed once on the source at the first run (`now() - window`) and kept in
 * the state, so that a resumed init, sync and verify all use the very same
 * constant (a publication row filter may not call now()).
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { isDateTimeType } from '../../postgres/catalog/tables.js';
import { displayName, qualifiedName, quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { singleStatement } from '../../postgres/statement.js';
import { tableKey } from '../../state/checkpoint.js';

/** Cutoffs for the time-filtered tables that have none yet (text in UTC, as the canonical session prints it). */
export async function fixTimeCutoffs(client: pg.Client, tables: ScopeTable[], existing: Record<string, string>): Promise<Record<string, string>> {
  const out = { ...existing };
  for (const t of tables) {
    if (!t.timeFilter) continue;
    const key = tableKey(t.schema, t.name);
    if (out[key]) continue;
    const { rows } = await client.query<{ cutoff: string }>(
      `SELECT to_char((now() - $1::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cutoff`,
      [t.timeFilter.window],
    );
    out[key] = rows[0]!.cutoff;
  }
  return out;
}

export function timeFilterPredicate(column: string, cutoff: string): string {
  return `${quoteIdent(column)} >= ${quoteLiteral(cutoff)}::timestamptz`;
}

/** "schema.table" → the predicate applied on the source side. */
export function effectiveFilters(tables: ScopeTable[], cutoffs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tables) {
    const key = tableKey(t.schema, t.name);
    if (t.filter) out[key] = t.filter;
    else if (t.timeFilter) {
      const cutoff = cutoffs[key];
      if (cutoff) out[key] = timeFilterPredicate(t.timeFilter.column, cutoff);
    }
  }
  return out;
}

/**
 * Why PostgreSQL refuses a row predicate on a table, or undefined when it
 * plans it. EXPLAIN in a read-only transaction that is rolled back; sent with
 * the extended protocol, which refuses a second statement smuggled into the text.
 */
export async function predicateError(client: pg.Client, schema: string, name: string, predicate: string): Promise<string | undefined> {
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(singleStatement(`EXPLAIN SELECT 1 FROM ${qualifiedName(schema, name)} WHERE (${predicate})`));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
}

/** Refuse (exit 2) a row predicate that PostgreSQL cannot plan on this table, naming both. */
export async function assertPredicatePlans(client: pg.Client, schema: string, name: string, predicate: string, hint: string): Promise<void> {
  const error = await predicateError(client, schema, name, predicate);
  if (error !== undefined) throw new UsageError(`the row filter of ${displayName(schema, name)} (${predicate}) is not valid: ${error}`, { hint });
}

/** Refuse (exit 2), before anything is created, a filter that PostgreSQL cannot plan, naming the table and the predicate. */
export async function assertFiltersPlan(client: pg.Client, tables: ScopeTable[], filters: Record<string, string>): Promise<void> {
  for (const t of tables) {
    const predicate = filters[tableKey(t.schema, t.name)];
    if (predicate === undefined || t.schemaOnly) continue;
    const col = t.timeFilter && t.columns.find((c) => c.name === t.timeFilter!.column);
    if (col && !isDateTimeType(col.type)) {
      throw new UsageError(`time filter on ${displayName(t.schema, t.name)}: column ${col.name} is ${col.type}, not a date or timestamp`, {
        hint: 'name a date, timestamp or timestamptz column in --time-filter',
      });
    }
    await assertPredicatePlans(client, t.schema, t.name, predicate, 'fix the predicate in --table-filter or the configuration file; pgferry validate checks every filter without writing anything');
  }
}
