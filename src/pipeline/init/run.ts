/**
 * `init`: one consistent snapshot of schema and data, copied to the target.
 *
 * For the whole run: both sides probed, client tools checked, databases and
 * tables resolved, the run lock taken and the checkpoint loaded (a resume must
 * be the same migration) or created — after the foreign keys the scope would
 * break were checked and, interactively, the size estimate confirmed. Then
 * roles once per target server, then each database in turn (database.ts).
 * Nothing here prints: progress goes to the ProgressSink, the result is a
 * typed report.
 */
import type pg from 'pg';
import type { ScopeSpec, ScopeTable } from '../../config/scope.js';
import { resolveTables, rulesFor, scopeHash } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { parseJobs } from '../../config/jobs.js';
import { faultPoint } from '../../fault.js';
import { shutdownSignal } from '../../lifecycle.js';
import { warningCollector, type ProgressSink } from '../shared/progress.js';
import { describeObjectCounts } from '../../postgres/catalog/databases.js';
import { listForeignKeys, type ForeignKey } from '../../postgres/catalog/foreign-keys.js';
import type { CatalogTable } from '../../postgres/catalog/tables.js';
import { CANONICAL_SETTINGS, withClient } from '../../postgres/connect.js';
import { keepingSessions } from '../../postgres/session-keeper.js';
import { describeConn, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { displayName } from '../../postgres/identifiers.js';
import { sameServer, type ServerIdentity } from '../../postgres/probe.js';
import { forDatabase } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';
import { gatherTablespaces } from '../../postgres/catalog/tablespaces.js';
import { assertToolCanDump, prefetchTools, requireTool } from '../../postgres/tools.js';
import {
  acquireLock, assertSameRun, discardState, loadState, phaseBefore, saveState, StateStore, STATE_VERSION, tableKey, type DatabaseState, type RunIdentity, type RunState,
} from '../../state/checkpoint.js';
import { objectNames } from '../../state/object-names.js';
import { probeSide, scopePairs, sourceConnFor } from '../shared/pairs.js';
import { planCopy } from './copy-plan.js';
import { initDatabase, type DatabaseReport, type DatabaseRunContext } from './database.js';
import { checkForeignKeys, type ForeignKeyProblem } from '../shared/foreign-key-check.js';
import { assertFiltersPlan, effectiveFilters, fixTimeCutoffs } from '../shared/filters.js';
import { ESTIMATE_BYTES_PER_SECOND_PER_JOB, estimateSeconds, plannedTables, type EstimateBasis, type InitPlan, type PlannedDatabase } from './plan.js';
import { SAMPLE_MIN_TOTAL_BYTES, sampleReadRate } from './sample-rate.js';
import type { TableCopyPlan } from './copy-plan.js';
import { checkReplication, type ReplicationCheck } from './publication.js';
import { copyRoles, dumpRoles, type RolesReport } from './roles.js';
import { dropSlot, findSlot } from '../shared/slot.js';
import { inspectTargetDatabase } from './target-db.js';
import { assertScopeAccepted, assertTargetsEmpty, blocksInit, planRefusals, slotRefusal, tablespaceRefusal } from './refusals.js';

export interface InitConfirmations {
  /** Before copying, on a fresh run: the plan with its size estimate. false stops (exit 2). */
  startCopy?: (plan: InitPlan) => Promise<boolean>;
  /** Before dropping a non-empty target database (only with --drop-existing). */
  dropDatabase?: (database: string, contents: string) => Promise<boolean>;
  /** Before dropping the slots of an earlier run (--restart). */
  dropSlots?: (slots: string[]) => Promise<boolean>;
}

export interface InitOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope: ScopeSpec;
  stateDir: string;
  pgBinDir?: string | undefined;
  jobs: number;
  noSync: boolean;
  /** timestamp: no slot or publication (noSync); each table's first mark is recorded on the target for sync --method timestamp. */
  method?: 'logical' | 'timestamp';
  noOwner: boolean;
  noPrivileges: boolean;
  noRoles: boolean;
  fkNotValid: boolean;
  /** Restore each relation into the tablespace it uses on the source (each must exist on the target). */
  keepTablespaces?: boolean;
  /** ALTER TABLE … REPLICA IDENTITY FULL on streamed tables without a row identity (instead of refusing them). */
  setReplicaIdentityFull?: boolean;
  dropExisting: boolean;
  restart: boolean;
  dryRun: boolean;
  splitThresholdBytes?: number | undefined;
  maxParts?: number | undefined;
  signal?: AbortSignal;
  progress?: ProgressSink;
  confirm?: InitConfirmations;
}

