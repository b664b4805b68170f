/**
 * The configuration file (`--config FILE.toml`): TOML read with smol-toml,
 * checked with zod, then turned into the same ScopeSpec that flags build and
 * validated by the same rules (parseTablePattern, parseWindow, checkRules).
 *
 * The per-database layout is the one users of other logical-replication
 * tools already write (`[databases.NAME]`, `schema_only = [...]`,
 * `[[databases.NAME.table_filters]]`, `[[databases.NAME.time_filters]]`), so
 * their files load unchanged. Every error names the file, the key path and
 * what is wrong; all problems of a file are reported at once.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parse, TomlDate, TomlError } from 'smol-toml';
import { z } from 'zod';
import { UsageError } from '../errors.js';
import { parseConnInfo } from '../postgres/conninfo.js';
import { didYouMean } from './did-you-mean.js';
import { MAX_JOBS } from './jobs.js';
import { parseTablePattern } from './names.js';
import { parseMaxLag, type MaxLag } from './precedence.js';
import { parseDataRule, parseRuleKey, ruleLocation } from './data-rules.js';
import {
  checkRules, emptyRules, emptyScope, parseWindow, rulesFor, type ScopeSpec, type TableFilterSpec, type TableRules,
  type TimeFilterSpec,
} from './scope.js';

const names = z.array(z.string());

const tableFilterSchema = z.strictObject({
  table: z.string(),
  schema: z.string().optional(),
  where: z.string(),
});

const timeFilterSchema = z.strictObject({
  table: z.string(),
  schema: z.string().optional(),
  column: z.string(),
  last: z.string(),
});

/** Keys that describe tables: the same at the top (every database) and in [databases.NAME]. */
const ruleShape = {
  include_tables: names.optional(),
  exclude_tables: names.optional(),
  schema_only: names.optional(),
  table_filters: z.array(tableFilterSchema).optional(),
  time_filters: z.array(timeFilterSchema).optional(),
  /** Masking: column key → rule (src/pipeline/shared/masking.ts parses the values). */
  data_rules: z.record(z.string(), z.unknown()).optional(),
  /** sync --method timestamp: table → the column that says when a row last changed. */
  timestamp_columns: z.record(z.string(), z.string()).optional(),
};

const databaseSchema = z.strictObject(ruleShape);

const fileSchema = z.strictObject({
  source: z.string().optional(),
  source_file: z.string().optional(),
  target: z.string().optional(),
  target_file: z.string().optional(),
  pg_bin_dir: z.string().optional(),
  state_dir: z.string().optional(),
  jobs: z.number().int().min(1).max(MAX_JOBS).optional(),
  max_lag: z.union([z.string(), z.array(z.string())]).optional(),
  applier: z.enum(['native', 'client']).optional(),
  include_databases: names.optional(),
  exclude_databases: names.optional(),
  all_databases: z.boolean().optional(),
  ...ruleShape,
  databases: z.record(z.string(), databaseSchema).optional(),
});

type RawFile = z.infer<typeof fileSchema>;
type RawRules = z.infer<typeof databaseSchema>;

/** Global settings a file may carry; paths are absolute (relative ones are taken from the file's folder). */
export interface ConfigSettings {
  source?: string;
  sourceFile?: string;
  target?: string;
  targetFile?: string;
  pgBinDir?: string;
  stateDir?: string;
  jobs?: number;
  maxLag?: MaxLag;
  /** max_lag as written, for options that take the text (--max-lag). */
  maxLagText?: string[];
  /** Who applies the stream in sync (--applier). */
  applier?: 'native' | 'client';
}

export interface PgferryConfig {
  /** Absolute path of the file. */
  path: string;
  /** The path as the user gave it, for messages. */
  displayPath: string;
  scope: ScopeSpec;
  /** The file says something about databases or tables (not only settings). */
  hasScope: boolean;
  settings: ConfigSettings;
  /** Things worth saying that are not errors (an inline password …). */
  warnings: string[];
  /** [timestamp_columns] per database ('*': the top level): table → column, for sync --method timestamp. */
  timestampColumns: Record<string, Record<string, string>>;
}

/** Every key the file format knows, for documentation tests and messages. */
export const CONFIG_KEYS = {
  top: Object.keys(fileSchema.shape),
  database: Object.keys(databaseSchema.shape),
  tableFilter: Object.keys(tableFilterSchema.shape),
  timeFilter: Object.keys(timeFilterSchema.shape),
} as const;

