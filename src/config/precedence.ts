/**
 * Where a setting comes from: defaults < configuration file < environment
 * (PGFERRY_*) < command-line flags. Scope has no environment layer: the file
 * is the base and flags override it (see applyScopeFlags).
 */
import { UsageError } from '../errors.js';
import { parseJobs } from './jobs.js';
import { splitList } from './names.js';
import { checkRules, rulesFor, scopeFromFlags, type ScopeFlags, type ScopeSpec, type TableRules } from './scope.js';

export type SettingSource = 'flag' | 'environment' | 'file' | 'default';

/** The environment variable of each layered setting. */
export const SETTING_ENV = {
  source: 'PGFERRY_SOURCE',
  target: 'PGFERRY_TARGET',
  stateDir: 'PGFERRY_STATE_DIR',
  pgBinDir: 'PGFERRY_PG_BIN_DIR',
  jobs: 'PGFERRY_JOBS',
  maxLag: 'PGFERRY_MAX_LAG',
  applier: 'PGFERRY_APPLIER',
} as const;

/** Who applies the stream in sync: the target's native subscription, or pgferry itself (docs/architecture.md, "Client applier"). */
export const APPLIERS = ['native', 'client'] as const;
export type Applier = (typeof APPLIERS)[number];

export function parseApplier(text: string, what: string): Applier {
  const v = text.trim().toLowerCase();
  if ((APPLIERS as readonly string[]).includes(v)) return v as Applier;
  throw new UsageError(`${what}: "${text}" is not an applier`, { hint: `use one of ${APPLIERS.join(', ')}` });
}

/** Pick the first layer that has a value. Empty environment strings count as unset. */
export function pickSetting<T>(layers: { flag?: T; env?: T; file?: T; default: T }): { value: T; from: SettingSource } {
  if (layers.flag !== undefined) return { value: layers.flag, from: 'flag' };
  if (layers.env !== undefined) return { value: layers.env, from: 'environment' };
  if (layers.file !== undefined) return { value: layers.file, from: 'file' };
  return { value: layers.default, from: 'default' };
}

/** Replication lag limits: bytes of WAL and/or seconds. */
export interface MaxLag {
  bytes?: number;
  seconds?: number;
}

const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** A size such as "512MB", "2 GiB" or "100" (bytes); binary units either way. */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`${what}: "${text}" is not a size`, { hint: 'write a number with a unit, e.g. 512MB or 2GB' });
  return Math.round(Number(m[1]) * BYTE_UNITS[(m[2] ?? 'b').toLowerCase().replace('i', '')]!);
}
const TIME_UNITS: Record<string, number> = { ms: 0.001, s: 1, sec: 1, min: 60, m: 60, h: 3600 };

/** "16MB", "30s", or a list of both ("16MB", "30s" / ["16MB", "30s"]). */
export function parseMaxLag(value: string | readonly string[], what = '--max-lag'): MaxLag {
  const out: MaxLag = {};
  const items = typeof value === 'string' ? splitList(value) : value.flatMap((v) => splitList(v));
  if (!items.length) throw new UsageError(`${what}: empty`, { hint: 'write a size such as "16MB" and/or a time such as "30s"' });
  for (const item of items) {
    const m = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(item.trim());
    const unit = m?.[2]!.toLowerCase();
    if (m && unit && unit in BYTE_UNITS) out.bytes = parseSize(item, what);
    else if (m && unit && unit in TIME_UNITS) out.seconds = Number(m[1]) * TIME_UNITS[unit]!;
    else {
      throw new UsageError(`${what}: "${item}" is neither a size nor a time`, {
        hint: 'write a size such as "16MB" (B, kB, MB, GB, TB) and/or a time such as "30s" (ms, s, min, h)',
      });
    }
  }
  return out;
}

/** Settings a configuration file gives to options that commands define themselves (--jobs, --max-lag). */
export interface FileOptionSettings {
  jobs?: number;
  /** max_lag as written, e.g. ["16MB", "30s"]. */
  maxLagText?: string[];
  applier?: Applier;
}

/**
 * Fill options that were not given on the command line from PGFERRY_* and
 * then from the file, in place: `defaulted` names the options that hold
 * yargs' default. Values from the environment are checked here (exit 2).
 */