export interface InitReport {
  dryRun: boolean;
  method: 'logical' | 'timestamp';
  /** This run continued an earlier one. */
  resumed: boolean;
  stateDir: string;
  source: { endpoint: string; major: number; systemIdentifier: string };
  target: { endpoint: string; major: number; systemIdentifier: string };
  /** Set for --dry-run (and shown before the confirmation). */
  plan: InitPlan | null;
  roles: RolesReport | null;
  databases: DatabaseReport[];
  /** Seconds of this run per phase, summed over databases. */
  phaseSeconds: Record<string, number>;
  seconds: number;
  warnings: string[];
  /** What init refuses for this plan, one line each (--dry-run: exit 2 when any); empty for a run that went ahead. */
  refusals: string[];
}

interface DatabaseContext {
  source: string;
  target: string;
  sourceConn: ResolvedConnInfo;
  targetConn: ResolvedConnInfo;
  tables: ScopeTable[];
  allTables: CatalogTable[];
  excluded: string[];
  fks: ForeignKey[];
}

/**
 * Probe both servers. The target database usually does not exist yet: then the
 * target server is probed through a maintenance database. (A copy onto itself
 * is refused per database pair below, once the target names are known.)
 */
async function probeSides(source: ResolvedConnInfo, target: ResolvedConnInfo): Promise<{ source: ServerIdentity; target: ServerIdentity }> {
  const probeTarget = async (): Promise<ServerIdentity> => {
    let first: unknown;
    for (const db of [target.dbname, 'postgres', 'template1']) {
      try {
        return await probeSide(db === target.dbname ? target : forDatabase(target, db), 'target');
      } catch (err) {
        first ??= err;
        if (sqlstate((err as Error).cause ?? err) !== '3D000') break;
      }
    }
    throw first;
  };
  const [s, t] = await Promise.all([probeSide(source, 'source'), probeTarget()]);
  return { source: s, target: t };
}

function sideRecord(id: ServerIdentity, conn: ResolvedConnInfo) {
  return { systemIdentifier: id.systemIdentifier, endpoint: describeConn(conn), major: id.major };
}

type ServerIds = { source: ServerIdentity; target: ServerIdentity };
type DatabasePair = Pick<DatabaseContext, 'source' | 'target' | 'sourceConn' | 'targetConn'>;

/** The scope of every database resolved against the source's catalog, with what the checks found. */
interface ResolvedScopes {
  contexts: DatabaseContext[];
  cutoffs: Record<string, Record<string, string>>;
  filters: Record<string, Record<string, string>>;
  problems: Record<string, ForeignKeyProblem[]>;
  replication: Record<string, ReplicationCheck>;
  /** --keep-tablespaces: the tablespaces each database's relations use on the source. */
  tablespaces: Record<string, string[]>;
}

/** init: its steps hand each other their sessions (session-keeper.ts); all are closed when it ends. */
export function runInit(o: InitOptions): Promise<InitReport> {
  return keepingSessions(() => initRun(o));
}

