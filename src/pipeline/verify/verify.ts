/**
 * `verify`: for every database and table in scope, compare the target with
 * the source — schema (columns, constraints, indexes), sequences, and rows by
 * chunked checksums — and return a report. Plain async function; the CLI only
 * parses flags and renders.
 */
import { rulesFor, resolveTables, tableSelector, type ScopeTable } from '../../config/scope.js';
import { matches, parseTablePattern } from '../../config/names.js';
import { InterruptedError, PgferryError, UsageError } from '../../errors.js';
import { parseJobs } from '../../config/jobs.js';
import { silentProgress, type ProgressSink } from '../shared/progress.js';
import { isConnectFailure, operationError, rowSecurityHint } from '../../postgres/errors.js';
import { displayName } from '../../postgres/identifiers.js';
import { assertPredicatePlans, timeFilterPredicate } from '../shared/filters.js';
import { verifyPlan } from '../../config/data-rules.js';
import { probePair, scopePairs, type DatabasePair } from '../shared/pairs.js';
import { emptyTableReport, hashBatch, TableComparer } from './compare.js';
import { planChunks, type ChunkPlan, type ChunkTask, type WholeFirst } from './plan.js';
import { QUIET_WINDOW_MS, quietTables, writeCounters } from './activity.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { detectReplication, type ReplicationLink } from './replication.js';
import { isStateTable } from '../shared/timestamp-state.js';
import { compareSequences, compareTableSchemas, readSchemaDigests, tableId, targetTables, type SchemaDigests, type TableRef, type TargetColumn } from './schema.js';
import { NO_SIZES, type ListTablesOptions } from '../../postgres/catalog/tables.js';
import { closePairs, openPairs, parallelQueryFits, type SessionPair } from './sessions.js';
import { bpcharSides, hashKind, type VerifyTable } from './sql.js';
import { plural, rateAndEta } from '../../units.js';
import type { DatabaseReport, SchemaDifference, TableReport, TableStatus, VerifyOptions, VerifyReport, VerifySummary } from './types.js';

export { VERIFY_DEFAULTS } from './defaults.js';

function checkOptions(o: VerifyOptions): void {
  const whole = (v: number, name: string, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new UsageError(`${name} must be a whole number ≥ ${min} (got ${v})`);
  };
  parseJobs(o.jobs);
  whole(o.chunkRows, '--chunk-rows', 100);
  whole(o.maxDiffs, '--max-diffs', 0);
  whole(o.recheck, '--recheck', 0);
  if (!(o.lagTimeoutMs >= 0)) throw new UsageError(`--lag-timeout must be ≥ 0 (got ${o.lagTimeoutMs / 1000})`);
}

/** The predicate a table is compared under: init's stored one, a time filter's cutoff, or the flag's. */
export function tableFilter(t: ScopeTable, stored: Record<string, string> | undefined, cutoffs: Record<string, string> | undefined): string | null {
  const key = `${t.schema}.${t.name}`;
  const fromState = stored?.[key];
  if (fromState) return fromState;
  if (t.timeFilter) {
    const cutoff = cutoffs?.[key];
    if (!cutoff) {
      throw new UsageError(`${displayName(t.schema, t.name)} has a time filter, but no cutoff is stored for it: the cutoff is fixed once by pgferry init`, {
        hint: 'run verify with the --state-dir of init (run init first), or name the rows with --table-filter "schema.table:predicate"',
      });
    }
    return timeFilterPredicate(t.timeFilter.column, cutoff);
  }
  return t.filter ?? null;
}

/** Narrow the scope to `--tables` patterns; an exact name outside the scope is an error. */
function narrow(tables: ScopeTable[], patterns: readonly string[], database: string): ScopeTable[] {
  if (!patterns.length) return tables;
  const compiled = patterns.map((p) => parseTablePattern(p, '--tables'));
  const id = (schema: string, name: string) => JSON.stringify([schema, name]);
  const inScope = new Set(tables.map((t) => id(t.schema, t.name)));
  for (const p of compiled) {
    if (p.exact && !inScope.has(id(p.schemaName, p.tableName))) {
      throw new UsageError(`--tables: ${p.schemaName}.${p.tableName} is not a table in scope in database "${database}"`, {
        hint: 'names fold to lower case unless quoted: write "MixedCase" in double quotes',
      });
    }
  }
  // Exact names by lookup: --tables may name hundreds of tables (cutover's gate names every one).
  const exact = new Set(compiled.filter((p) => p.exact).map((p) => id(p.schemaName, p.tableName)));
  const wild = compiled.filter((p) => !p.exact);
  return tables.filter((t) => exact.has(id(t.schema, t.name)) || wild.some((p) => matches(p, t.schema, t.name)));
}

