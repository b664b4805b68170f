/**
 * Row filters as init applies them. A table filter is the user's predicate; a
 * time filter becomes `"col" >= '<cutoff>'::timestamptz` with the cutoff
 * computed once on the source at the first run (`now() - window`) and kept in
 * the state, so that a resumed init, sync and verify all use the very same
 * constant (a publication row filter may not call now()).
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
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
