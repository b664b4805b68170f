/**
 * What validate produces: one CheckResult per finding, grouped by side, plus
 * the identities of both servers and what it learned about each database.
 */
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import type { ProgressSink } from '../../cli/render/progress.js';

export const CHECK_SIDES = ['source', 'target', 'tools', 'pair'] as const;
export type CheckSide = (typeof CHECK_SIDES)[number];

export const CHECK_STATUSES = ['ok', 'warn', 'fail'] as const;
export type CheckStatus = (typeof CHECK_STATUSES)[number];

export interface CheckResult {
  /** Stable identifier, e.g. "source.wal_level", "tables.replica_identity". */
  id: string;
  side: CheckSide;
  /** Source database the check is about (database and table checks only). */
  database?: string;
  status: CheckStatus;
  message: string;
  /** What to do about a warning or failure: the exact setting or statement. */
  fix?: string;
  /** Individual items (tables, sessions, extensions) behind the message. */
  details?: string[];
}

export function ok(id: string, side: CheckSide, message: string, extra: Partial<CheckResult> = {}): CheckResult {
  return { id, side, status: 'ok', message, ...extra };
}

export function warn(id: string, side: CheckSide, message: string, fix: string, extra: Partial<CheckResult> = {}): CheckResult {
  return { id, side, status: 'warn', message, fix, ...extra };
}

export function fail(id: string, side: CheckSide, message: string, fix: string, extra: Partial<CheckResult> = {}): CheckResult {
  return { id, side, status: 'fail', message, fix, ...extra };
}

/** "1 table", "3 tables". */
export function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

/** Attach a database to checks produced without one. */
export function inDatabase(database: string, checks: CheckResult[]): CheckResult[] {
  return checks.map((c) => ({ ...c, database }));
}

export interface ValidateOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope: ScopeSpec;
  /** Folder with pg_dump, pg_restore, pg_dumpall and psql (--pg-bin-dir). */
  pgBinDir?: string;
  /** Transactions open longer than this (seconds) are reported; default 60. */
  maxTransactionAgeSeconds?: number;
  progress?: ProgressSink;
  signal?: AbortSignal;
}

export interface DatabaseReport {
  /** Source database. */
  name: string;
  /** The database it is copied into on the target. */
  target: string;
  /** null when the target server could not be reached. */
  targetExists: boolean | null;
  sizeBytes: number | null;
  encoding: string | null;
  collate: string | null;
  ctype: string | null;
  /** 'libc', 'icu' or 'builtin'. */
  localeProvider: string | null;
  /** ICU / builtin locale, when that provider is used. */
  locale: string | null;
  /** Tables in scope (including schema-only ones). */
  tables: number;
  schemaOnlyTables: number;
  excludedTables: number;
}

export interface ValidateSummary {
  ok: number;
  warn: number;
  fail: number;
}

export interface ValidateReport {
  ok: boolean;
  /** 0 nothing failed, 1 a check failed, 2 same database, 3 a side cannot be reached. */
  exitCode: number;
  source: ServerIdentity | null;
  target: ServerIdentity | null;
  databases: DatabaseReport[];
  checks: CheckResult[];
  summary: ValidateSummary;
}