interface TableJob {
  table: VerifyTable;
  report: TableReport;
  comparer: TableComparer;
  plan?: ChunkPlan;
  remaining: number;
  startedAt: number;
  done: number;
}

function finishStatus(r: TableReport): TableStatus {
  if (r.error) return 'error';
  const located = r.diffCounts.missing + r.diffCounts.extra + r.diffCounts.different;
  if (r.schemaDifferences.length || r.chunksDifferent || located) return 'different';
  return 'equal';
}

function tableDetail(r: TableReport): string {
  if (r.error) return r.error;
  const schema = plural(r.schemaDifferences.length, 'schema difference');
  if (r.method === 'schema-only') return r.schemaDifferences.length ? schema : 'schema only';
  const parts = [plural(r.rowsSource, 'row'), plural(r.chunks, 'chunk')];
  const located = r.diffCounts.missing + r.diffCounts.extra + r.diffCounts.different;
  if (located) parts.push(`${plural(located, 'row')}${r.diffsTruncated ? ' or more' : ''} differ${located === 1 && !r.diffsTruncated ? 's' : ''}`);
  else if (r.chunksDifferent) parts.push(`${plural(r.chunksDifferent, 'chunk')} differ${r.chunksDifferent === 1 ? 's' : ''}`);
  if (r.schemaDifferences.length) parts.push(schema);
  return parts.join(', ');
}

/** The tables of one database that verify compares, with the predicate each is compared under. */
interface DatabaseScope {
  rules: ReturnType<typeof rulesFor>;
  scope: Awaited<ReturnType<typeof resolveTables>>;
  inScope: ScopeTable[];
  wholeDatabase: boolean;
  filters: (string | null)[];
}

/** Schema, sequences and table lists compared on both sides before any row is hashed. */
interface CatalogComparison {
  replication: Awaited<ReturnType<typeof detectReplication>>;
  schemaDiffs: Map<string, SchemaDifference[]>;
  sequences: Awaited<ReturnType<typeof compareSequences>>;
  targetCols: Map<string, Map<string, TargetColumn>>;
  tablesOnlyOnTarget: string[];
  /**
   * While replicating: the source's write counters of the tables watchedForWrites, and when they were read
   * (activity.ts); null when not replicating or no table is watched.
   */
  writes: { before: Map<string, string>; at: number } | null;
}

