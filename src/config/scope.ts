/**
 * The scope of a run: which databases, which tables, which of them
 * structure-only, and which rows (filters). One ScopeSpec is built from flags
 * (and later a TOML file); every command (validate, init, sync, status,
 * verify, cleanup) resolves it against the source with `resolveScope`.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { UsageError } from '../errors.js';
import { listTables, type CatalogTable, type ListTablesOptions } from '../postgres/catalog/tables.js';
import { matches, parseTableAndRest, parseTablePattern, splitList, type NamePattern } from './names.js';
import type { DataRuleSpec, TableMasking } from './data-rules.js';
import { resolveMasking } from './data-rules-catalog.js';

export interface TableFilterSpec {
  schema: string;
  table: string;
  /** SQL boolean expression over the table's columns. */
  where: string;
}

export interface TimeFilterSpec {
  schema: string;
  table: string;
  column: string;
  /** A window such as "6 months", "30 days". */
  window: string;
}

export interface TableRules {
  /** Patterns; empty means every table. */
  include: string[];
  exclude: string[];
  /** Patterns of tables copied as structure only. */
  schemaOnly: string[];
  tableFilters: TableFilterSpec[];
  timeFilters: TimeFilterSpec[];
  /** Data masking rules (configuration file only); absent when there are none. */
  dataRules?: DataRuleSpec[];
}

export interface DatabaseSelection {
  /** Every non-template database that accepts connections. */
  all: boolean;
  include: string[];
  exclude: string[];
}

export interface ScopeSpec {
  databases: DatabaseSelection;
  /** Rules for every database (command-line flags). */
  rules: TableRules;
  /** Rules for one database (configuration file), merged over `rules`. */
  perDatabase: Record<string, TableRules>;
}

export function emptyRules(): TableRules {
  return { include: [], exclude: [], schemaOnly: [], tableFilters: [], timeFilters: [] };
}

export function emptyScope(): ScopeSpec {
  return { databases: { all: false, include: [], exclude: [] }, rules: emptyRules(), perDatabase: {} };
}

const WINDOW_UNITS = ['second', 'minute', 'hour', 'day', 'week', 'month', 'year'] as const;

