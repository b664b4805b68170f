/**
 * The plan of an init run: what `--dry-run` prints and what the confirmation
 * before copying shows. Made on the source without a snapshot and without
 * writing anything.
 */
import type { TableCopyPlan } from './copy-plan.js';

/** Rate of one COPY stream assumed when none was measured (too little data to sample, or the sample failed). */
export const ESTIMATE_BYTES_PER_SECOND_PER_JOB = 40 * 1024 * 1024;

/** Where the estimate's rate comes from. */
export interface EstimateBasis {
  /** 'sampled': a read of `table` on the source (a floor: the target's writes come on top); 'nominal': an assumed rate. */
  kind: 'sampled' | 'nominal';
  bytesPerSecondPerJob: number;
  table?: string;
}

export interface PlannedTable {
  schema: string;
  name: string;
  schemaOnly: boolean;
  filter: string | null;
  format: 'binary' | 'text' | null;
  parts: number;
  estimatedBytes: number;
  estimatedRows: number;
  /** Copied before (a resume keeps it). */
  done: boolean;
}

export interface PlannedDatabase {
  source: string;
  target: string;
  /** 'missing' (created), 'empty' (used), 'not empty' (refused without --drop-existing; replaced with it), 'prepared' (resume). */
  targetStatus: 'missing' | 'empty' | 'not empty' | 'prepared';
  targetContents: string | null;
  slot: string | null;
  /** Copy order: largest first. */
  tables: PlannedTable[];
  excluded: string[];
  estimatedBytes: number;
  /** Foreign keys the scope breaks (init refuses unless --fk-not-valid helps). */
  foreignKeyProblems: { constraint: string; table: string; references: string; message: string; blocking: boolean }[];
  /** What publishing the scope for sync would break on the source (refused; --no-sync avoids it). */
  replicationProblems: string[];
  resume: { phase: string; tablesDone: number } | null;
}

export interface InitPlan {
  jobs: number;
  databases: PlannedDatabase[];
  estimatedBytes: number;
  /** Bytes over jobs × the rate of `estimateBasis`, never less than the largest part alone. */
  estimatedSeconds: number;
  estimateBasis: EstimateBasis;
}

export function plannedTables(plans: TableCopyPlan[], schemaOnly: { schema: string; name: string; estimatedRows: number }[], done: Set<string>): PlannedTable[] {
  const rows: PlannedTable[] = plans.map((p) => ({
    schema: p.table.schema,
    name: p.table.name,
    schemaOnly: false,
    filter: p.filter ?? null,
    format: p.format,
    parts: p.parts.length,
    estimatedBytes: p.estimatedBytes,
    estimatedRows: Math.max(0, Math.round(p.table.estimatedRows)),
    done: done.has(p.key),
  }));
  rows.sort((a, b) => b.estimatedBytes - a.estimatedBytes);
  for (const t of schemaOnly) {
    rows.push({ schema: t.schema, name: t.name, schemaOnly: true, filter: null, format: null, parts: 0, estimatedBytes: 0, estimatedRows: 0, done: false });
  }
  return rows;
}

export function estimateSeconds(tables: PlannedTable[], jobs: number, bytesPerSecondPerJob = ESTIMATE_BYTES_PER_SECOND_PER_JOB): number {
  const todo = tables.filter((t) => !t.done && !t.schemaOnly);
  const total = todo.reduce((n, t) => n + t.estimatedBytes, 0);
  const largest = todo.reduce((n, t) => Math.max(n, t.estimatedBytes / Math.max(1, t.parts)), 0);
  const rate = bytesPerSecondPerJob > 0 ? bytesPerSecondPerJob : ESTIMATE_BYTES_PER_SECOND_PER_JOB;
  return Math.ceil(Math.max(total / (Math.max(1, jobs) * rate), largest / rate));
}