async function initRun(o: InitOptions): Promise<InitReport> {
  const started = performance.now();
  const signal = o.signal ?? shutdownSignal;
  const progress: ProgressSink = o.progress ?? (() => {});
  const { warnings, warn } = warningCollector(progress);
  parseJobs(o.jobs);

  // The tools' --version runs (process starts) overlap with connecting to both sides.
  // The probes' connections are opened first: a tool's start blocks this thread for a fork (10 – 15 ms on a small VM).
  const probing = probeSides(o.source, o.target);
  const tools = new Promise((r) => setImmediate(r)).then(() => prefetchTools(o.noRoles ? ['pg_dump', 'pg_restore'] : ['pg_dump', 'pg_restore', 'pg_dumpall'], o.pgBinDir));
  const [ids] = await Promise.all([probing, tools]);
  checkClientTools(o, ids.source.major);
  const pairs = await databasePairs(o, ids);

  const release = o.dryRun ? undefined : await acquireLock(o.stateDir);
  try {
    const run = await loadRun(o, ids, pairs, progress);
    const { identity } = run;
    let state = run.state;
    const resumed = !!state;
    // pg_dumpall (a process start and a source session) runs while the scope is resolved and checked; the roles phase then only applies its script.
    const roleScript = !o.dryRun && !o.noRoles && state?.roles !== 'done'
      ? dumpRoles({ source: o.source, sourceMajor: ids.source.major, pgBinDir: o.pgBinDir, signal })
      : undefined;
    roleScript?.catch(() => {}); // awaited by the roles phase; a run that stops before it has nothing to report about it
    // A fresh run needs empty target databases: asked while the scope is resolved, reported after the scope's own refusals.
    const targetsEmpty = resumed || o.dryRun ? undefined : assertTargetsEmpty(o.target, pairs.map((p) => p.target), ids.target.major, o.dropExisting);
    targetsEmpty?.catch(() => {}); // awaited by refuseOrConfirm
    const slots = o.noSync ? Promise.resolve(null) : slotRefusal(o.source, slotsWanted(ids, pairs, state));
    slots.catch(() => {}); // awaited below
    const scopes = await resolveScopes(o, ids, pairs, state, warn);

    const needPlan = o.dryRun || (!resumed && !!o.confirm?.startCopy);
    const plan = needPlan ? await makePlan(o, ids, scopes.contexts, scopes.filters, scopes.problems, scopes.replication, state) : null;
    const spaces = await tablespaceRefusal(forDatabase(o.target, ids.target.database), scopes.tablespaces);
    if (o.dryRun) {
      return {
        dryRun: true, method: o.method ?? 'logical', resumed, stateDir: o.stateDir, source: identity.source, target: identity.target, plan, roles: null,
        databases: [], phaseSeconds: {}, seconds: (performance.now() - started) / 1000, warnings,
        refusals: [
          ...planRefusals(plan!.databases, o.dropExisting), ...[await slots].flatMap((r) => (r ? [`${r.message}; ${r.hint}`] : [])),
          ...(spaces ? [`${spaces.message}; ${spaces.hint}`] : []),
        ],
      };
    }
    const noRoom = await slots;
    if (noRoom) throw new UsageError(noRoom.message, { hint: noRoom.hint });
    if (spaces) throw spaces;
    await refuseOrConfirm(o, scopes, resumed, plan, warn, targetsEmpty);
    const dbOptions = await confirmDrops(o, ids, scopes, resumed);

    if (!state) {
      state = newState(identity, o, scopes.contexts, scopes.cutoffs, scopes.filters, scopes.problems);
      await saveState(o.stateDir, state);
    }
    const store = new StateStore(o.stateDir, state);

    const phaseSeconds: Record<string, number> = {};
    const roles = await rolesPhase(o, ids, state, store, signal, progress, warn, phaseSeconds, roleScript);
    const reports: DatabaseReport[] = [];
    for (const ctx of scopes.contexts) {
      const report = await initDatabase(databaseRunContext(dbOptions, ids, ctx, state.databases[ctx.source]!, store, signal, progress, warn));
      for (const [k, v] of Object.entries(report.runPhaseSeconds)) phaseSeconds[k] = (phaseSeconds[k] ?? 0) + v;
      reports.push(report);
    }
    return {
      dryRun: false, method: o.method ?? 'logical', resumed, stateDir: o.stateDir, source: identity.source, target: identity.target, plan, roles,
      databases: reports, phaseSeconds, seconds: (performance.now() - started) / 1000, warnings, refusals: [],
    };
  } finally {
    await release?.();
  }
}

/** The names of pgferry's objects for one database pair (slot, publication, subscription, origin). */
function pairNames(ids: ServerIds, source: string, target: string): ReturnType<typeof objectNames> {
  return objectNames({
    sourceSystemIdentifier: ids.source.systemIdentifier, sourceDatabase: source,
    targetSystemIdentifier: ids.target.systemIdentifier, targetDatabase: target,
  });
}

/** The slots init would use: one per database that still takes a snapshot (an earlier run's are reused when they exist). */
function slotsWanted(ids: ServerIds, pairs: DatabasePair[], state: RunState | undefined): string[] {
  return pairs
    .filter((p) => phaseBefore(state?.databases[p.source]?.phase ?? 'pending', 'post-data'))
    .map((p) => pairNames(ids, p.source, p.target).slot);
}

