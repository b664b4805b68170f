/**
 * init of one source database, phase by phase, each recorded in the
 * checkpoint before the next starts:
 *
 *   pending    target database created (or found empty, or re-created with --drop-existing), while
 *              the snapshot is taken and the schema dumped
 *   schema     snapshot taken (slot + exported snapshot), schema archive dumped under it, pre-data restored
 *   data       rows copied under the snapshot (parts recorded as they commit), large objects;
 *              each table's own indexes and constraints as soon as it is in (table-post-data.ts)
 *   post-data  the remaining indexes and constraints, then foreign keys, then comments
 *   sequences  values set from the source
 *   analyze    statistics on the copied tables
 *   done
 *
 * Resume (see docs/architecture.md, "Resume"): a snapshot dies with its
 * connection, the slot does not. Tables finished under the slot's snapshot
 * stay. If none did, the old slot is dropped and a new one gives a fresh,
 * fully consistent start. Otherwise the slot stays, a new snapshot is exported
 * on a plain connection, every unfinished table is copied again whole under it
 * (never parts of one table from two snapshots) and marked
 * consistentWithSlot = false, for sync to hand over to PostgreSQL's own table
 * synchronisation.
 */
import path from 'node:path';
import type pg from 'pg';
import { rulesFor, type ScopeTable } from '../../config/scope.js';
import { OperationError, UsageError } from '../../errors.js';
import { faultPoint } from '../../fault.js';
import type { ProgressSink } from '../shared/progress.js';
import { databaseProperties, userObjectCounts } from '../../postgres/catalog/databases.js';
import type { ForeignKey } from '../../postgres/catalog/foreign-keys.js';
import { extensionConfigRelations } from '../../postgres/catalog/extensions.js';
import type { CatalogTable } from '../../postgres/catalog/tables.js';
import { acquireClient, CANONICAL_SETTINGS, withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { quoteLiteral } from '../../postgres/identifiers.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import { isPgferryName, type ObjectNames } from '../../state/object-names.js';
import { phaseBefore, statePaths, tableKey, type DatabaseState, type InitPhase, type StateStore } from '../../state/checkpoint.js';
import { formatBytes, plural } from '../../units.js';
import { copyTables, type CopyTablesOptions } from './copy.js';
import { planCopy, type CopyPlanOptions, type CopyTableInput, type TableCopyPlan } from './copy-plan.js';
import { startReadAhead, type ReadAhead } from './read-ahead.js';
import { createForeignKeys, fkKey } from './constraints.js';
import { applyDatabaseProperties, describeProperties, propertyStatements, readDatabaseExtras } from '../shared/database-properties.js';
import { copyExtensionData, describeExtensionData } from '../shared/extension-data.js';
import { copyLargeObjects, countLargeObjects } from '../shared/large-objects.js';
import { populatedMaterializedViews, refreshMaterializedViews } from '../shared/materialized-views.js';
import type { InitOptions } from './run.js';
import {
  archiveExists, dumpSchema, entriesPresentOnTarget, excludedRelations, listPostData, restoreEntries, restoreEventTriggers, restorePreData, restoreScripted, stopStrayRestores, type SchemaToolOptions, type TocEntry,
} from './schema.js';
import { createBudget, type Budget } from './budget.js';
import { DEFAULT_SPLIT_THRESHOLD_BYTES, type TablePart } from './parts.js';
import { EARLY_POST_DATA_MIN_BYTES, earlyUnits, ownPostDataItems, tablePostData, type TablePostData } from './table-post-data.js';
import { analyzeItems, analyzeTables } from './analyze.js';
import { earlyAnalyzer, tablesWithPostDataStatistics, type EarlyAnalyzer } from './early-analyze.js';
import { checkForeignKeys } from '../shared/foreign-key-check.js';
import { blocksInit } from './refusals.js';
import { syncSequences } from '../shared/sequences.js';
import { createSlotWithSnapshot, dropSlot, exportSnapshot, findSlot, type SnapshotHolder } from '../shared/slot.js';
import { preparePublication } from './publication.js';
import { prepareTargetDatabase } from './target-db.js';
import { DEFAULT_OVERLAP_SECONDS, readLowerBound } from '../shared/timestamp-bound.js';
import { writeInitMarks, type InitMark } from '../shared/timestamp-state.js';

export interface DatabaseReport {
  source: string;
  target: string;
  slot: { name: string; consistentLsn: string } | null;
  /** Snapshots the rows were copied under (2+ after a resume that kept finished tables). */
  snapshotsUsed: number;
  phase: InitPhase;
  tables: {
    schema: string; name: string; schemaOnly: boolean; filter: string | null; rows: number; bytes: number; seconds: number;
    consistentWithSlot: boolean; copiedThisRun: boolean;
  }[];
  largeObjects: number;
  sequences: number;
  notValidForeignKeys: DatabaseState['notValidForeignKeys'];
  /** Seconds of this run per phase. */
  runPhaseSeconds: Record<string, number>;
  /** Seconds per phase over every run of this migration. */
  totalPhaseSeconds: DatabaseState['phaseSeconds'];
}

export interface DatabaseRunContext {
  options: InitOptions;
  store: StateStore;
  d: DatabaseState;
  signal: AbortSignal;
  progress: ProgressSink;
  warn: (message: string) => void;
  source: { conn: ResolvedConnInfo; identity: ServerIdentity };
  target: { conn: ResolvedConnInfo; identity: ServerIdentity };
  tables: ScopeTable[];
  allTables: CatalogTable[];
  fks: ForeignKey[];
  /** Slot and publication names of this database pair. */
  names: ObjectNames;
}

function archiveFile(stateDir: string, db: string): string {
  return path.join(statePaths(stateDir).work, `${encodeURIComponent(db)}.schema.dump`);
}

/** What the phases of one initDatabase call share. */
interface PhaseRun {
  x: DatabaseRunContext;
  /** Progress id of this database. */
  pid: string;
  runPhaseSeconds: Record<string, number>;
  copiedThisRun: Set<string>;
  /** Tables analysed during the data phase of this run (table-post-data.ts). */
  analyzedThisRun: Set<string>;
  largeObjects: number;
  sequences: number;
  toolOpts: SchemaToolOptions;
  archive: string;
  /** --method timestamp: the safe lower bound read just before this run's snapshot (shared/timestamp-bound.ts). */
  mark: InitMark | null;
  /** The archive's post-data entries, listed once per run (one pg_restore --list); forget() after the archive is dumped again. */
  postDataList: { get: () => Promise<TocEntry[]>; forget: () => void };
  /** Run one phase as a progress task, adding its seconds to this run and to the checkpoint. */
  timed: (phase: string, title: string, fn: () => Promise<string | void>) => Promise<void>;
  setPhase: (phase: InitPhase) => Promise<void>;
  /** The title of the first step that failed (the state's phase can be an earlier one: the snapshot belongs to phase schema). */
  failedStep?: string;
  /** Small tables' rows read while this run restores the pre-data section (read-ahead.ts). */
  readAhead?: ReadAhead;
}

function phaseRun(x: DatabaseRunContext): PhaseRun {
  const { d, store, options: o, progress } = x;
  const pid = `init/${d.sourceDatabase}`;
  const runPhaseSeconds: Record<string, number> = {};
  const timed = async (phase: string, title: string, fn: () => Promise<string | void>) => {
    const t0 = performance.now();
    const id = `${pid}/${phase}`;
    progress({ kind: 'start', id, title: `${d.sourceDatabase}: ${title}`, parent: pid });
    try {
      const detail = await fn();
      progress({ kind: 'end', id, status: 'ok', ...(detail ? { detail } : {}) });
    } catch (err) {
      progress({ kind: 'end', id, status: 'fail', detail: (err as Error).message.split('\n')[0] });
      run.failedStep ??= title;
      throw err;
    } finally {
      const secs = (performance.now() - t0) / 1000;
      runPhaseSeconds[phase] = (runPhaseSeconds[phase] ?? 0) + secs;
      d.phaseSeconds[phase as InitPhase] = (d.phaseSeconds[phase as InitPhase] ?? 0) + secs;
    }
  };
  const toolOpts = { pgBinDir: o.pgBinDir, signal: x.signal, noOwner: o.noOwner, noPrivileges: o.noPrivileges, keepTablespaces: !!o.keepTablespaces, targetMajor: x.target.identity.major };
  const archive = archiveFile(o.stateDir, d.sourceDatabase);
  let list: Promise<TocEntry[]> | undefined;
  const run: PhaseRun = {
    x, pid, runPhaseSeconds, copiedThisRun: new Set<string>(), analyzedThisRun: new Set<string>(), largeObjects: 0, sequences: 0, mark: null,
    toolOpts,
    archive,
    postDataList: {
      get: () => (list ??= listPostData(archive, toolOpts)).catch((err: unknown) => {
        list = undefined;
        throw err;
      }),
      forget: () => (list = undefined),
    },
    timed,
    setPhase: (phase: InitPhase) => store.update(() => (d.phase = phase)),
  };
  return run;
}

export async function initDatabase(x: DatabaseRunContext): Promise<DatabaseReport> {
  const { d, progress } = x;
  const r = phaseRun(x);
  const { pid } = r;

  progress({ kind: 'start', id: pid, title: `database ${d.sourceDatabase} → ${d.targetDatabase}` });
  try {
    // The target database is created while the source's snapshot is taken and its schema dumped; only the restore needs it.
    const target = d.targetPrepared ? undefined : targetPhase(r);
    target?.catch(() => {}); // awaited in snapshotPhases, on every path
    await snapshotPhases(r, target);
    if (d.phase === 'post-data') await postDataPhase(r);
    if (d.phase === 'sequences') await sequencesPhase(r);
    if (d.phase === 'analyze') await analyzePhase(r);
    progress({ kind: 'end', id: pid, status: 'ok', detail: d.phase === 'done' ? 'done' : d.phase });
  } catch (err) {
    progress({ kind: 'end', id: pid, status: 'fail', detail: `stopped ${r.failedStep ? `at ${r.failedStep}` : `in phase ${d.phase}`}; run init again to resume` });
    throw err;
  }
  return databaseReport(r);
}

/** Create the target database (or find it empty, or re-create it with --drop-existing). */
async function targetPhase(r: PhaseRun): Promise<void> {
  const { x, timed } = r;
  const { d, store, options: o } = x;
  await timed('target', `target database ${d.targetDatabase}`, async () => {
    const props = await withClient(x.source.conn, (c) => databaseProperties(c, d.sourceDatabase, x.source.identity.major), { label: 'the source' });
    if (!props) throw new OperationError(`source database "${d.sourceDatabase}" disappeared`);
    const action = await prepareTargetDatabase({
      target: x.target.conn, targetMajor: x.target.identity.major, name: d.targetDatabase, source: props,
      dropExisting: o.dropExisting, noOwner: o.noOwner, warn: x.warn,
      confirmDrop: o.confirm?.dropDatabase ?? (async () => false),
    });
    await store.update(() => {
      d.targetPrepared = true;
      if (d.phase === 'pending') d.phase = 'schema';
    });
    return action;
  });
}

/**
 * The phases that need the snapshot (schema, data), with the snapshot held open around them.
 * `target`: the target database being prepared (targetPhase), awaited before anything is restored into it.
 */
async function snapshotPhases(r: PhaseRun, target: Promise<void> | undefined): Promise<void> {
  const { x, timed, setPhase, toolOpts, archive } = r;
  const { d, options: o } = x;
  let holder: SnapshotHolder | undefined;
  try {
    if (phaseBefore(d.phase, 'post-data')) {
      await timed('snapshot', 'snapshot', async () => {
        // Read before the snapshot exists: a transaction committing in between is then still counted as open.
        if (o.method === 'timestamp') r.mark = await readInitMark(x);
        holder = await openSnapshot(x);
        return d.slot && !o.noSync ? `slot ${d.slot.name}, snapshot ${holder.snapshotName}` : `snapshot ${holder.snapshotName}`;
      });
    }

    if (d.phase === 'schema' || d.phase === 'pending') {
      await timed('schema', 'schema (pre-data)', async () => {
        const inScope = new Set(x.tables.map((t) => t.oid));
        // Whether an earlier run already restored the schema is asked on the target while pg_dump runs.
        const restored = (async () => {
          await target;
          return preDataAlreadyRestored(x);
        })();
        restored.catch(() => {}); // awaited below, unless the dump fails first
        const exclude = await excludedRelations(x.source.conn, x.allTables, inScope);
        await dumpSchema(x.source.conn, archive, { ...toolOpts, snapshot: holder!.snapshotName, exclude });
        if (await restored) return 'already restored';
        // The source is idle while the target creates the tables: read the small ones' rows now.
        r.readAhead = startReadAhead({ source: x.source.conn, snapshot: holder!.snapshotName, ...copyInputs(x) });
        const preData = restorePreData(x.target.conn, archive, { ...toolOpts, targetMajor: x.target.identity.major, warn: x.warn });
        // The post-data list (a pg_restore run over the archive) is read beside the pre-data restore, started just
        // after it: the data phase needs it before its first row when large tables get their indexes during the copy.
        r.postDataList.get().catch(() => {}); // asked again where it is needed, which reports a failure
        await preData;
        faultPoint('init.pre-data');
      });
      await setPhase('data');
    }

    if (d.phase === 'data') await dataPhase(r, holder!);
  } finally {
    // Stopped where the data phase began; here only an error or interrupt finds it still reading.
    await r.readAhead?.kill();
    // A failed snapshot or dump does not leave the target's CREATE DATABASE running behind the error.
    const [prepared] = await Promise.allSettled([target]);
    await holder?.release();
    if (prepared.status === 'rejected' && holder?.slot) await takeBackSlot(x, holder.slot.name);
  }
  await target;
}

/**
 * The target database could not be prepared, while the snapshot beside it
 * created a slot: drop that slot again (and forget it), so that a failed
 * first step leaves no slot holding WAL on the source, as when the target
 * came first. The publication stays (it holds nothing; cleanup removes it).
 */
async function takeBackSlot(x: DatabaseRunContext, name: string): Promise<void> {
  try {
    await withClient(x.source.conn, (c) => dropSlot(c, name), { label: 'the source' });
    await x.store.update(() => {
      x.d.slot = null;
      x.d.snapshotsUsed = 0;
    });
  } catch (err) {
    x.warn(`replication slot ${name} was created before the target database failed and could not be dropped (${(err as Error).message.split('\n')[0]}); run pgferry cleanup, or init again to reuse it`);
  }
}

/** Rows, then large objects, under the snapshot. */
async function dataPhase(r: PhaseRun, holder: SnapshotHolder): Promise<void> {
  const { x, timed, setPhase } = r;
  const { d, store, options: o } = x;
  // Asked while the rows are copied, off the path between the phases: the post-data list (a pg_restore run)
  // and whether there are large objects at all (a source session).
  r.postDataList.get().catch(() => {}); // the post-data phase asks again, and reports a failure then
  const largeObjects = d.largeObjects === 'pending' ? withClient(x.source.conn, countLargeObjects, { label: 'the source' }) : undefined;
  largeObjects?.catch(() => {});
  const extensionConfig = withClient(x.source.conn, extensionConfigRelations, { label: 'the source' });
  extensionConfig.catch(() => {});
  await timed('data', 'data', async () => {
    const post = await earlyPostData(r);
    return copyData(x, holder, r.copiedThisRun, r.mark, post, r.analyzedThisRun, r.readAhead);
  });
  if (largeObjects) {
    await timed('large-objects', 'large objects', async () => {
      const n = await largeObjects;
      if (n > 0) {
        const res = await copyLargeObjects({
          source: x.source.conn, target: x.target.conn, snapshot: holder.snapshotName, noOwner: o.noOwner,
          noPrivileges: o.noPrivileges, signal: x.signal,
        });
        r.largeObjects = res.count;
      }
      await store.update(() => (d.largeObjects = n > 0 ? 'done' : 'none'));
      return `${n} copied`;
    });
  }
  // Not recorded: a rerun of the data phase copies them again, which replaces what an earlier run wrote.
  const relations = await extensionConfig;
  if (relations.length) {
    await timed('extension-data', "extensions' configuration rows", async () =>
      describeExtensionData(await copyExtensionData({
        source: x.source.conn, target: x.target.conn, snapshot: holder.snapshotName, rules: rulesFor(o.scope, d.sourceDatabase), relations,
        warn: x.warn, signal: x.signal,
      })));
  }
  await setPhase('post-data');
}

async function postDataPhase(r: PhaseRun): Promise<void> {
  const { x, timed, setPhase, toolOpts, archive } = r;
  await timed('post-data', 'indexes and constraints (post-data)', async () => {
    if (!archiveExists(archive)) {
      // The work files were removed: the schema has not changed since (DDL during a migration is not supported).
      const inScope = new Set(x.tables.map((t) => t.oid));
      const exclude = await excludedRelations(x.source.conn, x.allTables, inScope);
      await dumpSchema(x.source.conn, archive, { ...toolOpts, exclude });
      r.postDataList.forget();
    }
    return restorePostData(x, archive, toolOpts, await r.postDataList.get());
  });
  await setPhase('sequences');
}

async function sequencesPhase(r: PhaseRun): Promise<void> {
  const { x, timed, setPhase } = r;
  await timed('sequences', 'sequences', async () => {
    r.sequences = (await syncSequences({ source: x.source.conn, target: x.target.conn })).filter((q) => q.action === 'set').length;
    faultPoint('init.sequences');
    return `${r.sequences} set`;
  });
  await setPhase('analyze');
}

async function analyzePhase(r: PhaseRun): Promise<void> {
  const { x, timed } = r;
  const { d, store, options: o } = x;
  const extras = readDatabaseExtras(x.source.conn, d.sourceDatabase);
  extras.catch(() => {}); // awaited below
  await timed('analyze', 'ANALYZE', async () => {
    const copied = x.tables.filter((t) => !t.schemaOnly);
    const left = copied.filter((t) => !r.analyzedThisRun.has(tableKey(t.schema, t.name)));
    await analyzeTables(x.target.conn, analyzeItems(left, r.analyzedThisRun, o.jobs), o.jobs, x.signal);
    faultPoint('init.analyze');
    return left.length < copied.length ? `${left.length} tables (${copied.length - left.length} as their copy finished)` : `${copied.length} tables`;
  });
  // Last, so that a statement_timeout or a read-only default of the database never reaches init's own sessions.
  const e = await extras;
  const statements = e ? propertyStatements(d.targetDatabase, e, o) : [];
  if (statements.length) {
    await timed('properties', 'database settings, privileges and comment', async () =>
      describeProperties(await applyDatabaseProperties({ target: x.target.conn, targetDatabase: d.targetDatabase, warn: x.warn }, statements)));
  }
  await store.update(() => {
    d.phase = 'done';
    d.finishedAt = new Date().toISOString();
  });
}

function databaseReport(r: PhaseRun): DatabaseReport {
  const { d } = r.x;
  return {
    source: d.sourceDatabase,
    target: d.targetDatabase,
    slot: d.slot ? { name: d.slot.name, consistentLsn: d.slot.consistentLsn } : null,
    snapshotsUsed: d.snapshotsUsed,
    phase: d.phase,
    tables: Object.entries(d.tables).map(([k, t]) => ({
      schema: t.schema, name: t.name, schemaOnly: t.schemaOnly, filter: d.filters[k] ?? null, rows: t.rows, bytes: t.bytes,
      seconds: Math.round(t.seconds * 1000) / 1000, consistentWithSlot: t.consistentWithSlot, copiedThisRun: r.copiedThisRun.has(k),
    })),
    largeObjects: r.largeObjects,
    sequences: r.sequences,
    notValidForeignKeys: d.notValidForeignKeys,
    runPhaseSeconds: r.runPhaseSeconds,
    totalPhaseSeconds: d.phaseSeconds,
  };
}

/** Unfinished tables start over: all their parts again, under the new snapshot. */
function resetUnfinished(d: DatabaseState, consistent: boolean, all = false): void {
  for (const t of Object.values(d.tables)) {
    if (t.schemaOnly) continue;
    if (all || t.status !== 'done') {
      t.status = 'pending';
      t.parts = [];
      t.rows = 0;
      t.bytes = 0;
      t.seconds = 0;
      t.consistentWithSlot = consistent;
    }
  }
}

/** The snapshot of this run, following the resume rules. */
async function openSnapshot(x: DatabaseRunContext): Promise<SnapshotHolder> {
  const { d, options: o } = x;
  const finished = Object.values(d.tables).filter((t) => !t.schemaOnly && t.status === 'done' && t.consistentWithSlot);
  const keepFinished = finished.length > 0 && !phaseBefore(d.phase, 'data');
  if (o.noSync) return exportSnapshotWithoutSlot(x, finished.length, keepFinished);
  const slotUsable = await reconcileSlot(x, keepFinished);
  if (slotUsable) return exportSnapshotKeepingSlot(x, finished.length);
  return createSlotAndSnapshot(x);
}

/** --no-sync: a plain exported snapshot; finished tables are kept only past the data phase's start. */
async function exportSnapshotWithoutSlot(x: DatabaseRunContext, finished: number, keepFinished: boolean): Promise<SnapshotHolder> {
  const { d, store } = x;
  const h = await exportSnapshot(x.source.conn);
  await store.update(() => {
    if (keepFinished) {
      d.snapshotsUsed++;
      resetUnfinished(d, false);
    } else {
      d.snapshotsUsed = 1;
      resetUnfinished(d, true, true);
    }
  });
  if (keepFinished) {
    x.warn(
      `resuming ${d.sourceDatabase}: ${finished} finished tables are kept; the others are copied under a new snapshot, ` +
        'so this copy (--no-sync) mixes two points in time',
    );
  }
  return h;
}

/**
 * Whether the slot of the earlier run can be kept (it exists and tables
 * finished under it); a slot that cannot is dropped.
 */
async function reconcileSlot(x: DatabaseRunContext, keepFinished: boolean): Promise<boolean> {
  const { d } = x;
  let slotUsable = false;
  await withClient(
    x.source.conn,
    async (c) => {
      const existing = await findSlot(c, x.names.slot);
      if (d.slot) {
        if (!existing) {
          if (keepFinished || !phaseBefore(d.phase, 'post-data')) {
            x.warn(`replication slot ${d.slot.name} of this migration is gone from the source; every table is copied again under a new slot`);
          }
        } else if (keepFinished) {
          slotUsable = true;
        } else {
          await dropSlot(c, existing.name);
          x.progress({ kind: 'log', level: 'info', message: `no table had finished under the old snapshot: dropped slot ${existing.name} to start with a new one` });
        }
      } else if (existing) {
        // Same deterministic name, not in the state: left by a run that died before recording it.
        await dropSlot(c, existing.name);
        x.progress({ kind: 'log', level: 'info', message: `dropped replication slot ${existing.name} left by an interrupted run` });
      }
    },
    { label: 'the source' },
  );
  return slotUsable;
}

/** The slot stays; unfinished tables are copied again under a new snapshot and marked not consistent with it. */
async function exportSnapshotKeepingSlot(x: DatabaseRunContext, finished: number): Promise<SnapshotHolder> {
  const { d, store } = x;
  const h = await exportSnapshot(x.source.conn);
  const redo = Object.values(d.tables).filter((t) => !t.schemaOnly && t.status !== 'done').length;
  await store.update(() => {
    d.snapshotsUsed++;
    resetUnfinished(d, false);
  });
  x.warn(
    `resuming ${d.sourceDatabase}: ${finished} tables finished under the slot's snapshot are kept; ${redo} are copied again ` +
      'under a new snapshot and marked for sync to re-synchronise through PostgreSQL table synchronisation',
  );
  return h;
}

/** A fresh start: the publication, then a new slot with its exported snapshot; every table is copied under it. */
async function createSlotAndSnapshot(x: DatabaseRunContext): Promise<SnapshotHolder> {
  const { d, store, options: o } = x;
  // The publication must exist, with every streamed table, before the slot's consistent point (publication.ts).
  await withClient(
    x.source.conn,
    async (c) => {
      const r = await preparePublication(c, x.names.publication, x.tables, d.filters, x.source.identity.major, !!o.setReplicaIdentityFull);
      if (r.fullIdentity.length) x.warn(`set REPLICA IDENTITY FULL on the source for ${r.fullIdentity.join(', ')} (--set-replica-identity-full)`);
      if (r.change !== 'unchanged') x.progress({ kind: 'log', level: 'info', message: `publication ${x.names.publication} ${r.change} on the source` });
    },
    { label: 'the source', quietDdl: true },
  );
  const h = await createSlotWithSnapshot(x.source.conn, x.names.slot, x.source.identity.major);
  try {
    await store.update(() => {
      d.slot = { name: h.slot!.name, consistentLsn: h.slot!.consistentLsn, snapshotName: h.snapshotName, createdAt: new Date().toISOString() };
      d.snapshotsUsed = 1;
      resetUnfinished(d, true, true);
    });
  } catch (err) {
    await h.release();
    throw err;
  }
  x.progress({ kind: 'log', level: 'info', message: `created replication slot ${h.slot!.name} at ${h.slot!.consistentLsn}` });
  return h;
}

/**
 * A crash between the pre-data COMMIT and the checkpoint leaves the schema in
 * place: detect it (every table of the scope exists) instead of failing on
 * "already exists". Anything else in a non-empty database is an error.
 */
async function preDataAlreadyRestored(x: DatabaseRunContext): Promise<boolean> {
  return withClient(
    x.target.conn,
    async (c) => {
      const counts = await userObjectCounts(c);
      if (Object.values(counts).every((n) => n === 0)) return false;
      const { rows } = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM unnest($1::text[], $2::text[]) x(s, t)
          WHERE EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = x.s AND c.relname = x.t)`,
        [x.tables.map((t) => t.schema), x.tables.map((t) => t.name)],
      );
      if (rows[0]!.n === x.tables.length) return true;
      throw new OperationError(
        `target database "${x.d.targetDatabase}" holds objects, but not the schema of this migration (${rows[0]!.n} of ${x.tables.length} tables)`,
        { hint: 'start over with --restart --drop-existing' },
      );
    },
    { label: 'the target' },
  );
}

/** --method timestamp: where incremental sync of the tables copied under this run's snapshot starts. */
async function readInitMark(x: DatabaseRunContext): Promise<InitMark> {
  const b = await withClient(x.source.conn, (c) => readLowerBound(c, DEFAULT_OVERLAP_SECONDS), { label: 'the source', settings: { ...CANONICAL_SETTINGS } });
  return { mark: b.bound, xmin: b.xmin, standby: b.standby };
}

/**
 * The foreign-key pre-check ran before the snapshot existed: rows written in
 * between can break a key that a filter (or a schema-only parent) keeps. Check
 * again under the snapshot, before any row is copied, instead of failing in
 * post-data after the whole copy. With --fk-not-valid such keys are created
 * NOT VALID (with a warning); without it init stops here, naming them.
 */
async function recheckForeignKeys(x: DatabaseRunContext, src: pg.Client): Promise<void> {
  const { d, options: o } = x;
  if (!Object.keys(d.filters).length && !x.tables.some((t) => t.schemaOnly)) return;
  const known = new Set(d.notValidForeignKeys.map(fkKey));
  const fresh = (await checkForeignKeys(src, x.fks, x.tables, d.filters)).filter((p) => p.cause !== 'excluded' && !known.has(fkKey(p.fk)));
  if (!fresh.length) return;
  if (fresh.some((p) => blocksInit(p, o.fkNotValid))) {
    throw new UsageError(`rows written on the source since the foreign-key check break ${fresh.map((p) => p.message).join('; ')}`, {
      hint: 'run pgferry init --restart --fk-not-valid (such keys are created NOT VALID), or fix those rows on the source and run pgferry init --restart',
    });
  }
  await x.store.update(() => {
    for (const p of fresh) d.notValidForeignKeys.push({ schema: p.fk.schema, table: p.fk.table, name: p.fk.name, reason: 'filter' });
  });
  for (const p of fresh) x.warn(`${p.message} (rows written since the pre-check): created NOT VALID`);
}

/** The size from which a table's own post-data items are built during the copy. */
function earlyPostDataMinBytes(o: DatabaseRunContext['options']): number {
  return Math.min(EARLY_POST_DATA_MIN_BYTES, o.splitThresholdBytes ?? DEFAULT_SPLIT_THRESHOLD_BYTES);
}

/**
 * The per-table post-data of the larger tables (and leaf partitions) this run copies
 * (table-post-data.ts; at least 16 MB, or the split threshold when that is
 * lower), sharing the --jobs budget with the copy; none when the archive is
 * gone (the post-data phase then dumps it again and builds everything).
 */
async function earlyPostData(r: PhaseRun): Promise<{ budget: Budget; post?: TablePostData }> {
  const { x, toolOpts, archive } = r;
  const { d, options: o } = x;
  const budget = createBudget(o.jobs);
  if (!archiveExists(archive)) return { budget };
  const minBytes = earlyPostDataMinBytes(o);
  const todo = earlyUnits(x.tables, minBytes).filter((u) => d.tables[u.root]?.status !== 'done');
  if (!todo.length) return { budget };
  const entries = await r.postDataList.get();
  // A table copied again after a resume that lost its slot may still have the items built for its first copy.
  const items = await withPresentPostData(x, entries, (s, present) => ownPostDataItems(s, entries.filter((e) => !present.has(e.dumpId)), todo));
  const post = tablePostData({
    target: x.target.conn, archive, workDir: statePaths(o.stateDir).work, base: encodeURIComponent(d.sourceDatabase), items, units: todo, budget,
    toolOpts, progress: x.progress, progressParent: `init/${d.sourceDatabase}/data`, analyzed: r.analyzedThisRun,
  });
  return { budget, post };
}

async function copyData(
  x: DatabaseRunContext,
  holder: SnapshotHolder,
  copiedThisRun: Set<string>,
  mark: InitMark | null,
  early: { budget: Budget; post?: TablePostData },
  analyzed: Set<string>,
  readAhead?: ReadAhead,
): Promise<string> {
  const { d, store, options: o } = x;
  // Reading ahead ends where the copy begins; the part being read is still handed over if it is done in time.
  void readAhead?.stop();
  const { tables: inputs, plan: planOpts } = copyInputs(x);
  const todo = inputs.map((i) => i.table);
  if (!todo.length) return 'nothing left to copy';
  // Plan inside the snapshot, so that parts are recorded before any of them is copied.
  // Small plain tables are analysed as their copy finishes (early-analyze.ts), unless their statistics need post-data objects.
  const analyzeCandidates = todo.filter((t) => t.relkind === 'r' && t.bytes < earlyPostDataMinBytes(o));
  const { plans, postDataStats } = await withClient(
    x.source.conn,
    async (src) => {
      await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(holder.snapshotName)}`);
      const planned = await planCopy(src, inputs, planOpts);
      await recheckForeignKeys(x, src);
      const withStats = await tablesWithPostDataStatistics(src, analyzeCandidates.map((t) => t.oid));
      await src.query('COMMIT');
      return { plans: planned, postDataStats: withStats };
    },
    { label: 'the source', settings: { ...CANONICAL_SETTINGS } },
  );
  const analyzer = earlyAnalyzer(
    x.target.conn,
    analyzeCandidates.filter((t) => !postDataStats.has(t.oid)).map((t) => ({ key: tableKey(t.schema, t.name), schema: t.schema, name: t.name, bytes: t.bytes })),
    analyzed,
  );
  await store.update(() => {
    for (const p of plans) {
      const t = d.tables[p.key]!;
      t.status = 'copying';
      t.parts = p.parts.map((part) => ({ id: part.id, status: 'pending', rows: 0, bytes: 0 }));
      t.rows = 0;
      t.bytes = 0;
      t.seconds = 0;
    }
  });
  // Before any row is copied: a resume copies these tables again under a new snapshot and writes their marks again.
  if (mark) await withClient(x.target.conn, (c) => writeInitMarks(c, todo, mark), { label: 'the target' });
  const { budget, post } = early;
  const records = checkpointCallbacks(x, copiedThisRun, post, analyzer);
  let report;
  try {
    report = await copyTables({
      ...planOpts,
      budget,
      source: x.source.conn,
      target: x.target.conn,
      snapshot: holder.snapshotName,
      tables: inputs,
      plan: plans,
      jobs: o.jobs,
      signal: x.signal,
      progress: x.progress,
      progressId: `init/${d.sourceDatabase}/data`,
      onPartDone: records.onPartDone,
      onTableDone: records.onTableDone,
      ...(readAhead ? { readAhead } : {}),
    });
    await records.recorded();
  } catch (err) {
    post?.stop();
    await records.recorded().catch(() => {});
    await Promise.all([post?.settle().catch(() => {}), analyzer.finish()]);
    throw err;
  }
  const [built = 0] = await Promise.all([post?.settle(), analyzer.finish()]);
  const ahead = readAhead?.used ? `; ${readAhead.used} read while the schema was restored` : '';
  return `${report.tables.length} tables, ${report.rows} rows, ${formatBytes(report.bytes)}${built ? `; ${built} indexes and constraints built as tables finished` : ''}${ahead}`;
}

