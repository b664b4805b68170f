/**
 * Row filters (--table-filter, --time-filter) become publication row filters.
 * PostgreSQL accepts those only from 15 on, only as simple immutable
 * expressions, and — for UPDATE and DELETE to keep working on the source —
 * only over replica identity columns. A table filter is tested exactly by
 * creating its publication inside a transaction that is always rolled back.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { isDateTimeType } from '../../postgres/catalog/tables.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { singleStatement as single } from '../../postgres/statement.js';
import { predicateError } from './filters.js';
import { fail, ok, type CheckResult } from './check-result.js';

export const MIN_ROW_FILTER_MAJOR = 15;

/**
 * Column names a predicate mentions (string literals, dollar quotes and
 * comments removed; unquoted names folded to lower case). Used where the
 * exact test is not possible; a word that is also a function name may count.
 */
export function referencedColumns(predicate: string, columns: string[]): string[] {
  const stripped = predicate
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g, ' ')
    .replace(/[eE]?'(?:[^']|'')*'/g, ' ');
  const found = new Set<string>();
  const re = /"((?:[^"]|"")+)"|([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)/g;
  for (const m of stripped.matchAll(re)) {
    const name = m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!.toLowerCase();
    if (columns.includes(name)) found.add(name);
  }
  return [...found];
}

/** attnums of the Var nodes in a stored row filter (pg_publication_rel.prqual). */
export function varAttnums(nodeTree: string): number[] {
  return [...new Set([...nodeTree.matchAll(/:varattno (\d+)/g)].map((m) => Number(m[1])))];
}

interface FilterTrial {
  error?: string;
  columns?: string[];
}

async function trialPublication(client: pg.Client, t: ScopeTable, predicate: string): Promise<FilterTrial> {
  const name = `pgferry_validate_${randomBytes(5).toString('hex')}`;
  await client.query('BEGIN');
  try {
    await client.query("SET LOCAL lock_timeout = '3s'");
    await client.query(single(`CREATE PUBLICATION ${quoteIdent(name)} FOR TABLE ${qualifiedName(t.schema, t.name)} WHERE (${predicate})`));
    const { rows } = await client.query<{ qual: string | null }>(
      single('SELECT pr.prqual::text AS qual FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1', [name]),
    );
    const attnums = varAttnums(rows[0]?.qual ?? '');
    const { rows: cols } = await client.query<{ attname: string }>(
      single('SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum = ANY($2::int2[]) ORDER BY attnum', [t.oid, attnums]),
    );
    return { columns: cols.map((c) => c.attname) };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
}

async function explainPredicate(client: pg.Client, t: ScopeTable, predicate: string): Promise<FilterTrial> {
  const error = await predicateError(client, t.schema, t.name, predicate);
  return error !== undefined ? { error } : { columns: referencedColumns(predicate, t.columns.map((c) => c.name)) };
}

function identityFix(t: ScopeTable, cols: string[]): string {
  return `ALTER TABLE ${qualifiedName(t.schema, t.name)} REPLICA IDENTITY FULL;  -- or filter on key columns only (the row filter uses ${cols.map(quoteIdent).join(', ')})`;
}

/** Columns the filter uses that UPDATE/DELETE could not check on the source (empty when identity is FULL). */
function outsideIdentity(t: ScopeTable, cols: string[]): string[] {
  if (t.replicaIdentity === 'f') return [];
  return cols.filter((c) => !t.replicaIdentityColumns.includes(c));
}

export interface FilterContext {
  major: number;
  /** The user may create publications for these tables (superuser, or owner with CREATE on the database). */
  canPublish: boolean;
  /** Receives "schema.table" of every table whose filter PostgreSQL refused (no other query can use it). */
  refused?: Set<string>;
}

export async function checkFilters(client: pg.Client, tables: ScopeTable[], ctx: FilterContext): Promise<CheckResult[]> {
  const filtered = tables.filter((t) => !t.schemaOnly && (t.filter !== undefined || t.timeFilter !== undefined));
  if (!filtered.length) return [];
  const out: CheckResult[] = [];
  const id = 'tables.row_filter';
  for (const t of filtered) {
    const name = displayName(t.schema, t.name);
    if (ctx.major < MIN_ROW_FILTER_MAJOR) {
      out.push(
        fail(
          id,
          'source',
          `${name} has a row filter, but publications on PostgreSQL ${ctx.major} cannot filter rows (15+ can)`,
          `remove the --table-filter / --time-filter for ${name}, or upgrade the source to PostgreSQL ${MIN_ROW_FILTER_MAJOR} or later`,
        ),
      );
      continue;
    }
    if (t.timeFilter) {
      const col = t.columns.find((c) => c.name === t.timeFilter!.column);
      if (!col || !isDateTimeType(col.type)) {
        ctx.refused?.add(`${t.schema}.${t.name}`);
        out.push(
          fail(id, 'source', `${name}: time filter column ${t.timeFilter.column} is ${col?.type ?? 'missing'}, not a date or timestamp`, 'name a date, timestamp or timestamptz column in --time-filter'),
        );
        continue;
      }
      const outside = outsideIdentity(t, [col.name]);
      out.push(
        outside.length
          ? fail(id, 'source', `${name}: time filter column ${col.name} is not part of the replica identity, so UPDATE and DELETE on ${name} would fail on the source once published`, identityFix(t, [col.name]))
          : ok(id, 'source', `${name}: time filter on ${col.name} (last ${t.timeFilter.window}) can be published`),
      );
      continue;
    }
    const predicate = t.filter!;
    const trial = ctx.canPublish ? await trialPublication(client, t, predicate) : await explainPredicate(client, t, predicate);
    if (trial.error !== undefined) {
      ctx.refused?.add(`${t.schema}.${t.name}`);
      out.push(
        fail(
          id,
          'source',
          `${name}: the row filter (${predicate}) is not accepted: ${trial.error}`,
          'a publication row filter may use only this table\'s columns, immutable built-in functions and operators, and no subqueries: rewrite --table-filter (e.g. compare with a fixed timestamp instead of now())',
        ),
      );
      continue;
    }
    const outside = outsideIdentity(t, trial.columns ?? []);
    out.push(
      outside.length
        ? fail(
            id,
            'source',
            `${name}: the row filter uses ${outside.join(', ')}, which ${outside.length > 1 ? 'are' : 'is'} not part of the replica identity, so UPDATE and DELETE on ${name} would fail on the source once published`,
            identityFix(t, outside),
          )
        : ok(id, 'source', `${name}: row filter (${predicate}) can be published${ctx.canPublish ? '' : ' (syntax checked; immutability is checked by init)'}`),
    );
  }
  return out;
}
