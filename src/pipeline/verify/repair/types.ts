/**
 * What `verify --repair` takes and what it adds to verify's report (the
 * `repair` section of the JSON document, docs/json/verify.md).
 */
import type { VerifyReport, VerifySummary } from '../types.js';

export interface RepairOptions {
  /** List what would change; write nothing. */
  dryRun: boolean;
  /** Refuse (nothing written) when more rows than this differ; null: no limit. */
  maxRepairRows: number | null;
  /** Rows written per target transaction. */
  batchRows?: number;
  /**
   * Asked once the changes are known and before anything is written (the CLI
   * shows the plan and asks, or answers with --yes). False: nothing is written.
   */
  confirm?: (plan: RepairReport) => Promise<boolean>;
}

export type RepairChangeKind = 'insert' | 'update' | 'delete';

export interface RepairChange {
  kind: RepairChangeKind;
  /** Key column → value as PostgreSQL prints it; null for a table without a key. */
  key: Record<string, string> | null;
  /** Copies of an identical row (tables without a key); 1 for keyed rows. */
  count: number;
}

export interface RepairCounts {
  insert: number;
  update: number;
  delete: number;
}

export interface RepairTableReport {
  /** Source database. */
  database: string;
  schema: string;
  name: string;
  display: string;
  /** keyed: rows matched by key; multiset: a table without a key, rows matched as a whole (duplicates counted). */
  method: 'keyed' | 'multiset';
  /** Rows found to differ after the recheck, by the change that fixes them. */
  planned: RepairCounts;
  /** Rows written (committed). */
  inserted: number;
  updated: number;
  deleted: number;
  /**
   * Planned rows not written: the row changed on the target or the source
   * while repair ran (the guard or the final check refused the write) and
   * still differed after the last round.
   */
  skipped: number;
  /** Up to --max-diffs of the planned changes. */
  changes: RepairChange[];
  changesTruncated: boolean;
  notes: string[];
  /** Why the table could not be repaired, or null. */
  error: string | null;
}

export interface RepairDatabaseReport {
  source: string;
  target: string;
  /** A subscription applied changes meanwhile: writes were checked against it (docs/architecture.md). */
  replicationActive: boolean;
  /** 'replica': triggers and foreign keys behaved as under replication; 'origin': the target user may not set it. */
  sessionReplicationRole: 'replica' | 'origin' | null;
  transactions: number;
}

export type RepairStatus = 'repaired' | 'nothing-to-repair' | 'dry-run' | 'refused' | 'declined' | 'planned';

export interface RepairReport {
  status: RepairStatus;
  dryRun: boolean;
  maxRepairRows: number | null;
  /** Rows planned over all tables (a lower bound when refused: planning stops past the limit). */
  rowsPlanned: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsDeleted: number;
  rowsSkipped: number;
  /** Why nothing was written (refused, declined), or null. */
  message: string | null;
  /** The summary of the verify pass that located the differences. */
  before: VerifySummary;
  databases: RepairDatabaseReport[];
  tables: RepairTableReport[];
}

export interface RepairResult {
  /** The verify pass after the repair (or the first pass when nothing was written). */
  report: VerifyReport;
  repair: RepairReport;
}