/** The client tools init runs, and that they can dump the source's major. */
function checkClientTools(o: InitOptions, sourceMajor: number): void {
  const dump = requireTool('pg_dump', o.pgBinDir);
  assertToolCanDump(dump, sourceMajor);
  requireTool('pg_restore', o.pgBinDir);
  if (!o.noRoles) assertToolCanDump(requireTool('pg_dumpall', o.pgBinDir), sourceMajor);
}

/** The database pairs of the scope; a database copied onto itself is refused. */
async function databasePairs(o: InitOptions, ids: ServerIds): Promise<DatabasePair[]> {
  return (await scopePairs(o.source, o.target, o.scope.databases)).map((p) => {
    if (sameServer(ids.source, ids.target) && p.targetDatabase === p.sourceDatabase) {
      throw new UsageError(`source and target are the same server, so database "${p.sourceDatabase}" would be copied onto itself`, {
        hint: 'point --target at another server, or copy one database into a database of another name',
      });
    }
    return { source: p.sourceDatabase, target: p.targetDatabase, sourceConn: p.sourceConn, targetConn: p.targetConn };
  });
}

/** The checkpoint of an earlier run, if this run resumes it (the same migration), after --restart has discarded it. */
async function loadRun(o: InitOptions, ids: ServerIds, pairs: DatabasePair[], progress: ProgressSink): Promise<{ state: RunState | undefined; identity: RunIdentity }> {
  let state = await loadState(o.stateDir);
  if (state && o.restart && !o.dryRun) {
    await restart(state, o, progress);
    state = undefined;
  }
  const identity = {
    source: sideRecord(ids.source, o.source),
    target: sideRecord(ids.target, o.target),
    scopeHash: scopeHash(o.scope),
    options: {
      noSync: o.noSync, noOwner: o.noOwner, noPrivileges: o.noPrivileges, noRoles: o.noRoles, fkNotValid: o.fkNotValid, jobs: o.jobs,
      ...(o.keepTablespaces ? { keepTablespaces: true } : {}),
      ...(o.method === 'timestamp' ? { method: 'timestamp' as const } : {}),
    },
    databases: Object.fromEntries(pairs.map((p) => [p.source, p.target])),
  };
  if (state && !(o.restart && o.dryRun)) assertSameRun(state, identity, o.stateDir);
  else state = undefined;
  return { state, identity };
}

/** Resolve the scope of every database against the source's catalog. */
async function resolveScopes(
  o: InitOptions, ids: ServerIds, pairs: DatabasePair[], state: RunState | undefined, warn: (message: string) => void,
): Promise<ResolvedScopes> {
  const scopes: ResolvedScopes = { contexts: [], cutoffs: {}, filters: {}, problems: {}, replication: {}, tablespaces: {} };
  for (const p of pairs) {
    await withClient(
      p.sourceConn,
      async (c) => {
        const scope = await resolveTables(c, p.source, rulesFor(o.scope, p.source));
        const allTables = scope.all;
        // Empty search_path: constraint definitions come out schema-qualified.
        await c.query("SELECT pg_catalog.set_config('search_path', '', false)");
        const fks = await listForeignKeys(c);
        let tables = scope.tables;
        const prior = state?.databases[p.source];
        if (prior) {
          tables = tablesOfResumedRun(p.source, tables, prior, warn);
          scopes.cutoffs[p.source] = prior.timeFilterCutoffs;
          scopes.filters[p.source] = prior.filters;
        } else {
          await checkNewScope(c, o, ids, p.source, tables, fks, scopes);
        }
        if (o.keepTablespaces) scopes.tablespaces[p.source] = [...new Set((await gatherTablespaces(c, tables)).relations.map((r) => r.tablespace))];
        scopes.contexts.push({ ...p, tables, allTables, excluded: scope.excluded, fks });
      },
      { label: 'the source', settings: { ...CANONICAL_SETTINGS } },
    );
  }
  return scopes;
}