export function applyOptionLayers(
  argv: { jobs?: unknown; maxLag?: unknown; applier?: unknown },
  env: NodeJS.ProcessEnv,
  file: FileOptionSettings | undefined,
  defaulted: ReadonlySet<string>,
): void {
  if (argv.jobs === undefined || defaulted.has('jobs')) {
    const raw = env[SETTING_ENV.jobs];
    const value = raw !== undefined && raw.trim() !== '' ? parseJobs(raw, SETTING_ENV.jobs) : file?.jobs;
    if (value !== undefined) argv.jobs = value;
  } else {
    argv.jobs = parseJobs(Array.isArray(argv.jobs) ? argv.jobs.at(-1) : argv.jobs, '--jobs');
  }
  if (argv.maxLag === undefined || defaulted.has('maxLag') || defaulted.has('max-lag')) {
    const fromEnv = env[SETTING_ENV.maxLag]?.trim();
    if (fromEnv) {
      parseMaxLag(fromEnv, SETTING_ENV.maxLag);
      argv.maxLag = [fromEnv];
    } else if (file?.maxLagText) argv.maxLag = file.maxLagText;
  }
  if (argv.applier === undefined || defaulted.has('applier')) {
    const fromEnv = env[SETTING_ENV.applier]?.trim();
    if (fromEnv) argv.applier = parseApplier(fromEnv, SETTING_ENV.applier);
    else if (file?.applier) argv.applier = file.applier;
  }
}

function asList(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** True when any scope flag was given on the command line. */
export function hasScopeFlags(flags: ScopeFlags): boolean {
  return (
    !!flags.allDatabases ||
    [flags.includeDatabases, flags.excludeDatabases, flags.includeTables, flags.excludeTables, flags.schemaOnlyTables, flags.tableFilter, flags.timeFilter]
      .some((v) => asList(v).some((s) => String(s).trim() !== ''))
  );
}

function allRuleSets(spec: ScopeSpec): TableRules[] {
  return [spec.rules, ...Object.values(spec.perDatabase)];
}

/**
 * Flags over a file's scope. A list flag (--include-tables, --exclude-tables,
 * --schema-only-tables, --include-databases, --exclude-databases) replaces the
 * file's list of the same kind, also inside [databases.NAME]; a filter flag
 * replaces the file's filter of that table only. The result is checked again
 * for contradictions, per database.
 */
export function applyScopeFlags(base: ScopeSpec, flags: ScopeFlags, fileLabel: string): ScopeSpec {
  const fromFlags = scopeFromFlags(flags); // validates the flags on their own
  const spec: ScopeSpec = structuredClone(base);
  if (fromFlags.databases.all) {
    spec.databases.all = true;
    spec.databases.include = [];
  }
  if (fromFlags.databases.include.length) {
    spec.databases.include = fromFlags.databases.include;
    spec.databases.all = false;
  }
  if (fromFlags.databases.exclude.length) spec.databases.exclude = fromFlags.databases.exclude;

  for (const field of ['include', 'exclude', 'schemaOnly'] as const) {
    if (!fromFlags.rules[field].length) continue;
    for (const r of allRuleSets(spec)) r[field] = [];
    spec.rules[field] = fromFlags.rules[field];
  }
  const flagged = new Set([...fromFlags.rules.tableFilters, ...fromFlags.rules.timeFilters].map((f) => `${f.schema}\u0000${f.table}`));
  if (flagged.size) {
    for (const r of allRuleSets(spec)) {
      r.tableFilters = r.tableFilters.filter((f) => !flagged.has(`${f.schema}\u0000${f.table}`));
      r.timeFilters = r.timeFilters.filter((f) => !flagged.has(`${f.schema}\u0000${f.table}`));
    }
    spec.rules.tableFilters.push(...fromFlags.rules.tableFilters);
    spec.rules.timeFilters.push(...fromFlags.rules.timeFilters);
  }
  for (const [db, r] of Object.entries(spec.perDatabase)) {
    if (!r.include.length && !r.exclude.length && !r.schemaOnly.length && !r.tableFilters.length && !r.timeFilters.length && !r.dataRules?.length) {
      delete spec.perDatabase[db];
    }
  }
  const where = `command line and ${fileLabel}`;
  checkRules(spec.rules, where);
  for (const db of Object.keys(spec.perDatabase)) checkRules(rulesFor(spec, db), `${where} [databases.${db}]`);
  return spec;
}