async function verifyDatabase(opts: VerifyOptions, pair: DatabasePair, progress: ProgressSink, reuse?: SessionPair): Promise<DatabaseReport> {
  const started = Date.now();
  const sourceDb = pair.sourceDatabase;
  const srcConn = pair.sourceConn;
  const tgtConn = pair.targetConn;
  // The sessions opened here; `reuse` belongs to the caller (it closes it).
  const parallel = parallelQueryFits(srcConn, tgtConn, opts.jobs);
  const opened: SessionPair[] = reuse ? [] : await openPairs(srcConn, tgtConn, 1, parallel);
  const pairs = reuse ? [reuse] : [...opened];
  const signal = opts.signal;
  const abort = () => void closePairs([...pairs]);
  signal?.addEventListener('abort', abort, { once: true });
  let more: Promise<void> | undefined;
  let early: EarlyCatalog | undefined;
  let choice: ReturnType<typeof wholeFirstChoice> | undefined;
  try {
    const scoped = resolveDatabaseScope(opts, sourceDb, pairs[0]!);
    // What needs no table list is read meanwhile: the target session would otherwise wait for the source's.
    early = earlyCatalog(opts, pairs[0]!, sourceDb);
    const ctx = await scoped;
    // The other pairs open while the catalogs are read, and only as many as there is work for.
    const wanted = Math.min(opts.jobs, estimatedWork(ctx.inScope, opts.chunkRows)) - 1;
    if (wanted > 0) {
      more = openPairs(srcConn, tgtConn, wanted, parallel).then((p) => {
        opened.push(...p);
        pairs.push(...p);
      });
      more.catch(() => {});
    }
    const catalog = await compareCatalogs(opts, pairs[0]!, ctx, early);
    const { jobs, reports } = buildTableJobs(opts, pair, ctx, catalog);
    const wholeScan = !catalog.replication.active || !!opts.sourceQuiet;
    const label = scopeLabel(sourceDb, tgtConn.dbname);
    // The tables compareCatalogs read the write counters of (watchedForWrites); none when not replicating or fenced.
    const watched = catalog.writes && opts.wholeFirst !== false ? jobs.filter((j) => catalog.writes!.before.has(`${j.table.schema}.${j.table.name}`)) : [];
    choice = wholeFirstChoice(opts, pairs[0]!, catalog, watched);
    choice.catch(() => {});
    await more;
    if (watched.length) {
      // The tables that fit one chunk (batches, whatever the choice) are hashed while the write counters' window runs.
      const small = jobs.filter((j) => fitsOneChunk(j.table, opts.chunkRows));
      await planJobs(opts, pairs, small, wholeScan, () => 'replan');
      await runChunks(opts, pairs, small, label, progress, wholeScan);
    }
    const rest = watched.length ? jobs.filter((j) => !fitsOneChunk(j.table, opts.chunkRows)) : jobs;
    await planJobs(opts, pairs, rest, wholeScan, await choice);
    await runChunks(opts, pairs, rest, label, progress, wholeScan);
    return databaseReport(sourceDb, tgtConn.dbname, catalog, reports, started);
  } catch (err) {
    throwIfAborted(signal);
    throw err;
  } finally {
    signal?.removeEventListener('abort', abort);
    await more?.catch(() => {});
    await early?.settled;
    await choice?.catch(() => {});
    await closePairs(opened);
  }
}

/** Catalog reads that need no table list, started while the source's scope is resolved. */
interface EarlyCatalog {
  replication: Promise<ReplicationLink>;
  onTarget: Promise<TableRef[]>;
  /** The target's schema digests of all its tables, when the scope is the whole database (else read with the source's). */
  targetSchema: Promise<SchemaDigests> | undefined;
  /** Resolves when all have ended, either way (nothing left running on a session about to close). */
  settled: Promise<unknown>;
}

function earlyCatalog(opts: VerifyOptions, first: SessionPair, sourceDb: string): EarlyCatalog {
  const replication = detectReplication(first.source, first.target);
  // With --tables only the named tables are checked; otherwise the scope's rules pick the target's tables too.
  const named = (opts.tables ?? []).length > 0;
  const onTarget = named ? Promise.resolve([] as TableRef[]) : targetTables(first.target);
  // Where the scope is every table, the target's schema digests are read now, on a session that would otherwise wait for the
  // source's table list (the slower of the two); tables the scope leaves out are ignored by the comparison.
  const targetSchema = coversWholeDatabase(opts, rulesFor(opts.scope, sourceDb)) ? onTarget.then((refs) => readSchemaDigests(first.target, refs)) : undefined;
  targetSchema?.catch(() => {}); // awaited by compareCatalogs
  const settled = Promise.allSettled([replication, onTarget, targetSchema]);
  return { replication, onTarget, targetSchema, settled };
}

/** No include rule and no --tables: every table of the database is in scope but those excluded. */
function coversWholeDatabase(opts: VerifyOptions, rules: ReturnType<typeof rulesFor>): boolean {
  return !rules.include.length && !(opts.tables ?? []).length;
}

/** The key rows are compared by: the primary key, else a unique key over NOT NULL columns; null: the table is hashed whole. */
function comparisonKey(t: Pick<ScopeTable, 'primaryKey' | 'uniqueKey'>): string[] | null {
  return t.primaryKey ?? t.uniqueKey;
}

/**
 * About how many units of work the tables make (workOf): small tables count
 * together, BATCH_TABLES to a statement; any other table counts as many as
 * the session pairs it could keep busy, by the rows batchRows takes it to hold
 * (a table never analysed is counted by its live rows: it is chunked by its
 * real size, so one pair would hash all its chunks alone). More pairs than
 * this would only cost their sessions.
 */
