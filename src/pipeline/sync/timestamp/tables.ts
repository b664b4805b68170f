/**
 * What a timestamp round needs of each table: its key, the columns both sides
 * share (typed as on the target, generated columns left out), and how it is
 * brought up to date: by its timestamp column, or compared chunk by chunk
 * when it has none. Tables without a key cannot be upserted and are refused.
 */
import type { ScopeTable } from '../../../config/scope.js';
import { UsageError } from '../../../errors.js';
import type { CatalogTable } from '../../../postgres/catalog/tables.js';
import { displayName } from '../../../postgres/identifiers.js';
import type { RowTable } from '../../shared/row-diff.js';
import type { TsUnique } from './uniques.js';

export interface TsColumn {
  name: string;
  /** format_type() on the target: values travel as text and are cast to it. */
  targetType: string;
  identity: boolean;
}

export interface TsTable extends RowTable {
  key: RowTable['key'] & object;
  columns: TsColumn[];
  /** The column that says when a row last changed, or null: compared chunk by chunk. */
  timestamp: { name: string; withTimeZone: boolean } | null;
  /** Why the table is compared rather than read by timestamp. */
  compareReason: string | null;
  /** Unique indexes of the target other than the key (filled by the round: uniques.ts). */
  uniques: TsUnique[];
}

export interface TimestampColumns {
  /** --timestamp-column (default updated_at). */
  fallback: string;
  /** Per source database ('*': every database), per table ("schema.name", or "name" for public): the configuration file's timestamp_columns. */
  perTable: Record<string, Record<string, string>>;
}

function columnFor(t: ScopeTable, cols: TimestampColumns, database: string): string {
  const names = [`${t.schema}.${t.name}`, displayName(t.schema, t.name), ...(t.schema === 'public' ? [t.name] : [])];
  for (const where of [cols.perTable[database], cols.perTable['*']]) {
    for (const n of names) if (where?.[n] !== undefined) return where[n]!;
  }
  return cols.fallback;
}

/** The tables of one round, in scope order; keyless ones are refused by name with the choices. */
export function planTables(
  database: string, scope: readonly ScopeTable[], target: readonly CatalogTable[], filters: Record<string, string>, cols: TimestampColumns,
): TsTable[] {
  const copied = scope.filter((t) => !t.schemaOnly);
  const keyless = copied.filter((t) => !(t.primaryKey ?? t.uniqueKey));
  if (keyless.length) {
    throw new UsageError(`--method timestamp cannot upsert tables without a primary key or unique NOT NULL key: ${keyless.map((t) => displayName(t.schema, t.name)).join(', ')}`, {
      hint: 'exclude them (--exclude-tables), add a primary key on the source, or use logical replication (sync without --method timestamp)',
    });
  }
  const masked = copied.filter((t) => t.masking).map((t) => displayName(t.schema, t.name));
  if (masked.length) {
    throw new UsageError(`--method timestamp does not apply data masking rules, and these tables have some: ${masked.join(', ')}`, {
      hint: 'leave the [data_rules] out of this run, or use logical replication (sync without --method timestamp)',
    });
  }
  const byName = new Map(target.map((t) => [`${t.schema}\u0000${t.name}`, t]));
  return copied.map((t) => {
    const tt = byName.get(`${t.schema}\u0000${t.name}`);
    if (!tt) throw new UsageError(`table ${displayName(t.schema, t.name)} does not exist on the target`, { hint: 'run pgferry init --method timestamp first' });
    const tcols = new Map(tt.columns.map((c) => [c.name, c]));
    const columns: TsColumn[] = [];
    for (const c of t.columns) {
      const tc = tcols.get(c.name);
      if (tc && !tc.generated && !c.generated) columns.push({ name: c.name, targetType: tc.type, identity: tc.identity });
    }
    const keyNames = (t.primaryKey ?? t.uniqueKey)!;
    const key = keyNames.map((k) => {
      const sc = t.columns.find((c) => c.name === k)!;
      return { name: k, sourceType: sc.type, targetType: tcols.get(k)?.type ?? sc.type };
    });
    const wanted = columnFor(t, cols, database);
    const ts = t.columns.find((c) => c.name === wanted);
    let timestamp: TsTable['timestamp'] = null;
    let compareReason: string | null = null;
    if (!ts) compareReason = `no column "${wanted}"`;
    else if (!/^timestamp/.test(ts.type)) compareReason = `column "${wanted}" is ${ts.type}, not a timestamp`;
    else timestamp = { name: wanted, withTimeZone: ts.type.includes('with time zone') };
    return {
      schema: t.schema, name: t.name, key, columns, filter: filters[`${t.schema}.${t.name}`] ?? t.filter ?? null,
      only: t.hasInheritanceChildren, timestamp, compareReason, uniques: [],
    };
  });
}