/** A resume copies the tables of the earlier run: new ones are left out (with a warning), missing ones are refused. */
function tablesOfResumedRun(source: string, resolved: ScopeTable[], prior: DatabaseState, warn: (message: string) => void): ScopeTable[] {
  let tables = resolved;
  const known = new Set(Object.keys(prior.tables));
  const appeared = tables.filter((t) => !known.has(tableKey(t.schema, t.name)));
  for (const t of appeared) warn(`table ${displayName(t.schema, t.name)} appeared on the source after this migration started; it is not copied (start over with --restart to include it)`);
  tables = tables.filter((t) => known.has(tableKey(t.schema, t.name)));
  const now = new Set(tables.map((t) => tableKey(t.schema, t.name)));
  const gone = [...known].filter((k) => !now.has(k));
  if (gone.length) {
    throw new UsageError(`tables of this migration no longer exist in source database "${source}": ${gone.join(', ')}`, {
      hint: 'start over with --restart',
    });
  }
  return tables;
}

/** A fresh scope: fix the time-filter cutoffs and filters, and check the foreign keys and replication it would break. */
async function checkNewScope(
  c: pg.Client, o: InitOptions, ids: ServerIds, source: string, tables: ScopeTable[], fks: ForeignKey[], scopes: ResolvedScopes,
): Promise<void> {
  const { cutoffs, filters, problems, replication } = scopes;
  cutoffs[source] = await fixTimeCutoffs(c, tables, {});
  filters[source] = effectiveFilters(tables, cutoffs[source]!);
  await assertFiltersPlan(c, tables, filters[source]!);
  await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    problems[source] = await checkForeignKeys(c, fks, tables, filters[source]!);
  } finally {
    await c.query('COMMIT').catch(() => {});
  }
  if (!o.noSync) replication[source] = await checkReplication(c, tables, filters[source]!, ids.source, !!o.setReplicaIdentityFull);
}

/** Stop on refusals, warn about what is accepted, then (interactively, on a fresh run) ask before copying. */
async function refuseOrConfirm(
  o: InitOptions, scopes: ResolvedScopes, resumed: boolean, plan: InitPlan | null, warn: (message: string) => void, targetsEmpty: Promise<void> | undefined,
): Promise<void> {
  const allProblems = Object.values(scopes.problems).flat();
  assertScopeAccepted(allProblems, scopes.replication, o.fkNotValid);
  await targetsEmpty;
  for (const p of allProblems) warn(`${p.message}; it is created NOT VALID (--fk-not-valid)`);
  for (const t of Object.values(scopes.replication).flatMap((r) => r.unlogged)) {
    warn(`${displayName(t.schema, t.name)} is unlogged: init copies it, but logical replication carries none of its later changes`);
  }
  if (!resumed && plan && o.confirm?.startCopy && !(await o.confirm.startCopy(plan))) {
    throw new UsageError('init cancelled before copying; nothing was written');
  }
}

/**
 * --drop-existing: ask about each non-empty target database now, before the state is written, so that a
 * refusal (no terminal and no --yes, or "no") leaves nothing behind. initDatabase does not ask again.
 */
async function confirmDrops(o: InitOptions, ids: ServerIds, scopes: ResolvedScopes, resumed: boolean): Promise<InitOptions> {
  const dropConfirmed = new Set<string>();
  if (!resumed && o.dropExisting) {
    for (const ctx of scopes.contexts) {
      const st = await inspectTargetDatabase(o.target, ctx.target, ids.target.major);
      if (st.empty) continue;
      if (!(await (o.confirm?.dropDatabase ?? (async () => false))(ctx.target, describeObjectCounts(st.objects)))) {
        throw new UsageError(`not dropping the target database "${ctx.target}"; nothing was written`);
      }
      dropConfirmed.add(ctx.target);
    }
  }
  return !dropConfirmed.size ? o : {
    ...o,
    confirm: { ...o.confirm, dropDatabase: async (db, contents) => dropConfirmed.has(db) || !!(await o.confirm?.dropDatabase?.(db, contents)) },
  };
}