export function estimatedWork(tables: readonly Pick<ScopeTable, 'schemaOnly' | 'estimatedRows' | 'liveRows' | 'primaryKey' | 'uniqueKey'>[], chunkRows: number): number {
  let small = 0;
  let units = 0;
  for (const t of tables) {
    if (t.schemaOnly) continue;
    const rows = batchRows(t);
    if (fitsOneChunk(t, chunkRows)) small++;
    // A table without a key is hashed whole, one unit however big (planChunks).
    else if (!comparisonKey(t)) units++;
    else units += rows < 0 ? 1 : Math.ceil(rows / chunkRows);
  }
  return units + Math.ceil(small / BATCH_TABLES);
}

/**
 * The rows a table is taken to hold when deciding what goes in a batch of
 * small tables: pg_class's estimate, or where it knows nothing, the live rows
 * the cumulative statistics count; -1 when neither is known.
 */
function batchRows(t: { estimatedRows: number; liveRows?: number | null }): number {
  return t.estimatedRows >= 0 ? t.estimatedRows : (t.liveRows ?? -1);
}

/** Known to fit one chunk (batchRows): such a table is hashed whole in a batch of small tables (workOf). */
function fitsOneChunk(t: { estimatedRows: number; liveRows?: number | null }, chunkRows: number): boolean {
  const rows = batchRows(t);
  return rows >= 0 && rows <= chunkRows;
}

/**
 * The tables whose method depends on whether they are being written (wholeFirstChoice): keyed tables not known
 * to fit one chunk. One that fits is hashed whole in a batch whatever is chosen and compared by key only if it
 * differs, so neither it nor a keyless table (always hashed whole) needs the second reading of the counters.
 */
function watchedForWrites<T extends Pick<ScopeTable, 'schemaOnly' | 'estimatedRows' | 'liveRows' | 'primaryKey' | 'uniqueKey'>>(tables: readonly T[], chunkRows: number): T[] {
  return tables.filter((t) => !t.schemaOnly && comparisonKey(t) && !fitsOneChunk(t, chunkRows));
}

/** No sizes (verify reads none), but the live rows of never-analysed tables (batchRows). */
const TABLE_LIST: Readonly<ListTablesOptions> = { ...NO_SIZES, liveRows: true };

/** Resolve the scope's tables, narrow them to --tables, and check that every predicate plans on the source. */
async function resolveDatabaseScope(opts: VerifyOptions, sourceDb: string, first: SessionPair): Promise<DatabaseScope> {
  const rules = rulesFor(opts.scope, sourceDb);
  const scope = await resolveTables(first.source.client, sourceDb, rules, TABLE_LIST);
  const inScope = narrow(scope.tables, opts.tables ?? [], sourceDb);
  const wholeDatabase = coversWholeDatabase(opts, rules);
  const filters = inScope.map((t) => tableFilter(t, opts.filters?.[sourceDb], opts.cutoffs?.[sourceDb]));
  for (const [i, t] of inScope.entries()) {
    const filter = filters[i];
    if (filter === null || filter === undefined || t.schemaOnly) continue;
    await assertPredicatePlans(first.source.client, t.schema, t.name, filter, 'fix the predicate in --table-filter or the configuration file (verify compares the rows that match it on both sides)');
  }
  return { rules, scope, inScope, wholeDatabase, filters };
}

/** Replication state and the target's table list (started early), schemas and sequences, read over the first pair. */
async function compareCatalogs(opts: VerifyOptions, first: SessionPair, ctx: DatabaseScope, early: EarlyCatalog): Promise<CatalogComparison> {
  const { rules, scope, inScope, wholeDatabase } = ctx;
  const replication = await early.replication;
  const refs = inScope.map((t) => ({ schema: t.schema, name: t.name }));
  const watched = replication.active && !opts.sourceQuiet ? watchedForWrites(inScope, opts.chunkRows) : [];
  const writes = watched.length ? { before: await writeCounters(first.source, watched), at: Date.now() } : null;
  const [schemas, sequences, onTarget] = await Promise.all([
    compareTableSchemas(first.source, first.target, refs, new Map(inScope.map((t) => [tableId(t.schema, t.name), t.columns])), early.targetSchema),
    opts.sequences ? compareSequences(first.source, first.target, refs, wholeDatabase) : [],
    early.onTarget,
  ]);
  const selected = tableSelector(rules);
  const onSource = new Set(scope.tables.map((t) => `${t.schema}.${t.name}`));
  const tablesOnlyOnTarget = onTarget
    .filter((t) => selected(t.schema, t.name) && !onSource.has(`${t.schema}.${t.name}`) && !isStateTable(t.schema, t.name))
    .map((t) => displayName(t.schema, t.name));
  return { replication, schemaDiffs: schemas.differences, sequences, targetCols: schemas.targetColumns, tablesOnlyOnTarget, writes };
}