/** The tables the data phase copies (not schema-only, not done) with their filters, and the plan's options. */
function copyInputs(x: DatabaseRunContext): { tables: CopyTableInput[]; plan: CopyPlanOptions } {
  const { d, options: o } = x;
  const todo = x.tables.filter((t) => !t.schemaOnly && d.tables[tableKey(t.schema, t.name)]?.status !== 'done');
  return {
    tables: todo.map((t) => ({ table: t, filter: d.filters[tableKey(t.schema, t.name)] })),
    // With jobs, a table larger than one worker's share is split too, so that one table cannot keep a worker busy alone.
    plan: { sourceMajor: x.source.identity.major, targetMajor: x.target.identity.major, splitThresholdBytes: o.splitThresholdBytes, maxParts: o.maxParts, jobs: o.jobs },
  };
}

/**
 * What is recorded as parts and tables finish, and each finished table's own post-data queued.
 * A worker does not wait for its table's record to reach the disk (an fsync'd rewrite of the state,
 * ~10 ms here, which dominated databases of many small tables): a crash before the record only
 * means that a resume copies that committed table again, TRUNCATE first. For the same reason the
 * table-done records are paced (StateStore.record). `recorded()` writes what waits at once, waits for
 * every record and reports the first failure.
 */
function checkpointCallbacks(
  x: DatabaseRunContext,
  copiedThisRun: Set<string>,
  post: TablePostData | undefined,
  analyzer: EarlyAnalyzer,
): Pick<CopyTablesOptions, 'onPartDone' | 'onTableDone'> & { recorded(): Promise<void> } {
  const { d, store } = x;
  const pending = new Set<Promise<void>>();
  let failure: { err: unknown } | undefined;
  // Parts committed per leaf partition: a leaf whose parts are all in gets its own post-data (table-post-data.ts).
  const leafParts = new Map<string, number>();
  const leafDone = (plan: TableCopyPlan, part: TablePart): string | undefined => {
    if (plan.table.relkind !== 'p') return undefined;
    const key = tableKey(part.relation.schema, part.relation.name);
    const n = (leafParts.get(key) ?? 0) + 1;
    leafParts.set(key, n);
    return n === part.count ? key : undefined;
  };
  return {
    recorded: async () => {
      void store.flush().catch(() => {}); // its failure reaches the records that wait for it
      while (pending.size) await Promise.all([...pending]);
      if (failure) throw failure.err;
    },
    onPartDone: (plan, part, r) => {
      const t = d.tables[plan.key]!;
      const p = t.parts.find((q) => q.id === part.id);
      if (p) Object.assign(p, { status: 'done', rows: r.rows, bytes: r.bytes });
      t.rows += r.rows;
      t.bytes += r.bytes;
      // A resume copies an unfinished table whole, leaves included: a leaf's items may then already exist,
      // which the post-data phase allows for (entriesPresentOnTarget), so a leaf's need not wait for its table.
      const leaf = leafDone(plan, part);
      if (leaf) post?.tableDone(leaf);
      // The only part of a table: the table-done write follows at once, and a
      // resume copies an unfinished table whole anyway, so this one is not saved.
      if (t.parts.length <= 1) return undefined;
      const partial = t.parts.some((q) => q.status !== 'done');
      return store.save().then(() => (partial ? faultPoint('init.copy.mid-split') : undefined));
    },
    onTableDone: (plan, r) => {
      copiedThisRun.add(plan.key);
      const record: Promise<void> = store
        .record(() => {
          const t = d.tables[plan.key]!;
          t.status = 'done';
          t.rows = r.rows;
          t.bytes = r.bytes;
          t.seconds = r.ms / 1000;
        })
        .then(() => {
          faultPoint('init.between-tables');
          // Only once the table is recorded done: a resume never copies again a table whose indexes it built.
          post?.tableDone(plan.key);
          analyzer.tableDone(plan.key);
        })
        .catch((err: unknown) => {
          failure ??= { err };
        })
        .finally(() => pending.delete(record));
      pending.add(record);
    },
  };
}