interface Problem {
  message: string;
  hint?: string;
}

/** databases.shop.time_filters[0].last; database names that are not bare keys are quoted. */
export function keyPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else {
      const k = String(s);
      const shown = /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
      out += out ? `.${shown}` : shown;
    }
  }
  return out || '(top level)';
}

// Walk the schema along a key path to find which keys are allowed there.
function schemaAt(segments: readonly PropertyKey[]): z.ZodType | undefined {
  let cur: z.ZodType | undefined = fileSchema;
  for (const seg of segments) {
    cur = unwrap(cur);
    if (cur instanceof z.ZodObject) cur = (cur.shape as Record<string, z.ZodType>)[String(seg)];
    else if (cur instanceof z.ZodRecord) cur = cur.valueType as z.ZodType;
    else if (cur instanceof z.ZodArray) cur = cur.element as z.ZodType;
    else return undefined;
  }
  return unwrap(cur);
}

function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  return s instanceof z.ZodOptional ? (s.unwrap() as z.ZodType) : s;
}

function knownKeysAt(segments: readonly PropertyKey[]): string[] {
  const s = schemaAt(segments);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `a string (${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)})`;
  if (typeof v === 'number' || typeof v === 'bigint') return `a number (${String(v)})`;
  if (typeof v === 'boolean') return `${v}`;
  if (v instanceof TomlDate) return 'a date';
  if (Array.isArray(v)) return 'a list';
  return 'a table';
}

function describeExpected(segments: readonly PropertyKey[]): string {
  const s = schemaAt(segments);
  if (s instanceof z.ZodString) return 'a string';
  if (s instanceof z.ZodBoolean) return 'true or false';
  if (s instanceof z.ZodNumber) return 'a whole number';
  if (s instanceof z.ZodUnion) return 'a string or a list of strings';
  if (s instanceof z.ZodRecord || s instanceof z.ZodObject) return 'a table';
  if (s instanceof z.ZodArray) {
    return unwrap(s.element as z.ZodType) instanceof z.ZodObject
      ? `a list of tables, written as [[${keyPath(segments)}]] sections`
      : 'a list of strings, e.g. ["a", "b"]';
  }
  return 'another kind of value';
}

function valueAt(doc: unknown, segments: readonly PropertyKey[]): unknown {
  let cur = doc;
  for (const s of segments) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[s as string];
  }
  return cur;
}

function schemaProblems(doc: unknown, issues: z.core.$ZodIssue[]): Problem[] {
  const out: Problem[] = [];
  for (const issue of issues) {
    const at = issue.path;
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const key of issue.keys) {
          const here = knownKeysAt(at);
          const guess = didYouMean(key, here);
          let hint: string | undefined;
          if (guess) hint = `did you mean "${guess}"?`;
          else if (at[0] === 'databases' && at.length === 2 && CONFIG_KEYS.top.includes(key)) {
            // TOML puts every key after a [section] header into that section.
            hint = `"${key}" is a top-level key: move it above the first [section] of the file`;
          } else hint = `known keys here: ${here.join(', ')}`;
          out.push({ message: `${keyPath([...at, key])}: unknown key${guess ? ` (did you mean "${guess}"?)` : ''}`, hint });
        }
        break;
      case 'invalid_type': {
        const got = valueAt(doc, at);
        out.push({
          message:
            got === undefined
              ? `${keyPath(at)}: missing (required: ${describeExpected(at)})`
              : `${keyPath(at)}: expected ${describeExpected(at)}, got ${describeValue(got)}`,
        });
        break;
      }
      case 'invalid_union':
        out.push({ message: `${keyPath(at)}: expected ${describeExpected(at)}, got ${describeValue(valueAt(doc, at))}` });
        break;
      case 'too_small':
        out.push({ message: `${keyPath(at)}: must be at least ${String(issue.minimum)}` });
        break;
      case 'too_big':
        out.push({ message: `${keyPath(at)}: must be at most ${String(issue.maximum)}` });
        break;
      default:
        out.push({ message: `${keyPath(at)}: ${issue.message}` });
    }
  }
  return out;
}

/** Collects problems instead of stopping at the first: a file is fixed in one go. */
class Problems {
  readonly list: Problem[] = [];
  try<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      this.list.push({ message: err.message, hint: err.hint });
      return undefined;
    }
  }
  add(message: string, hint?: string): void {
    this.list.push({ message, hint });
  }
}