/** One report per table in scope, and a comparison job for each table whose rows can be compared. */
function buildTableJobs(opts: VerifyOptions, pair: DatabasePair, ctx: DatabaseScope, catalog: CatalogComparison): { jobs: TableJob[]; reports: TableReport[] } {
  const { inScope, filters } = ctx;
  const { replication, schemaDiffs, targetCols } = catalog;
  const signal = opts.signal;
  const jobs: TableJob[] = [];
  const reports: TableReport[] = [];
  for (const [i, t] of inScope.entries()) {
    const key = comparisonKey(t);
    const filter = filters[i]!;
    const method = t.schemaOnly ? 'schema-only' : key ? 'chunked' : 'whole-table';
    const report = emptyTableReport({ schema: t.schema, name: t.name, filter: t.schemaOnly ? null : filter }, method, t.schemaOnly ? null : key);
    report.schemaDifferences = schemaDiffs.get(tableId(t.schema, t.name)) ?? [];
    reports.push(report);
    if (t.schemaOnly) continue;
    const tcols = targetCols.get(tableId(t.schema, t.name));
    if (!tcols) {
      report.notes.push('rows not compared: the table is missing on the target');
      continue;
    }
    const common = t.columns.filter((c) => tcols.has(c.name)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const skipped = t.columns.filter((c) => !tcols.has(c.name)).map((c) => c.name);
    if (skipped.length) report.notes.push(`columns missing on the target are left out of the row hash: ${skipped.join(', ')}`);
      const masked = verifyPlan(t.masking);
      if (masked.skipped.length) report.notes.push(`masked with a random rule or a statement, left out of the row hash: ${masked.skipped.join(', ')}`);
      if (masked.sourceExpr.size) report.notes.push(`masked columns compared with the masked source values: ${[...masked.sourceExpr.keys()].join(', ')}`);
    let keyCols: VerifyTable['key'] = null;
    if (key) {
      if (key.some((k) => !tcols.has(k))) {
        report.notes.push(`rows not compared: key column(s) missing on the target`);
        continue;
      }
      keyCols = key.map((k) => {
        const c = t.columns.find((x) => x.name === k)!;
        return { name: k, sourceType: c.type, targetType: tcols.get(k)!.type, integer: hashKind(c.typeOid) === 'int' };
      });
    }
    const table: VerifyTable = {
      schema: t.schema,
      name: t.name,
      display: displayName(t.schema, t.name),
      key: keyCols,
        columns: common
          .filter((c) => !masked.skipped.includes(c.name))
          .map((c) => {
            const tc = tcols.get(c.name)!;
            const bpchar = bpcharSides(c.typeOid, tc.type);
            const notNull = { source: c.notNullValid, target: tc.notNullValid };
            return {
              name: c.name, kind: hashKind(c.typeOid), ...(bpchar ? { bpchar } : {}), ...(notNull.source || notNull.target ? { notNull } : {}),
              ...(masked.sourceExpr.has(c.name) ? { sourceExpr: masked.sourceExpr.get(c.name)! } : {}),
            };
          }),
      filter,
      only: t.relkind === 'r' && t.hasInheritanceChildren,
      estimatedRows: t.estimatedRows,
      liveRows: t.liveRows,
    };
    const comparer = new TableComparer(table, report, {
      maxDiffs: opts.maxDiffs,
      recheck: opts.recheck,
      lagTimeoutMs: opts.lagTimeoutMs,
      replication,
      signal,
      sourceConn: pair.sourceConn,
      chunkRows: opts.chunkRows,
      onDifferentRange: opts.onDifference && ((range) => opts.onDifference!({ sourceDatabase: pair.sourceDatabase, source: pair.sourceConn, target: pair.targetConn, table, range })),
    });
    jobs.push({ table, report, comparer, remaining: 0, startedAt: 0, done: 0 });
  }
  const compared = new Set(jobs.map((j) => j.report));
  for (const r of reports) if (r.method === 'schema-only' || !compared.has(r)) r.status = finishStatus(r);
  return { jobs, reports };
}

/**
 * Which tables are hashed whole first (plan.ts, ChunkTask.wholeFirst): every
 * table when the source is fenced (split by bisection where it differs) or
 * when nothing replicates (nothing moves the target, so a whole hash is as
 * exact as chunks; compared chunk by chunk where it differs); while
 * replicating, the tables that fit one chunk and those whose write counters
 * on the source did not move (activity.ts; a second reading a moment after
 * the first, waited for only when some table is watchedForWrites). The rest
 * are planned in chunks up front.
 */
async function wholeFirstChoice(opts: VerifyOptions, first: SessionPair, catalog: CatalogComparison, watched: TableJob[]): Promise<(job: TableJob) => WholeFirst | undefined> {
  if (opts.wholeFirst === false) return () => undefined;
  if (opts.sourceQuiet) return () => 'bisect';
  if (!catalog.writes || !watched.length) return () => 'replan';
  const wait = catalog.writes.at + QUIET_WINDOW_MS - Date.now();
  if (wait > 0) await sleep(wait, undefined, { signal: opts.signal }).catch(() => throwIfAborted(opts.signal));
  const after = await writeCounters(first.source, watched.map((j) => j.table));
  const quiet = quietTables(catalog.writes.before, after);
  // Applied to the tables that do not fit one chunk only (verifyDatabase hashes the others during the window).
  return (job) => (quiet.has(`${job.table.schema}.${job.table.name}`) ? 'replan' : undefined);
}

/** Plan every keyed table (source only, cheap), biggest first so that big tables start early. */
async function planJobs(opts: VerifyOptions, pairs: SessionPair[], jobs: TableJob[], wholeScan: boolean, wholeFirst: (job: TableJob) => WholeFirst | undefined): Promise<void> {
  const signal = opts.signal;
  jobs.sort((a, b) => b.table.estimatedRows - a.table.estimatedRows);
  let next = 0;
  await Promise.all(
    pairs.map(async (pair) => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        throwIfAborted(signal);
        await planJob(opts, pair, job, { wholeScan, wholeFirst: wholeFirst(job) });
      }
    }),
  );
}

