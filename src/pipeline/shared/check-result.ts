/**
 * A finding of a preflight check: what validate reports, and what the checks
 * that init and sync share with it (row filters, replica identity) produce.
 */
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

/** Attach a database to checks produced without one. */
export function inDatabase(database: string, checks: CheckResult[]): CheckResult[] {
  return checks.map((c) => ({ ...c, database }));
}
