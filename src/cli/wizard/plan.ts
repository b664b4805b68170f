/**
 * The interactive mode's choices as data: the ScopeSpec they mean (exactly
 * the one the equivalent flags build), the flags themselves, and a TOML file
 * that loads back into the same ScopeSpec. Pure functions, no prompts.
 */
import { emptyRules, emptyScope, type ScopeSpec, type TableRules, type TimeFilterSpec } from '../../config/scope.js';
import { displayIdent } from '../../postgres/identifiers.js';

export interface DatabaseChoices {
  database: string;
  /** Tables left out, as schema + name. */
  exclude: { schema: string; name: string }[];
  schemaOnly: { schema: string; name: string }[];
  timeFilters: { schema: string; name: string; column: string; window: string }[];
  /** Row filters carried over from flags or a file (the questions do not write predicates). */
  tableFilters?: { schema: string; name: string; where: string }[];
}

export interface WizardChoices {
  /** The database named in the source connection (the default selection). */
  connectionDatabase: string;
  /** Databases chosen, in the order shown. */
  databases: DatabaseChoices[];
}

/** One identifier as a pattern part: bare when it would fold to itself, "quoted" otherwise. */
export const identPart = displayIdent;

/** An exact table as a pattern that parseTablePattern reads back as that table. */
export function tablePattern(schema: string, name: string): string {
  return `${identPart(schema)}.${identPart(name)}`;
}

function rulesOf(d: DatabaseChoices): TableRules {
  const r = emptyRules();
  r.exclude = d.exclude.map((t) => tablePattern(t.schema, t.name));
  r.schemaOnly = d.schemaOnly.map((t) => tablePattern(t.schema, t.name));
  r.tableFilters = (d.tableFilters ?? []).map((f) => ({ schema: f.schema, table: f.name, where: f.where }));
  r.timeFilters = d.timeFilters.map((f): TimeFilterSpec => ({ schema: f.schema, table: f.name, column: f.column, window: f.window }));
  return r;
}

function sameRules(a: TableRules, b: TableRules): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function isEmpty(r: TableRules): boolean {
  return sameRules(r, emptyRules());
}

/**
 * The ScopeSpec of the choices. When every chosen database gets the same
 * rules they are global rules, as flags would give them; otherwise each
 * database has its own (and only a configuration file can say that).
 */
export function specFromChoices(c: WizardChoices): ScopeSpec {
  const spec = emptyScope();
  const names = c.databases.map((d) => d.database);
  if (!(names.length === 1 && names[0] === c.connectionDatabase)) spec.databases.include = names;
  const rules = c.databases.map(rulesOf);
  if (rules.every((r) => sameRules(r, rules[0]!))) {
    spec.rules = rules[0] ?? emptyRules();
  } else {
    c.databases.forEach((d, i) => {
      if (!isEmpty(rules[i]!)) spec.perDatabase[d.database] = rules[i]!;
    });
  }
  return spec;
}

/** Scope flags that build `spec`, or undefined when per-database rules need a file. */
export function flagsForSpec(spec: ScopeSpec): string[] | undefined {
  if (Object.keys(spec.perDatabase).length) return undefined;
  const out: string[] = [];
  if (spec.databases.all) out.push('--all-databases');
  if (spec.databases.include.length) out.push('--include-databases', spec.databases.include.join(','));
  if (spec.databases.exclude.length) out.push('--exclude-databases', spec.databases.exclude.join(','));
  const r = spec.rules;
  if (r.include.length) out.push('--include-tables', r.include.join(','));
  if (r.exclude.length) out.push('--exclude-tables', r.exclude.join(','));
  if (r.schemaOnly.length) out.push('--schema-only-tables', r.schemaOnly.join(','));
  for (const f of r.tableFilters) out.push('--table-filter', `${tablePattern(f.schema, f.table)}:${f.where}`);
  for (const f of r.timeFilters) out.push('--time-filter', `${tablePattern(f.schema, f.table)}:${identPart(f.column)}:${f.window}`);
  return out;
}

/** Quote one argument for a POSIX shell (single quotes, only when needed). */
export function shellQuote(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

// A TOML literal string ('…') reads better for names with double quotes; it cannot hold ' or control characters.
// eslint-disable-next-line no-control-regex
const str = (s: string) => (/"/.test(s) && !/['\u0000-\u001f\u007f]/.test(s) ? `'${s}'` : JSON.stringify(s));
const list = (xs: string[]) => `[${xs.map(str).join(', ')}]`;
const key = (k: string) => (/^[A-Za-z0-9_-]+$/.test(k) ? k : str(k));

function rulesToml(r: TableRules, prefix: string): string[] {
  const lines: string[] = [];
  if (r.include.length) lines.push(`include_tables = ${list(r.include)}`);
  if (r.exclude.length) lines.push(`exclude_tables = ${list(r.exclude)}`);
  if (r.schemaOnly.length) lines.push(`schema_only = ${list(r.schemaOnly)}`);
  for (const f of r.tableFilters) {
    lines.push('', `[[${prefix}table_filters]]`, `table = ${str(tablePattern(f.schema, f.table))}`, `where = ${str(f.where)}`);
  }
  for (const f of r.timeFilters) {
    lines.push('', `[[${prefix}time_filters]]`, `table = ${str(tablePattern(f.schema, f.table))}`, `column = ${str(identPart(f.column))}`, `last = ${str(f.window)}`);
  }
  return lines;
}

/** A configuration file holding exactly `spec` (no connections, no secrets). */
export function specToToml(spec: ScopeSpec, header: string[] = []): string {
  const lines = header.map((h) => `# ${h}`);
  if (lines.length) lines.push('');
  if (spec.databases.all) lines.push('all_databases = true');
  if (spec.databases.include.length) lines.push(`include_databases = ${list(spec.databases.include)}`);
  if (spec.databases.exclude.length) lines.push(`exclude_databases = ${list(spec.databases.exclude)}`);
  const global = rulesToml(spec.rules, '');
  if (global.length) lines.push(...(lines.length && lines.at(-1) !== '' ? [''] : []), ...global);
  for (const [db, r] of Object.entries(spec.perDatabase)) {
    lines.push('', `[databases.${key(db)}]`, ...rulesToml(r, `databases.${key(db)}.`));
  }
  return lines.join('\n').replace(/\n{3,}/g, '\n\n').trim() + '\n';
}