async function planJob(opts: VerifyOptions, pair: SessionPair, job: TableJob, planOpts: Parameters<typeof planChunks>[4]): Promise<void> {
  try {
    job.plan = await planChunks(pair.source, job.table, opts.chunkRows, opts.jobs, planOpts);
  } catch (err) {
    if (fatal(err)) throw err;
    job.report.error = `cannot plan chunks: ${(err as Error).message}`;
    job.plan = { count: 0, taskCount: 0, *tasks() {} };
  }
  job.remaining = job.plan.taskCount;
}

/** Small tables hashed whole in one statement per side: at most this many tables … */
const BATCH_TABLES = 250;
/** … and about this many first-pass chunks' worth of rows (by the statistics). */
const BATCH_CHUNKS = 25;

type Work = { job: TableJob; task: ChunkTask } | { batch: TableJob[] };

/**
 * Tables hashed whole in one task that fit one chunk by the statistics, in
 * batches; the others one task after the other.
 */
function* workOf(jobs: TableJob[], chunkRows: number): Generator<Work> {
  const batchable = (job: TableJob) => !job.report.error && job.plan!.taskCount === 1 && fitsOneChunk(job.table, chunkRows);
  let batch: TableJob[] = [];
  let rows = 0;
  for (const job of jobs) {
    if (!batchable(job)) {
      for (const task of job.plan!.tasks()) yield { job, task };
      continue;
    }
    if (batch.length >= BATCH_TABLES || rows + batchRows(job.table) > BATCH_CHUNKS * chunkRows) {
      yield batch.length === 1 ? { job: batch[0]!, task: batch[0]!.plan!.tasks().next().value! } : { batch };
      batch = [];
      rows = 0;
    }
    batch.push(job);
    rows += batchRows(job.table);
  }
  if (batch.length) yield batch.length === 1 ? { job: batch[0]!, task: batch[0]!.plan!.tasks().next().value! } : { batch };
}