/** Roles, once per target server (unless --no-roles or done by an earlier run). */
async function rolesPhase(
  o: InitOptions, ids: ServerIds, state: RunState, store: StateStore, signal: AbortSignal, progress: ProgressSink,
  warn: (message: string) => void, phaseSeconds: Record<string, number>, script: Promise<string> | undefined,
): Promise<RolesReport | null> {
  let roles: RolesReport | null = null;
  if (!o.noRoles && state.roles !== 'done') {
    const t0 = performance.now();
    progress({ kind: 'start', id: 'init/roles', title: 'roles' });
    roles = await copyRoles({ source: o.source, target: forDatabase(o.target, ids.target.database), sourceMajor: ids.source.major, pgBinDir: o.pgBinDir, signal, script });
    for (const s of roles.skipped) warn(`role statement skipped: ${s.reason}`);
    faultPoint('init.roles');
    await store.update((s) => (s.roles = 'done'));
    progress({ kind: 'end', id: 'init/roles', status: roles.skipped.length ? 'warn' : 'ok', detail: `${roles.created.length} created, ${roles.existing.length} existed` });
    phaseSeconds.roles = (performance.now() - t0) / 1000;
  }
  return roles;
}

function databaseRunContext(
  o: InitOptions, ids: ServerIds, ctx: DatabaseContext, d: DatabaseState, store: StateStore, signal: AbortSignal, progress: ProgressSink,
  warn: (message: string) => void,
): DatabaseRunContext {
  return {
    options: o, store, d, signal, progress, warn,
    source: { conn: ctx.sourceConn, identity: ids.source },
    target: { conn: ctx.targetConn, identity: ids.target },
    tables: ctx.tables, allTables: ctx.allTables, fks: ctx.fks,
    names: pairNames(ids, ctx.source, ctx.target),
  };
}

function newState(
  identity: Pick<RunState, 'source' | 'target' | 'scopeHash' | 'options'>,
  o: InitOptions,
  contexts: DatabaseContext[],
  cutoffs: Record<string, Record<string, string>>,
  filters: Record<string, Record<string, string>>,
  problems: Record<string, ForeignKeyProblem[]>,
): RunState {
  const now = new Date().toISOString();
  const databases: Record<string, DatabaseState> = {};
  for (const ctx of contexts) {
    databases[ctx.source] = {
      sourceDatabase: ctx.source,
      targetDatabase: ctx.target,
      slot: null,
      targetPrepared: false,
      timeFilterCutoffs: cutoffs[ctx.source] ?? {},
      filters: filters[ctx.source] ?? {},
      phase: 'pending',
      snapshotsUsed: 0,
      tables: Object.fromEntries(
        ctx.tables.map((t) => [
          tableKey(t.schema, t.name),
          {
            schema: t.schema, name: t.name, status: t.schemaOnly ? 'done' : 'pending', schemaOnly: t.schemaOnly,
            // Schema-only tables have no rows to re-synchronise.
            consistentWithSlot: t.schemaOnly, rows: 0, bytes: 0, seconds: 0, parts: [],
          },
        ]),
      ),
      largeObjects: 'pending',
      notValidForeignKeys: (problems[ctx.source] ?? [])
        .filter((p) => !blocksInit(p, o.fkNotValid))
        .map((p) => ({ schema: p.fk.schema, table: p.fk.table, name: p.fk.name, reason: 'filter' as const })),
      phaseSeconds: {},
      finishedAt: null,
    };
  }
  return {
    version: STATE_VERSION,
    createdAt: now,
    updatedAt: now,
    ...identity,
    scope: o.scope,
    roles: o.noRoles ? 'skipped' : 'pending',
    databases,
  };
}

/** --restart: drop the slots this state created (after confirmation), then forget the state. */
async function restart(state: RunState, o: InitOptions, progress: ProgressSink): Promise<void> {
  const slots: { db: string; name: string }[] = [];
  for (const d of Object.values(state.databases)) if (d.slot) slots.push({ db: d.sourceDatabase, name: d.slot.name });
  const existing: typeof slots = [];
  for (const s of slots) {
    const conn = sourceConnFor(o.source, s.db);
    if (await withClient(conn, (c) => findSlot(c, s.name), { label: 'the source' })) existing.push(s);
  }
  if (existing.length) {
    const names = existing.map((s) => s.name);
    const ok = o.confirm?.dropSlots ? await o.confirm.dropSlots(names) : false;
    if (!ok) throw new UsageError(`not starting over: the replication slot${names.length > 1 ? 's' : ''} ${names.join(', ')} of the earlier run would be dropped`);
    for (const s of existing) {
      await withClient(sourceConnFor(o.source, s.db), (c) => dropSlot(c, s.name), { label: 'the source' });
      progress({ kind: 'log', level: 'info', message: `dropped replication slot ${s.name} of the earlier run` });
    }
  }
  await discardState(o.stateDir);
  progress({ kind: 'log', level: 'info', message: `discarded the earlier state in ${o.stateDir}` });
}

