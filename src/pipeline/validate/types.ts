/**
 * What validate produces: one CheckResult per finding, grouped by side, plus
 * the identities of both servers and what it learned about each database.
 */
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import type { CheckResult } from '../shared/check-result.js';
import type { ProgressSink } from '../shared/progress.js';

export { CHECK_SIDES, CHECK_STATUSES, fail, inDatabase, ok, warn, type CheckResult, type CheckSide, type CheckStatus } from '../shared/check-result.js';

export interface ValidateOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope: ScopeSpec;
  /** Folder with pg_dump, pg_restore, pg_dumpall and psql (--pg-bin-dir). */
  pgBinDir?: string;
  /** Transactions open longer than this (seconds) are reported; default 60. */
  maxTransactionAgeSeconds?: number;
  /** timestamp: check what sync --method timestamp needs instead of logical replication. */
  method?: 'logical' | 'timestamp';
  /** --timestamp-column (default updated_at). */
  timestampColumn?: string;
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