/** Hash every planned chunk on both sides, one chunk per session pair at a time; a table ends with its last chunk. */
async function runChunks(opts: VerifyOptions, pairs: SessionPair[], jobs: TableJob[], dbLabel: string, progress: ProgressSink, wholeScan: boolean): Promise<void> {
  const signal = opts.signal;
  const finish = (job: TableJob) => {
    job.report.durationMs = job.startedAt ? Date.now() - job.startedAt : 0;
    job.report.status = finishStatus(job.report);
    progress({ kind: 'end', id: `${dbLabel}/${job.report.display}`, status: job.report.status === 'equal' ? 'ok' : 'fail', detail: tableDetail(job.report) });
  };
  const start = (job: TableJob) => {
    if (job.startedAt) return;
    job.startedAt = Date.now();
    progress({ kind: 'start', id: `${dbLabel}/${job.report.display}`, title: `${dbLabel}${job.report.display}` });
  };
  for (const job of jobs) if (job.remaining === 0) {
    job.report.status = finishStatus(job.report);
  }

  const queue = workOf(jobs, opts.chunkRows);
  // Work found on the way (a table that differed as a whole, compared again chunk by chunk) comes first.
  const found: Iterator<Work>[] = [];
  // Workers with work that may add more: an idle worker waits for them before it stops.
  let busy = 0;
  let wake: () => void = () => {};
  let woken = new Promise<void>((r) => (wake = r));
  const settled = () => {
    wake();
    woken = new Promise<void>((r) => (wake = r));
  };
  const take = (): Work | undefined => {
    while (found.length) {
      const n = found[0]!.next();
      if (!n.done) return n.value;
      found.shift();
    }
    const n = queue.next();
    return n.done ? undefined : n.value;
  };
  const tasksOf = (job: TableJob): Iterator<Work> => (function* () {
    for (const task of job.plan!.tasks()) yield { job, task };
  })();

  const runTask = async (pair: SessionPair, job: TableJob, task: ChunkTask) => {
    start(job);
    let replanned = false;
    if (!job.report.error) {
      try {
        if (task.wholeFirst === 'replan') {
          if (!(await job.comparer.wholeEqual(pair))) {
            // Different as a whole: compared chunk by chunk, as a table without whole-first is.
            await planJob(opts, pair, job, { wholeScan });
            job.remaining += 1;
            job.done = 0;
            replanned = true;
            found.push(tasksOf(job));
          }
        } else await job.comparer.compareTask(pair, task);
      } catch (err) {
        throwIfAborted(signal);
        if (fatal(err)) throw err;
        const hint = rowSecurityHint(err);
        job.report.error = `comparison failed: ${(err as Error).message}${hint ? ` (${hint})` : ''}`;
      }
    }
    if (!replanned) job.done += task.buckets ? task.buckets.last - task.buckets.first + 1 : 1;
    if (job.plan!.taskCount > 1 && !replanned) progress({ kind: 'update', id: `${dbLabel}/${job.report.display}`, detail: rateAndEta(job.done, job.plan!.count, Date.now() - job.startedAt, 'chunks'), done: job.done, total: job.plan!.count, unit: 'chunks' });
    if (--job.remaining === 0) finish(job);
  };

  const runBatch = async (pair: SessionPair, batch: TableJob[]) => {
    for (const job of batch) start(job);
    let hashes: Awaited<ReturnType<typeof hashBatch>> | null = null;
    try {
      hashes = await hashBatch(pair, batch.map((j) => j.table));
    } catch (err) {
      throwIfAborted(signal);
      if (fatal(err)) throw err;
      // One of the tables cannot be hashed this way: each on its own, so that the error names it.
    }
    for (const [i, job] of batch.entries()) {
      const h = hashes?.[i];
      if (h && h[0].n === h[1].n && h[0].h === h[1].h) {
        job.comparer.recordWholeEqual(h[0], h[1]);
        if (--job.remaining === 0) finish(job);
      } else found.push(tasksOf(job));
    }
  };

  await Promise.all(
    pairs.map(async (pair: SessionPair) => {
      for (;;) {
        throwIfAborted(signal);
        const w = take();
        if (!w) {
          if (!busy) return;
          await woken;
          continue;
        }
        busy++;
        try {
          if ('batch' in w) await runBatch(pair, w.batch);
          else await runTask(pair, w.job, w.task);
        } finally {
          busy--;
          settled();
        }
      }
    }),
  );
}

/** The database's verdict and report, from the table reports and the catalog comparison. */
function databaseReport(sourceDb: string, targetDb: string, catalog: CatalogComparison, reports: TableReport[], started: number): DatabaseReport {
  const { replication, sequences, tablesOnlyOnTarget } = catalog;
  const status: TableStatus = reports.some((r) => r.status === 'error')
    ? 'error'
    : reports.some((r) => r.status === 'different') || sequences.some((s) => s.status !== 'ok') || tablesOnlyOnTarget.length
      ? 'different'
      : 'equal';
  return {
    source: sourceDb,
    target: targetDb,
    status,
    replication: { active: replication.active, subscriptions: replication.subscriptions },
    tables: reports,
    tablesOnlyOnTarget,
    sequences,
    durationMs: Date.now() - started,
  };
}

