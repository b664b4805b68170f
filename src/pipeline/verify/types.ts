/**
 * What `verify` takes and what it returns. The report is also the `--json`
 * document (docs/json/verify.md describes it field by field).
 */
import type { ProgressSink } from '../shared/progress.js';
import type { ScopeSpec } from '../../config/scope.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import type { KeyRange, VerifyTable } from './sql.js';

export interface VerifyOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope: ScopeSpec;
  /** Patterns that narrow the scope further (`--tables`); empty means every table in scope. */
  tables?: string[];
  /**
   * Row predicates per source database, keyed "schema.table": the filters that
   * `init` actually used (time filters with their fixed cutoff). A table with a
   * time filter must have an entry here.
   */
  filters?: Record<string, Record<string, string>>;
  /** Time-filter cutoffs per source database, keyed "schema.table" (timestamptz text fixed by init). */
  cutoffs?: Record<string, Record<string, string>>;
  /** Target database per source database, when known from the state (otherwise derived from the connections). */
  targetDatabases?: Record<string, string>;
  /** The servers the stored filters belong to: verify refuses (exit 2) to apply them to another pair. */
  stateIdentity?: { sourceSystemIdentifier: string; targetSystemIdentifier: string; stateFile: string };
  /** Chunk queries in flight per side. */
  jobs: number;
  /** Rows per chunk of the first pass. */
  chunkRows: number;
  /** At most this many differing keys are listed per table. */
  maxDiffs: number;
  /** While replication is active: how often a differing row or chunk is compared again before it is reported. */
  recheck: number;
  /** How long to wait for the target to replay past a source LSN. */
  lagTimeoutMs: number;
  /** Compare sequence values too. */
  sequences: boolean;
  /**
   * The source takes no writes (cutover's fence): each table is hashed whole
   * first, even while a subscription is active, and split only where it
   * differs (see planChunks' wholeFirst).
   */
  sourceQuiet?: boolean;
  /**
   * false: plan every keyed table in chunks up front, never one whole-table hash first (for tests of the chunk
   * planner and for measuring it). Default true.
   */
  wholeFirst?: boolean;
  signal?: AbortSignal;
  progress?: ProgressSink;
  /** Told of every key range (or keyless table) whose difference verify confirmed; `verify --repair` collects them. */
  onDifference?: (d: DifferingRange) => void;
}

/** A confirmed difference as a range of rows, with the connections of its database pair. */
export interface DifferingRange {
  sourceDatabase: string;
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  table: VerifyTable;
  range: KeyRange;
}

export type DiffKind = 'missing' | 'extra' | 'different';

export interface RowDiff {
  /** missing: on the source only; extra: on the target only; different: on both, other values. */
  kind: DiffKind;
  /** Key column → value as PostgreSQL prints it. */
  key: Record<string, string>;
}

export type SchemaObjectKind = 'table' | 'column' | 'constraint' | 'index' | 'sequence';

export interface SchemaDifference {
  kind: SchemaObjectKind;
  /** schema.table, schema.table.column, index or constraint name, sequence name. */
  object: string;
  message: string;
}

export type TableStatus = 'equal' | 'different' | 'error';
export type CompareMethod = 'chunked' | 'whole-table' | 'schema-only';

export interface TableReport {
  schema: string;
  name: string;
  /** schema.name, quoted where needed. */
  display: string;
  status: TableStatus;
  method: CompareMethod;
  /** The key the chunks follow, or null. */
  keyColumns: string[] | null;
  /** The row predicate both sides were compared under, or null. */
  filter: string | null;
  rowsSource: number;
  rowsTarget: number;
  /** First-pass chunks compared (1 for a whole-table compare, 0 for schema-only). */
  chunks: number;
  chunksDifferent: number;
  /** First-pass chunks that differed at first but were equal when compared again (replication lag, concurrent writes). */
  rechecked: number;
  diffs: RowDiff[];
  /** Located differences by kind (may exceed the listed ones when truncated). */
  diffCounts: Record<DiffKind, number>;
  /** More differences exist than are listed (--max-diffs reached). */
  diffsTruncated: boolean;
  schemaDifferences: SchemaDifference[];
  /** Why a difference could not be located, lag waits that timed out, skipped columns. */
  notes: string[];
  error: string | null;
  durationMs: number;
}

export interface SequenceReport {
  name: string;
  sourceValue: string | null;
  targetValue: string | null;
  /** ok: the target has reached the source value; behind: it has not; missing: no such sequence on the target. */
  status: 'ok' | 'behind' | 'missing';
}

export interface ReplicationInfo {
  /** An enabled subscription on the target (or a running client applier) reads a slot of this source database. */
  active: boolean;
  /**
   * Native subscriptions, and pgferry's client applier (applier 'client': name is its replication
   * origin on the target, enabled while its slot is in use).
   */
  subscriptions: { name: string; slot: string; enabled: boolean; applier?: 'native' | 'client' }[];
}

export interface DatabaseReport {
  source: string;
  target: string;
  status: TableStatus;
  replication: ReplicationInfo;
  tables: TableReport[];
  /** Tables the scope selects that exist on the target only (display names); empty with --tables. */
  tablesOnlyOnTarget: string[];
  sequences: SequenceReport[];
  durationMs: number;
}

export interface VerifySummary {
  databases: number;
  tables: number;
  tablesEqual: number;
  tablesDifferent: number;
  tablesFailed: number;
  rowsCompared: number;
  chunksCompared: number;
  rowDifferences: number;
  schemaDifferences: number;
  tablesOnlyOnTarget: number;
  sequencesBehind: number;
}

export interface VerifyReport {
  status: TableStatus;
  startedAt: string;
  durationMs: number;
  options: { jobs: number; chunkRows: number; maxDiffs: number; recheck: number; lagTimeoutMs: number; sequences: boolean };
  summary: VerifySummary;
  databases: DatabaseReport[];
}