/** `"Col"` keeps its case, `Col` folds to `col`: the same rule as table names and --time-filter. */
function columnName(text: string): string {
  const t = text.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) return t.slice(1, -1).replace(/""/g, '"');
  return t.toLowerCase();
}

function filterTable(raw: { table: string; schema?: string }, at: string, problems: Problems): { schema: string; table: string } | undefined {
  const text = raw.schema !== undefined ? `${raw.schema}.${raw.table}` : raw.table;
  const p = problems.try(() => parseTablePattern(text, `${at}.table`));
  if (!p) return undefined;
  if (!p.exact) {
    problems.add(`${at}.table: "${text}" has a wildcard; a filter names exactly one table`);
    return undefined;
  }
  return { schema: p.schemaName, table: p.tableName };
}

function convertRules(raw: RawRules, prefix: readonly PropertyKey[], problems: Problems): TableRules {
  const rules = emptyRules();
  const database = prefix[0] === 'databases' ? String(prefix[1]) : undefined;
  for (const [key, value] of Object.entries(raw.data_rules ?? {})) {
    const at = ruleLocation({ key, database });
    const rule = problems.try(() => {
      parseRuleKey(key, at);
      return parseDataRule(value, at);
    });
    if (rule) (rules.dataRules ??= []).push({ key, rule, ...(database !== undefined ? { database } : {}) });
  }
  const lists: [keyof RawRules & ('include_tables' | 'exclude_tables' | 'schema_only'), 'include' | 'exclude' | 'schemaOnly'][] = [
    ['include_tables', 'include'],
    ['exclude_tables', 'exclude'],
    ['schema_only', 'schemaOnly'],
  ];
  for (const [key, field] of lists) {
    const values = raw[key] ?? [];
    values.forEach((v, i) => {
      if (problems.try(() => parseTablePattern(v, keyPath([...prefix, key, i])))) rules[field].push(v.trim());
    });
  }
  (raw.table_filters ?? []).forEach((f, i) => {
    const at = keyPath([...prefix, 'table_filters', i]);
    const t = filterTable(f, at, problems);
    const where = f.where.trim();
    if (!where) problems.add(`${at}.where: empty predicate`, 'write a SQL boolean expression over the table\'s columns, e.g. where = "status <> \'archived\'"');
    if (t && where) rules.tableFilters.push({ schema: t.schema, table: t.table, where } satisfies TableFilterSpec);
  });
  (raw.time_filters ?? []).forEach((f, i) => {
    const at = keyPath([...prefix, 'time_filters', i]);
    const t = filterTable(f, at, problems);
    const column = columnName(f.column);
    if (!column) problems.add(`${at}.column: empty column name`);
    const window = problems.try(() => parseWindow(f.last, `${at}.last`));
    if (t && column && window) rules.timeFilters.push({ schema: t.schema, table: t.table, column, window } satisfies TimeFilterSpec);
  });
  return rules;
}

function isEmptyRules(r: TableRules): boolean {
  return !r.include.length && !r.exclude.length && !r.schemaOnly.length && !r.tableFilters.length && !r.timeFilters.length && !r.dataRules?.length;
}

function connectionSetting(
  raw: RawFile,
  side: 'source' | 'target',
  dir: string,
  problems: Problems,
  warnings: string[],
  fileMode: number | undefined,
): Partial<ConfigSettings> {
  const inline = raw[side];
  const file = raw[`${side}_file`];
  if (inline !== undefined && file !== undefined) {
    problems.add(`${side} and ${side}_file: give one of them, not both`);
    return {};
  }
  if (file !== undefined) return { [`${side}File`]: path.resolve(dir, file) };
  if (inline === undefined) return {};
  const ci = problems.try(() => parseConnInfo(inline, side));
  if (ci?.password !== undefined) {
    let w = `${side} holds a password inline; keep it out of the file: ${side}_file = "…" (a file only you can read), ~/.pgpass or PGPASSWORD`;
    if (fileMode !== undefined && (fileMode & 0o077) !== 0) w += ' — this file is readable by other users, chmod 600 it';
    warnings.push(w);
  }
  return { [side]: inline };
}