async function makePlan(
  o: InitOptions,
  ids: { source: ServerIdentity; target: ServerIdentity },
  contexts: DatabaseContext[],
  filters: Record<string, Record<string, string>>,
  problems: Record<string, ForeignKeyProblem[]>,
  replication: Record<string, ReplicationCheck>,
  state: RunState | undefined,
): Promise<InitPlan> {
  const databases: PlannedDatabase[] = [];
  let largest: { plan: TableCopyPlan; ctx: DatabaseContext } | null = null;
  for (const ctx of contexts) {
    const prior = state?.databases[ctx.source];
    const done = new Set(prior ? Object.entries(prior.tables).filter(([, t]) => t.status === 'done').map(([k]) => k) : []);
    const plans = await withClient(ctx.sourceConn, (c) =>
      planCopy(
        c,
        ctx.tables.map((t) => ({ table: t, filter: filters[ctx.source]?.[tableKey(t.schema, t.name)] })),
        { sourceMajor: ids.source.major, targetMajor: ids.target.major, splitThresholdBytes: o.splitThresholdBytes, maxParts: o.maxParts, jobs: o.jobs },
      ),
    { label: 'the source' });
    const tables = plannedTables(plans, ctx.tables.filter((t) => t.schemaOnly), done);
    for (const p of plans) if (!done.has(p.key) && (!largest || p.estimatedBytes > largest.plan.estimatedBytes)) largest = { plan: p, ctx };
    let targetStatus: PlannedDatabase['targetStatus'] = 'prepared';
    let targetContents: string | null = null;
    if (!prior?.targetPrepared) {
      const st = await inspectTargetDatabase(o.target, ctx.target, ids.target.major);
      targetStatus = !st.exists ? 'missing' : st.empty ? 'empty' : 'not empty';
      if (!st.empty) targetContents = describeObjectCounts(st.objects);
    }
    databases.push({
      source: ctx.source,
      target: ctx.target,
      targetStatus,
      targetContents,
      slot: o.noSync ? null : pairNames(ids, ctx.source, ctx.target).slot,
      tables,
      excluded: ctx.excluded,
      estimatedBytes: tables.filter((t) => !t.done).reduce((n, t) => n + t.estimatedBytes, 0),
      foreignKeyProblems: (problems[ctx.source] ?? []).map((p) => ({
        constraint: p.fk.name,
        table: displayName(p.fk.schema, p.fk.table),
        references: displayName(p.fk.refSchema, p.fk.refTable),
        message: p.message,
        blocking: blocksInit(p, o.fkNotValid),
      })),
      replicationProblems: replication[ctx.source]?.problems ?? [],
      resume: prior ? { phase: prior.phase, tablesDone: done.size } : null,
    });
  }
  const all = databases.flatMap((d) => d.tables);
  const estimatedBytes = databases.reduce((n, d) => n + d.estimatedBytes, 0);
  const basis = estimatedBytes >= SAMPLE_MIN_TOTAL_BYTES && largest ? await sampleBasis(largest.ctx, largest.plan) : null;
  const estimateBasis: EstimateBasis = basis ?? { kind: 'nominal', bytesPerSecondPerJob: ESTIMATE_BYTES_PER_SECOND_PER_JOB };
  return {
    jobs: o.jobs,
    databases,
    estimatedBytes,
    estimatedSeconds: estimateSeconds(all, o.jobs, estimateBasis.bytesPerSecondPerJob),
    estimateBasis,
  };
}

/** The measured read rate of the largest table; an estimate is not worth failing init over, so errors give null. */
async function sampleBasis(ctx: DatabaseContext, plan: TableCopyPlan): Promise<EstimateBasis | null> {
  try {
    const r = await withClient(ctx.sourceConn, (c) => sampleReadRate(c, plan), { label: 'the source' });
    return r ? { kind: 'sampled', bytesPerSecondPerJob: r.bytesPerSecond, table: r.table } : null;
  } catch {
    return null;
  }
}