/**
 * The post-data entries already on the target (after a stray pg_restore of a
 * killed run is stopped), handed to `fn` with the open source session.
 */
function withPresentPostData<T>(
  x: DatabaseRunContext,
  entries: Parameters<typeof entriesPresentOnTarget>[2],
  fn: (source: pg.Client, present: Awaited<ReturnType<typeof entriesPresentOnTarget>>) => Promise<T>,
): Promise<T> {
  return withClients(x, async (s, t) => {
    await stopStrayRestores(t);
    return fn(s, await entriesPresentOnTarget(s, t, entries));
  });
}

/** A source and a target session, opened side by side, both closed after `fn`. */
async function withClients<T>(x: DatabaseRunContext, fn: (source: pg.Client, target: pg.Client) => Promise<T>): Promise<T> {
  const [s, t] = await Promise.allSettled([acquireClient(x.source.conn, { label: 'the source' }), acquireClient(x.target.conn, { label: 'the target' })]);
  let ok = false;
  try {
    if (s.status === 'rejected') throw s.reason;
    if (t.status === 'rejected') throw t.reason;
    const result = await fn(s.value.client, t.value.client);
    ok = true;
    return result;
  } finally {
    await Promise.all([s, t].map((c) => (c.status === 'fulfilled' ? c.value.release(ok) : undefined)));
  }
}