/** "6 months" → "6 months" (normalised); rejects what PostgreSQL's interval input would misread. */
export function parseWindow(text: string, what = 'time window'): string {
  const m = /^\s*(\d+)\s*(second|minute|hour|day|week|month|year)s?\s*$/i.exec(text);
  if (!m) {
    throw new UsageError(`${what}: "${text}" is not a window`, {
      hint: `write a number and a unit, e.g. "6 months", "30 days" (units: ${WINDOW_UNITS.join(', ')})`,
    });
  }
  const n = Number(m[1]);
  if (n <= 0) throw new UsageError(`${what}: "${text}" must be longer than zero`);
  const unit = m[2]!.toLowerCase();
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** --table-filter "schema.table:predicate" */
export function parseTableFilterFlag(text: string): TableFilterSpec {
  const { schema, table, rest } = parseTableAndRest(text, '--table-filter');
  if (!rest.trim()) throw new UsageError(`--table-filter: "${text}" has an empty predicate`);
  return { schema, table, where: rest.trim() };
}

/** --time-filter "schema.table:column:window" */
export function parseTimeFilterFlag(text: string): TimeFilterSpec {
  const { schema, table, rest } = parseTableAndRest(text, '--time-filter');
  const colon = rest.lastIndexOf(':');
  if (colon <= 0) throw new UsageError(`--time-filter: "${text}" needs the form schema.table:column:window (e.g. public.events:created_at:6 months)`);
  let column = rest.slice(0, colon).trim();
  if (column.startsWith('"') && column.endsWith('"')) column = column.slice(1, -1).replace(/""/g, '"');
  else column = column.toLowerCase();
  return { schema, table, column, window: parseWindow(rest.slice(colon + 1), '--time-filter') };
}

export interface ScopeFlags {
  includeDatabases?: string | string[];
  excludeDatabases?: string | string[];
  allDatabases?: boolean;
  includeTables?: string | string[];
  excludeTables?: string | string[];
  schemaOnlyTables?: string | string[];
  tableFilter?: string | string[];
  timeFilter?: string | string[];
}

function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Build a ScopeSpec from command-line flags (validating every pattern and filter). */
export function scopeFromFlags(flags: ScopeFlags, base: ScopeSpec = emptyScope()): ScopeSpec {
  const spec: ScopeSpec = structuredClone(base);
  const incDb = splitList(flags.includeDatabases);
  const excDb = splitList(flags.excludeDatabases);
  if (flags.allDatabases && incDb.length) {
    throw new UsageError('--all-databases and --include-databases cannot be combined', { hint: 'use --all-databases with --exclude-databases' });
  }
  if (flags.allDatabases) spec.databases.all = true;
  if (incDb.length) spec.databases.include = incDb;
  if (excDb.length) spec.databases.exclude = excDb;
  const r = spec.rules;
  const inc = splitList(flags.includeTables);
  const exc = splitList(flags.excludeTables);
  const so = splitList(flags.schemaOnlyTables);
  if (inc.length) r.include = inc;
  if (exc.length) r.exclude = exc;
  if (so.length) r.schemaOnly = so;
  for (const p of [...r.include, ...r.exclude, ...r.schemaOnly]) parseTablePattern(p);
  const tf = asList(flags.tableFilter).map(parseTableFilterFlag);
  const tm = asList(flags.timeFilter).map(parseTimeFilterFlag);
  if (tf.length) r.tableFilters = tf;
  if (tm.length) r.timeFilters = tm;
  checkRules(r, 'command line');
  return spec;
}

/** Contradictions inside one set of rules. */
export function checkRules(r: TableRules, where: string): void {
  const key = (s: string, t: string) => `${s}.${t}`;
  const filtered = new Map<string, string>();
  for (const f of r.tableFilters) {
    const k = key(f.schema, f.table);
    if (filtered.has(k)) throw new UsageError(`${where}: table ${k} has two table filters; combine them with AND`);
    filtered.set(k, 'table filter');
  }
  for (const f of r.timeFilters) {
    const k = key(f.schema, f.table);
    if (filtered.has(k)) throw new UsageError(`${where}: table ${k} has both a table filter and a time filter; use one (a table filter can test the time column too)`);
    filtered.set(k, 'time filter');
  }
  const so = r.schemaOnly.map((p) => parseTablePattern(p));
  for (const [k] of filtered) {
    const [s, t] = [k.slice(0, k.indexOf('.')), k.slice(k.indexOf('.') + 1)];
    if (so.some((p) => matches(p, s, t))) {
      throw new UsageError(`${where}: table ${k} is both schema-only and filtered; a schema-only table has no rows to filter`);
    }
  }
}

/** Rules in force for one database: per-database rules override the global ones field by field. */
export function rulesFor(spec: ScopeSpec, database: string): TableRules {
  const own = spec.perDatabase[database];
  if (!own) return spec.rules;
  return {
    include: own.include.length ? own.include : spec.rules.include,
    exclude: [...spec.rules.exclude, ...own.exclude],
    schemaOnly: [...spec.rules.schemaOnly, ...own.schemaOnly],
    tableFilters: [...own.tableFilters, ...spec.rules.tableFilters.filter((f) => !own.tableFilters.some((o) => o.schema === f.schema && o.table === f.table))],
    timeFilters: [...own.timeFilters, ...spec.rules.timeFilters.filter((f) => !own.timeFilters.some((o) => o.schema === f.schema && o.table === f.table))],
    ...(spec.rules.dataRules?.length || own.dataRules?.length ? { dataRules: [...(spec.rules.dataRules ?? []), ...(own.dataRules ?? [])] } : {}),
  };
}

function sortedRules(r: TableRules): TableRules {
  const byTable = <T extends { schema: string; table: string }>(a: T, b: T) =>
    a.schema === b.schema ? (a.table < b.table ? -1 : a.table > b.table ? 1 : 0) : a.schema < b.schema ? -1 : 1;
  const set = (xs: string[]) => [...new Set(xs)].sort();
  return {
    include: set(r.include),
    exclude: set(r.exclude),
    schemaOnly: set(r.schemaOnly),
    tableFilters: [...r.tableFilters].sort(byTable),
    timeFilters: [...r.timeFilters].sort(byTable),
    ...(r.dataRules?.length ? { dataRules: [...r.dataRules].sort((a, b) => `${a.database ?? ''}\u0000${a.key}`.localeCompare(`${b.database ?? ''}\u0000${b.key}`)) } : {}),
  };
}

/**
 * The scope as it acts, in one canonical form: where the databases are named
 * each gets its resolved rules; otherwise per-database rules that add nothing
 * are dropped; lists are sorted. Flags, a configuration file and the
 * interactive mode that mean the same thing give the same canonical scope.
 */
export function canonicalScope(spec: ScopeSpec): ScopeSpec {
  const { databases } = spec;
  if (!databases.all && databases.include.length) {
    const names = [...new Set(databases.include)].filter((d) => !databases.exclude.includes(d)).sort();
    return {
      databases: { all: false, include: names, exclude: [] },
      rules: emptyRules(),
      perDatabase: Object.fromEntries(names.map((d) => [d, sortedRules(rulesFor(spec, d))])),
    };
  }
  const rules = sortedRules(spec.rules);
  const perDatabase: Record<string, TableRules> = {};
  for (const db of Object.keys(spec.perDatabase).sort()) {
    if (databases.exclude.includes(db)) continue;
    const own = sortedRules(rulesFor(spec, db));
    if (JSON.stringify(own) !== JSON.stringify(rules)) perDatabase[db] = own;
  }
  return { databases: { all: databases.all, include: [], exclude: [...new Set(databases.exclude)].sort() }, rules, perDatabase };
}

/** A stable fingerprint of the scope (for checkpoints: a changed scope is refused on resume). */
export function scopeHash(spec: ScopeSpec): string {
  const canonical = JSON.stringify(canonicalScope(spec), (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

/** A table in scope with everything later steps need to know about it. */
export interface ScopeTable extends CatalogTable {
  /** Copy structure only, no rows. */
  schemaOnly: boolean;
  /** Row predicate (SQL) from a table filter; time filters get theirs once the cutoff is fixed. */
  filter?: string;
  timeFilter?: { column: string; window: string };
  /** Masked columns (data rules), set by resolveTables. */
  masking?: TableMasking;
}

export interface DatabaseScope {
  database: string;
  tables: ScopeTable[];
  /** Tables that exist but were left out, schema-qualified (for messages and `list`). */
  excluded: string[];
  /** Every table of the database, as the one catalog read found them (in scope or not). */
  all: CatalogTable[];
}

/** Which databases of the source are in scope. `urlDatabase` is the one named in the connection. */
export async function resolveDatabases(client: pg.Client, sel: DatabaseSelection, urlDatabase: string): Promise<string[]> {
  const { rows } = await client.query<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname',
  );
  const existing = rows.map((r) => r.datname);
  let chosen: string[];
  if (sel.all) chosen = existing;
  else if (sel.include.length) {
    const missing = sel.include.filter((d) => !existing.includes(d));
    if (missing.length) {
      throw new UsageError(`database${missing.length > 1 ? 's' : ''} not found on the source: ${missing.join(', ')}`, {
        hint: `existing databases: ${existing.join(', ')}`,
      });
    }
    chosen = sel.include;
  } else chosen = [urlDatabase];
  const out = chosen.filter((d) => !sel.exclude.includes(d));
  if (!out.length) throw new UsageError('no database left in scope after --exclude-databases');
  return out;
}

function compile(patterns: string[]): NamePattern[] {
  return patterns.map((p) => parseTablePattern(p));
}

/** Whether the include and exclude rules select a table (no catalog needed; exact names are not checked here). */
export function tableSelector(rules: Pick<TableRules, 'include' | 'exclude'>): (schema: string, name: string) => boolean {
  const inc = compile(rules.include);
  const exc = compile(rules.exclude);
  return (schema, name) => (inc.length === 0 || inc.some((p) => matches(p, schema, name))) && !exc.some((p) => matches(p, schema, name));
}

/**
 * Resolve the table rules of one database against its catalog. Exact names
 * that match no table are errors (a typo must not silently copy nothing).
 */
export async function resolveTables(client: pg.Client, database: string, rules: TableRules, opts: ListTablesOptions = {}): Promise<DatabaseScope> {
  const all = await listTables(client, opts);
  const inc = compile(rules.include);
  const exc = compile(rules.exclude);
  const so = compile(rules.schemaOnly);
  const selected = tableSelector(rules);
  const exists = (schema: string, table: string) => all.some((t) => t.schema === schema && t.name === table);
  for (const p of [...inc, ...exc, ...so]) {
    if (p.exact && !exists(p.schemaName, p.tableName)) {
      throw new UsageError(`table ${p.schemaName}.${p.tableName} does not exist in database "${database}" (from "${p.text}")`, {
        hint: 'names fold to lower case unless quoted, as in pg_dump: write "MixedCase" in double quotes',
      });
    }
  }
  for (const f of [...rules.tableFilters, ...rules.timeFilters]) {
    if (!exists(f.schema, f.table)) {
      throw new UsageError(`filtered table ${f.schema}.${f.table} does not exist in database "${database}"`);
    }
  }
  const tables: ScopeTable[] = [];
  const excluded: string[] = [];
  for (const t of all) {
    if (!selected(t.schema, t.name)) {
      excluded.push(`${t.schema}.${t.name}`);
      continue;
    }
    const st: ScopeTable = { ...t, schemaOnly: so.some((p) => matches(p, t.schema, t.name)) };
    const tf = rules.tableFilters.find((f) => f.schema === t.schema && f.table === t.name);
    if (tf) st.filter = tf.where;
    const tm = rules.timeFilters.find((f) => f.schema === t.schema && f.table === t.name);
    if (tm) {
      if (!t.columns.some((c) => c.name === tm.column)) {
        throw new UsageError(`time filter: column "${tm.column}" does not exist in ${t.schema}.${t.name}`);
      }
      st.timeFilter = { column: tm.column, window: tm.window };
    }
    tables.push(st);
  }
  for (const f of [...rules.tableFilters, ...rules.timeFilters]) {
    if (!tables.some((t) => t.schema === f.schema && t.name === f.table)) {
      throw new UsageError(`${f.schema}.${f.table} has a filter but is excluded from the scope`);
    }
  }
  await resolveMasking(client, database, tables, all, rules.dataRules ?? []);
  return { database, tables, excluded, all };
}