function scopeLabel(source: string, target: string): string {
  return source === target ? `${source}: ` : `${source}→${target}: `;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new InterruptedError();
}

/** Errors that end the whole run (lost connection, our own errors) rather than one table. */
function fatal(err: unknown): boolean {
  return err instanceof PgferryError || isConnectFailure(err) || !(err instanceof Error) || !('code' in err);
}

function summarize(dbs: DatabaseReport[]): VerifySummary {
  const tables = dbs.flatMap((d) => d.tables);
  return {
    databases: dbs.length,
    tables: tables.length,
    tablesEqual: tables.filter((t) => t.status === 'equal').length,
    tablesDifferent: tables.filter((t) => t.status === 'different').length,
    tablesFailed: tables.filter((t) => t.status === 'error').length,
    rowsCompared: tables.reduce((n, t) => n + t.rowsSource, 0),
    chunksCompared: tables.reduce((n, t) => n + t.chunks, 0),
    rowDifferences: tables.reduce((n, t) => n + t.diffCounts.missing + t.diffCounts.extra + t.diffCounts.different, 0),
    schemaDifferences: tables.reduce((n, t) => n + t.schemaDifferences.length, 0),
    tablesOnlyOnTarget: dbs.reduce((n, d) => n + d.tablesOnlyOnTarget.length, 0),
    sequencesBehind: dbs.reduce((n, d) => n + d.sequences.filter((s) => s.status !== 'ok').length, 0),
  };
}

/** Compare target with source for every database in scope. */
export async function verify(opts: VerifyOptions): Promise<VerifyReport> {
  checkOptions(opts);
  const progress = opts.progress ?? silentProgress;
  const startedAt = new Date();
  // One session per side serves the probe, the database list and the first pair of the database the
  // connections name: a session costs about 4 ms of server and 3 ms of client CPU to open, as much
  // as hashing 20 000 narrow rows, and verify of a few small tables needs no more than one pair.
  const first = (await openPairs(opts.source, opts.target, 1, parallelQueryFits(opts.source, opts.target, opts.jobs)))[0]!;
  let reports: DatabaseReport[];
  try {
    const { source, target } = await probePair(opts.source, opts.target, { source: first.source.client, target: first.target.client });
    const state = opts.stateIdentity;
    if (state && (state.sourceSystemIdentifier !== source.systemIdentifier || state.targetSystemIdentifier !== target.systemIdentifier)) {
      throw new UsageError(
        `the state in ${state.stateFile} belongs to another migration (source system identifier ${state.sourceSystemIdentifier}, target ${state.targetSystemIdentifier}; ` +
          `now ${source.systemIdentifier} and ${target.systemIdentifier})`,
        { hint: 'point --state-dir at the state of this migration (its filters and cutoffs decide which rows are compared)' },
      );
    }
    const pairs = await scopePairs(opts.source, opts.target, opts.scope.databases, first.source.client, opts.targetDatabases);
    reports = [];
    for (const pair of pairs) {
      throwIfAborted(opts.signal);
      const reuse = pair.sourceConn.dbname === opts.source.dbname && pair.targetConn.dbname === opts.target.dbname ? first : undefined;
      try {
        reports.push(await verifyDatabase(opts, pair, progress, reuse));
      } catch (err) {
        throwIfAborted(opts.signal);
        throw operationError(err, `verify of database "${pair.sourceDatabase}"`);
      }
    }
  } finally {
    await closePairs([first]);
  }
  const status: TableStatus = reports.some((d) => d.status === 'error')
    ? 'error'
    : reports.some((d) => d.status === 'different')
      ? 'different'
      : 'equal';
  return {
    status,
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    options: {
      jobs: opts.jobs,
      chunkRows: opts.chunkRows,
      maxDiffs: opts.maxDiffs,
      recheck: opts.recheck,
      lagTimeoutMs: opts.lagTimeoutMs,
      sequences: opts.sequences,
    },
    summary: summarize(reports),
    databases: reports,
  };
}