/**
 * The own items (indexes, key and check constraints) of the plain tables below the size whose items
 * are built during the copy, built as SQL scripts (restoreScripted): one session per job, the tables
 * spread over them by size. Returns the dump ids built; the rest is left to pg_restore.
 */
async function buildAsScripts(x: DatabaseRunContext, archive: string, toolOpts: SchemaToolOptions, entries: TocEntry[], listPrefix: string): Promise<Set<number>> {
  const small = x.tables.filter((t) => t.relkind === 'r' && t.bytes < EARLY_POST_DATA_MIN_BYTES);
  const units = earlyUnits(small, 0);
  if (!units.length || !entries.length) return new Set();
  const own = await withClient(x.source.conn, (s) => ownPostDataItems(s, entries, units), { label: 'the source' });
  if (!own.size) return new Set();
  const bytes = new Map(small.map((t) => [tableKey(t.schema, t.name), t.bytes]));
  // Largest first onto the lightest bin; a table's items stay together (they lock the same table).
  const bins = Array.from({ length: Math.max(1, x.options.jobs) }, () => ({ bytes: 0, items: [] as TocEntry[] }));
  for (const [key, items] of [...own].sort((a, b) => (bytes.get(b[0]) ?? 0) - (bytes.get(a[0]) ?? 0))) {
    const bin = bins.reduce((m, b) => (b.bytes < m.bytes ? b : m));
    bin.bytes += (bytes.get(key) ?? 0) + 1;
    bin.items.push(...items);
  }
  const opts = { ...toolOpts, targetMajor: x.target.identity.major };
  let left = await restoreScripted(x.target.conn, archive, bins.map((b) => b.items), listPrefix, opts);
  // A script whose outcome is unknown (the connection failed around its COMMIT) may have built its items.
  if (left.length) {
    const present = await withPresentPostData(x, left, (_s, p) => Promise.resolve(p));
    left = left.filter((e) => !present.has(e.dumpId));
  }
  const leftIds = new Set(left.map((e) => e.dumpId));
  return new Set([...own.values()].flat().map((e) => e.dumpId).filter((id) => !leftIds.has(id)));
}