/** Parse and check the text of a configuration file. `file` is used in messages and to resolve relative paths. */
export function parseConfigText(text: string, file: string, fileMode?: number): PgferryConfig {
  const absolute = path.resolve(file);
  const dir = path.dirname(absolute);
  const fail = (problems: Problem[]): never => {
    const hints = [...new Set(problems.map((p) => p.hint).filter((h): h is string => !!h))];
    const body = problems.length === 1 ? ` ${problems[0]!.message}` : `\n${problems.map((p) => `  - ${p.message}`).join('\n')}`;
    throw new UsageError(`configuration file ${file}:${body}`, { hint: hints.length ? hints.join('\n') : undefined });
  };

  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      const first = err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
      throw new UsageError(`configuration file ${file}:${err.line}:${err.column}: not valid TOML: ${first}\n${err.codeblock}`, {
        hint: 'see replication-config.example.toml for the format',
      });
    }
    throw err;
  }
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) fail(schemaProblems(doc, parsed.error.issues));
  const raw = parsed.data!;

  const problems = new Problems();
  const warnings: string[] = [];
  const settings: ConfigSettings = {
    ...connectionSetting(raw, 'source', dir, problems, warnings, fileMode),
    ...connectionSetting(raw, 'target', dir, problems, warnings, fileMode),
  };
  if (raw.pg_bin_dir !== undefined) settings.pgBinDir = path.resolve(dir, raw.pg_bin_dir);
  if (raw.state_dir !== undefined) settings.stateDir = path.resolve(dir, raw.state_dir);
  if (raw.jobs !== undefined) settings.jobs = raw.jobs;
  if (raw.applier !== undefined) settings.applier = raw.applier;
  if (raw.max_lag !== undefined) {
    settings.maxLag = problems.try(() => parseMaxLag(raw.max_lag!, 'max_lag'));
    settings.maxLagText = typeof raw.max_lag === 'string' ? [raw.max_lag] : raw.max_lag;
  }

  const scope = emptyScope();
  if (raw.all_databases && raw.include_databases?.length) {
    problems.add('all_databases and include_databases: use one of them (all_databases goes with exclude_databases)');
  }
  scope.databases = {
    all: raw.all_databases ?? false,
    include: (raw.include_databases ?? []).map((d) => d.trim()).filter(Boolean),
    exclude: (raw.exclude_databases ?? []).map((d) => d.trim()).filter(Boolean),
  };
  scope.rules = convertRules(raw, [], problems);
  for (const [db, section] of Object.entries(raw.databases ?? {})) {
    const rules = convertRules(section, ['databases', db], problems);
    if (!isEmptyRules(rules)) scope.perDatabase[db] = rules;
  }
  if (problems.list.length) fail(problems.list);

  // Contradictions (schema-only and filtered, two filters on one table) only
  // once every entry parsed, for the rules each database really gets.
  problems.try(() => checkRules(scope.rules, '(top level)'));
  for (const db of Object.keys(scope.perDatabase)) {
    problems.try(() => checkRules(rulesFor(scope, db), keyPath(['databases', db])));
  }
  if (problems.list.length) fail(problems.list);

  const hasScope =
    scope.databases.all || scope.databases.include.length > 0 || scope.databases.exclude.length > 0 ||
    !isEmptyRules(scope.rules) || Object.keys(scope.perDatabase).length > 0;
  const timestampColumns: Record<string, Record<string, string>> = {};
  if (raw.timestamp_columns) timestampColumns['*'] = raw.timestamp_columns;
  for (const [db, section] of Object.entries(raw.databases ?? {})) if (section.timestamp_columns) timestampColumns[db] = section.timestamp_columns;
  return { path: absolute, displayPath: file, scope, hasScope, settings, warnings, timestampColumns };
}

const cache = new Map<string, PgferryConfig>();

/** Read, parse and check a configuration file (once per process and path). Exit 2 on any problem. */
export function loadConfigFile(file: string): PgferryConfig {
  const absolute = path.resolve(file);
  const cached = cache.get(absolute);
  if (cached) return cached;
  let text: string;
  let mode: number | undefined;
  try {
    text = readFileSync(absolute, 'utf8');
    mode = statSync(absolute).mode;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`--config: cannot read "${file}": ${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)}`, {
      hint: 'start from replication-config.example.toml, or let the interactive mode of validate/init save one for you',
    });
  }
  const config = parseConfigText(text, file, mode);
  cache.set(absolute, config);
  return config;
}