/**
 * A schema-only archive has no MATERIALIZED VIEW DATA entries (pg_dump counts them as data): every materialized view
 * arrives empty, and a query on it fails ("has not been populated"). Those populated on the source are refreshed here,
 * last, each after the views it reads, as pg_restore does at the end of a full restore; WITH NO DATA ones stay so.
 */
async function populateMaterializedViews(x: DatabaseRunContext): Promise<number> {
  const views = await withClient(x.source.conn, populatedMaterializedViews, { label: 'the source' });
  if (!views.length) return 0;
  const r = await withClient(x.target.conn, (c) => refreshMaterializedViews(c, views), { label: 'the target' });
  for (const f of r.failed) x.warn(`materialized view left unpopulated on the target: ${f}; REFRESH MATERIALIZED VIEW it there once the cause is fixed`);
  return r.refreshed;
}

/** The name in a TOC line of pg_restore --list ("215; 0 16390 EVENT TRIGGER - audit_ddl postgres" → audit_ddl). */
function tocName(line: string): string {
  const words = line.split(' ');
  return words[words.length - 2] ?? line;
}

async function restorePostData(x: DatabaseRunContext, archive: string, toolOpts: SchemaToolOptions, entries: TocEntry[]): Promise<string> {
  const { d, options: o } = x;
  const present = await withPresentPostData(x, entries, (_s, p) => Promise.resolve(p));
  // pgferry's own publication belongs to the source side of this migration, not to the copy.
  const own = (e: { desc: string; line: string }) => e.desc.startsWith('PUBLICATION') && e.line.split(' ').some((w) => isPgferryName(w));
  const todo = entries.filter((e) => !present.has(e.dumpId) && !own(e));
  const isFk = (desc: string) => desc === 'FK CONSTRAINT';
  const isLate = (desc: string) => desc === 'COMMENT' || desc === 'SECURITY LABEL';
  // Event triggers come after everything that is DDL, disabled (shared/event-triggers.ts); comments on them after that.
  const isEventTrigger = (desc: string) => desc === 'EVENT TRIGGER';
  const work = statePaths(o.stateDir).work;
  const base = encodeURIComponent(d.sourceDatabase);
  const pass1 = todo.filter((e) => !isFk(e.desc) && !isLate(e.desc) && !isEventTrigger(e.desc));
  const scripted = await buildAsScripts(x, archive, toolOpts, pass1, path.join(work, `${base}.post-data.script`));
  await restoreEntries(x.target.conn, archive, pass1.filter((e) => !scripted.has(e.dumpId)), path.join(work, `${base}.post-data.list`), o.jobs, toolOpts, 'indexes and constraints');
  faultPoint('init.post-data');

  const fkOids = new Set(entries.filter((e) => isFk(e.desc)).map((e) => e.oid));
  const fks = x.fks.filter((fk) => fkOids.has(fk.oid));
  const made = await createForeignKeys({
    target: x.target.conn,
    fks,
    notValidByScope: new Set(d.notValidForeignKeys.filter((k) => k.reason === 'filter').map(fkKey)),
    mixedSnapshots: d.snapshotsUsed > 1,
    jobs: o.jobs,
    signal: x.signal,
    warn: x.warn,
  });
  const resumed = made.filter((m) => m.reason === 'resume');
  if (resumed.length) {
    await x.store.update(() => {
      for (const m of resumed) if (!d.notValidForeignKeys.some((k) => fkKey(k) === fkKey(m))) d.notValidForeignKeys.push(m);
    });
  }
  const triggers = todo.filter((e) => isEventTrigger(e.desc));
  const restored = await restoreEventTriggers(x.target.conn, archive, triggers, path.join(work, `${base}.event-triggers.list`), { ...toolOpts, targetMajor: x.target.identity.major });
  if (restored === 'not-superuser') {
    x.warn(`event triggers not created on the target (only a superuser may): ${triggers.map((e) => tocName(e.line)).join(', ')}; ` +
      'create them there as a superuser (pg_restore --section=post-data of the source\'s schema has them), disabled until cutover');
  }
  // A comment on an event trigger that was not created would fail.
  const late = todo.filter((e) => isLate(e.desc) && !(restored === 'not-superuser' && / EVENT TRIGGER /.test(e.line)));
  await restoreEntries(x.target.conn, archive, late, path.join(work, `${base}.comments.list`), 1, toolOpts, 'comments');
  const views = await populateMaterializedViews(x);
  const skipped = entries.length - todo.length;
  const notValid = d.notValidForeignKeys.length;
  return `${entries.length - skipped} items, ${fks.length} foreign keys${notValid ? ` (${notValid} NOT VALID)` : ''}` +
    `${views ? `, ${plural(views, 'materialized view')} populated` : ''}${skipped ? `, ${skipped} already present` : ''}`;
}

