/**
 * `sync`: native logical replication from init's snapshot onwards.
 *
 * Per database pair: check what would break (row identities, row filters,
 * tables missing on the target) before anything is created; bring the
 * publication to the tables that may start streaming at once; create the
 * subscription on init's slot (create_slot = false, copy_data = false); then
 * hand the tables that are not consistent with the slot (copied after an
 * interrupted init, or new to the scope with --copy-data) to PostgreSQL's own
 * table synchronisation: empty them on the target, add them to the
 * publication, REFRESH PUBLICATION WITH (copy_data = true). Finally wait until
 * every table replicates and the lag is small. See docs/architecture.md, "Sync".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { emptyScope, resolveTables, rulesFor, scopeHash, type ScopeSpec, type ScopeTable } from '../../config/scope.js';
import { NO_SIZES } from '../../postgres/catalog/tables.js';
import { OperationError, PgferryError, UsageError } from '../../errors.js';
import { faultPoint } from '../../fault.js';
import { shutdownSignal, throwIfShuttingDown } from '../../lifecycle.js';
import { warningCollector, type ProgressSink } from '../shared/progress.js';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName } from '../../postgres/identifiers.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import { acquireLock, loadState, tableKey, type DatabaseState, type RunState } from '../../state/checkpoint.js';
import { effectiveFilters, fixTimeCutoffs } from '../shared/filters.js';
import { dropSlot, findSlot, type SlotInfo } from '../shared/slot.js';
import { collectPair } from '../shared/health-facts.js';
import { DrainEstimate, formatLag } from '../../units.js';
import { assess, DEFAULT_MAX_LAG, type DatabaseStatus, type MaxLagLimits } from '../shared/health-verdict.js';
import {
  listCandidateSlots, originProgress, parseTablesyncSlot, readPublication, readSubscription, subscriptionTables, type SubscriptionInfo, type SubscriptionTable,
} from '../shared/replication-catalog.js';
import { checkRowFilters, identityProblems, identityRefusal, setReplicaIdentityFull, type IdentityProblem } from '../shared/replication-checks.js';
import { resolvePairs, type ReplicationPair } from '../shared/pairs.js';
import { addToPublication, ensurePublication, publishedTables, slotDecodable, type PublicationChange, type PublishedTable } from '../shared/publication.js';
import { changedDataRules, maskedSummary, streamingRefusal } from '../../config/data-rules-catalog.js';
import { installMaskTriggers } from '../shared/masking-target.js';
import { originPosition } from '../shared/replication-origin.js';
import { loadSyncRecord, saveSyncRecord, type SyncRecord } from '../../state/sync-record.js';
import {
  advanceOrigin, checkCustomConninfo, chooseBinary, chooseStreaming, createSubscription, dropSubscriptionKeepSlot, enableSubscription,
  passwordWarning, refreshSubscription, setSubscriptionConninfo, stopSubscription, subscriptionConninfo, type SubscriptionConninfo,
} from '../shared/subscription.js';
import { emptyTargetTables, locateTargetTables, nonEmptyTables, type TargetTable } from './target-tables.js';
import { isTransientServerError, TOLERATED_BREAK_MS } from './transient.js';

export interface SyncOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  /** The scope; undefined: the one init ran with (from the state directory). */
  scope?: ScopeSpec;
  stateDir: string;
  /** Let PostgreSQL's table synchronisation copy tables init did not copy (or all, without init). */
  copyData?: boolean;
  /** ALTER TABLE … REPLICA IDENTITY FULL on published tables without a row identity. */
  setReplicaIdentityFull?: boolean;
  /** Connection string the target server uses to reach the source (without password, for a server-side .pgpass). */
  subscriptionConninfo?: string;
  /** Recreate the subscription (the slot and the target's applied position are kept). */
  force?: boolean;
  /** Wait until every table replicates and the lag is within maxLag (default true). */
  wait?: boolean;
  /** Give up waiting after this many seconds (0: never). */
  waitTimeoutSeconds?: number;
  maxLag?: MaxLagLimits;
  pollMs?: number;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

/**
 * How a table reaches the stream:
 * snapshot  copied by init under the slot's snapshot: streams from the slot's consistent point
 * kept      already in the subscription (an earlier sync)
 * resync    copied by init, but not consistent with the slot: emptied, then copied by table synchronisation
 * copy      not copied by init (--copy-data): copied by table synchronisation
 */
export type TableRoute = 'snapshot' | 'kept' | 'resync' | 'copy';

export interface SyncTableReport {
  schema: string;
  name: string;
  route: TableRoute;
  filter: string | null;
}

export interface SyncDatabaseReport {
  sourceDatabase: string;
  targetDatabase: string;
  publication: { name: string; change: PublicationChange };
  slot: { name: string; createdBySubscription: boolean };
  subscription: {
    name: string;
    action: 'created' | 'recreated' | 'existing';
    binary: boolean | null;
    streaming: string | null;
    passwordInCatalog: boolean;
  };
  tables: SyncTableReport[];
  /** Emptying on the target before table synchronisation: TRUNCATE, DELETE (referenced by foreign keys), or nothing. */
  emptied: 'truncate' | 'delete' | 'none';
  replicaIdentityFull: string[];
  /** Unlogged tables: copied by init, but logical replication carries no changes of them. */
  unlogged: string[];
}

export interface SyncReport {
  command: 'sync';
  source: { endpoint: string; major: number };
  target: { endpoint: string; major: number };
  stateDir: string;
  databases: SyncDatabaseReport[];
  /** Status at the end of the wait (null with --no-wait). */
  final: { inSync: boolean; lag: string; databases: DatabaseStatus[] } | null;
  warnings: string[];
  seconds: number;
}

interface Ctx {
  o: SyncOptions;
  ids: { source: ServerIdentity; target: ServerIdentity };
  scope: ScopeSpec;
  scopeMatches: boolean;
  state: RunState | undefined;
  record: SyncRecord;
  progress: ProgressSink;
  warn: (m: string) => void;
}

export async function runSync(o: SyncOptions): Promise<SyncReport> {
  const started = performance.now();
  const signal = o.signal ?? shutdownSignal;
  const progress: ProgressSink = o.progress ?? (() => {});
  const { warnings, warn } = warningCollector(progress);
  checkCustomConninfo(o.subscriptionConninfo);

  const release = await acquireLock(o.stateDir);
  const reports: SyncDatabaseReport[] = [];
  let pairs: ReplicationPair[] = [];
  let ids: Ctx['ids'];
  try {
    const state = await loadState(o.stateDir);
    const scope = o.scope ?? state?.scope ?? emptyScope();
    const scopeMatches = !!state && state.scopeHash === scopeHash(scope);
    if (!scopeMatches && !o.copyData) {
      throw new UsageError(
        state
          ? `the scope differs from the one init copied (state in ${o.stateDir}): tables new to it have no data on the target`
          : `no init of this migration was found in ${o.stateDir}: there is no snapshot for the stream to continue from`,
        {
          hint: state
            ? 'run sync without scope flags (it uses init\'s scope), or add --copy-data to let PostgreSQL copy what init did not'
            : 'run pgferry init first (or pass the --state-dir it used), or add --copy-data to let PostgreSQL\'s table synchronisation copy every table',
        },
      );
    }
    const resolved = await resolvePairs(o.source, o.target, scope, state, o.stateDir);
    ids = resolved.ids;
    pairs = resolved.pairs;
    const record: SyncRecord = (await loadSyncRecord(o.stateDir)) ?? { version: 1, databases: {} };
    const ctx: Ctx = { o, ids, scope, scopeMatches, state, record, progress, warn };
    for (const pair of pairs) {
      throwIfShuttingDown(signal);
      const id = `sync/${pair.sourceDatabase}`;
      progress({ kind: 'start', id, title: `database ${pair.sourceDatabase} → ${pair.targetDatabase}: publication and subscription` });
      try {
        const r = await syncDatabase(ctx, pair);
        reports.push(r);
        const routes = countRoutes(r.tables);
        progress({ kind: 'end', id, status: 'ok', detail: `subscription ${r.subscription.action}; ${routes}` });
      } catch (err) {
        progress({ kind: 'end', id, status: 'fail', detail: (err as Error).message.split('\n')[0] });
        throw err;
      }
    }
  } finally {
    await release();
  }

  let final: SyncReport['final'] = null;
  if (o.wait !== false) {
    final = await waitUntilReplicating(pairs, ids!, o, signal, progress);
  }
  return {
    command: 'sync',
    source: { endpoint: ids!.source.endpoint, major: ids!.source.major },
    target: { endpoint: ids!.target.endpoint, major: ids!.target.major },
    stateDir: o.stateDir,
    databases: reports,
    final,
    warnings,
    seconds: (performance.now() - started) / 1000,
  };
}

function countRoutes(tables: SyncTableReport[]): string {
  const n = (r: TableRoute) => tables.filter((t) => t.route === r).length;
  const parts = [
    [n('snapshot'), 'from the snapshot'], [n('kept'), 'already subscribed'], [n('resync'), 'copied again by PostgreSQL'], [n('copy'), 'copied by PostgreSQL'],
  ].filter(([k]) => (k as number) > 0);
  return parts.length ? parts.map(([k, w]) => `${k} ${w}`).join(', ') : 'no tables';
}

/** One database pair being synced: its connections and init's state of it, passed from phase to phase. */
interface DbSync {
  x: Ctx;
  pair: ReplicationPair;
  db: string;
  names: ReplicationPair['names'];
  d: DatabaseState | undefined;
  src: pg.Client;
  tgt: pg.Client;
}

async function syncDatabase(x: Ctx, pair: ReplicationPair): Promise<SyncDatabaseReport> {
  const { o } = x;
  const db = pair.sourceDatabase;
  const names = pair.names;
  const d: DatabaseState | undefined = x.state?.databases[db];
  if (d && d.phase !== 'done') {
    throw new UsageError(`init of database "${db}" has not finished (it stopped in phase ${d.phase})`, {
      hint: 'run pgferry init again with the same flags and state directory: it resumes; then run sync',
    });
  }
  const src = await connect(pair.sourceConn, { label: 'the source', settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync', quietDdl: true });
  const tgt = await connect(pair.targetConn, { label: 'the target', applicationName: 'pgferry sync' });
  // A connection lost midway (a server restart, the network) is named by its side in the error.
  let lost: string | undefined;
  src.once('end', () => (lost ??= 'the connection to the source was lost'));
  tgt.once('end', () => (lost ??= 'the connection to the target was lost'));
  try {
    const s: DbSync = { x, pair, db, names, d, src, tgt };
    const { published, unlogged, pubScope } = await publishedScope(s);

    // Everything that would break is found before anything is created.
    const { idProblems, onTarget } = await checkPublishable(s, published, pubScope);
    const found = await subscriptionAndSlot(s);
    const { subTables, routes } = await routeTables(s, published, found);
    await checkCopyTables(s, published, routes, onTarget);

    // From here on, things are created.
    if (idProblems.length) await applyReplicaIdentityFull(s, idProblems);
    const { sub, action, slotName, conn, binary, streaming, publicationChange, createdBySubscription, emptied } =
      await subscribe(s, published, pubScope, onTarget, found, subTables, routes);

    x.record.databases[db] = {
      targetDatabase: pair.targetDatabase, subscription: sub.name, subscriptionOid: sub.oid, publication: names.publication, slot: slotName,
      tables: Object.fromEntries(published.map((p) => [tableKey(p.schema, p.name), p.filter])), updatedAt: new Date().toISOString(),
    };
    await saveSyncRecord(o.stateDir, x.record);

    return {
      sourceDatabase: db,
      targetDatabase: pair.targetDatabase,
      publication: { name: names.publication, change: publicationChange },
      slot: { name: slotName, createdBySubscription },
      subscription: { name: sub.name, action, binary: action === 'existing' ? null : binary, streaming: action === 'existing' ? null : streaming, passwordInCatalog: conn.hasPassword },
      tables: published.map((p) => ({ schema: p.schema, name: p.name, route: routes.get(tableKey(p.schema, p.name))!, filter: p.filter })),
      emptied,
      replicaIdentityFull: idProblems.map((p) => displayName(p.schema, p.name)),
      unlogged: unlogged.map((t) => displayName(t.schema, t.name)),
    };
  } catch (err) {
    if (lost && !(err instanceof PgferryError)) {
      throw new OperationError(`sync of database "${db}": ${lost} (${(err as Error).message})`, {
        hint: 'run sync again once both servers are reachable: it carries on with what this run created',
        cause: err,
      });
    }
    throw operationError(err, `sync of database "${db}"`);
  } finally {
    await Promise.all([src.end().catch(() => {}), tgt.end().catch(() => {})]);
  }
}

/** The tables of the scope the publication carries (with init's filters when the scope is init's), and the unlogged ones it cannot. */
async function publishedScope(s: DbSync): Promise<{ published: PublishedTable[]; unlogged: ScopeTable[]; pubScope: ScopeTable[] }> {
  const { x, db, d, src } = s;
  const scope = await resolveTables(src, db, rulesFor(x.scope, db), NO_SIZES);
  let filters: Record<string, string>;
  if (d && x.scopeMatches) filters = d.filters;
  else filters = effectiveFilters(scope.tables, await fixTimeCutoffs(src, scope.tables, d?.timeFilterCutoffs ?? {}));
  const { published, unlogged } = publishedTables(scope.tables, filters);
  for (const t of unlogged) {
    x.warn(`${displayName(t.schema, t.name)} is unlogged: logical replication carries none of its changes, so after the copy by init it is not kept in step`);
  }
  const byOid = new Map(scope.tables.map((t) => [t.oid, t]));
  const pubScope = published.map((p) => byOid.get(p.oid)!);
  return { published, unlogged, pubScope };
}

/** Row identities (refused unless --set-replica-identity-full), row filters, and every published table present on the target. */
async function checkPublishable(
  s: DbSync,
  published: PublishedTable[],
  pubScope: ScopeTable[],
): Promise<{ idProblems: IdentityProblem[]; onTarget: TargetTable[] }> {
  const { x, pair, src, tgt } = s;
  const { o, ids } = x;
  const idProblems = await identityProblems(src, pubScope);
  if (idProblems.length && !o.setReplicaIdentityFull) throw identityRefusal(idProblems);
  const fullRoots = new Set(idProblems.map((p) => p.rootOid));
  const canPublish = ids.source.superuser || pubScope.every((t) => t.isOwner);
  await checkRowFilters(src, pubScope, { major: ids.source.major, canPublish, fullIdentity: fullRoots });
  const maskingRefusal = streamingRefusal(ids.source.major, pubScope) ?? changedDataRules(x.state?.scope, x.scope, pair.sourceDatabase);
  if (maskingRefusal) throw maskingRefusal;
  const onTarget = await locateTargetTables(tgt, published);
  const missing = onTarget.filter((t) => t.oid === null);
  if (missing.length) {
    const list = missing.map((t) => displayName(t.schema, t.name));
    throw new UsageError(`${missing.length === 1 ? 'this table does' : `${missing.length} tables do`} not exist in target database "${pair.targetDatabase}": ${list.join(', ')}`, {
      hint:
        'create them first, e.g. pg_dump --schema-only ' + missing.map((t) => `--table='${displayName(t.schema, t.name)}'`).join(' ') +
        ` "<source>" | psql "<target>" (or run pgferry init for this scope)`,
    });
  }
  return { idProblems, onTarget };
}

/** The subscription and slot the stream continues from, after --force dropped the subscription. */
interface SubscriptionSlot {
  sub: SubscriptionInfo | undefined;
  slotName: string;
  slot: SlotInfo | undefined;
  /** The target's applied position carried over from the subscription --force dropped. */
  forcedOrigin: string | null;
  /** Tables that were replicating in the subscription --force dropped. */
  readyBefore: Set<string>;
  action: SyncDatabaseReport['subscription']['action'];
  /** Whether the subscription streams from the existing slot (init's, or the dropped subscription's). */
  useSlot: boolean;
}

/** Find the subscription and its slot (dropping the subscription with --force), and refuse a pair that cannot continue. */
async function subscriptionAndSlot(s: DbSync): Promise<SubscriptionSlot> {
  const { x, pair, db, names, d, src, tgt } = s;
  const { o } = x;
  let sub = await readSubscription(tgt, names.subscription);
  const slotName = sub?.slotName ?? d?.slot?.name ?? names.slot;
  const slot = await findSlot(src, slotName);
  let forcedOrigin: string | null = null;
  let readyBefore = new Set<string>();
  let action: SyncDatabaseReport['subscription']['action'] = sub ? 'existing' : 'created';
  if (sub && o.force) {
    ({ forcedOrigin, readyBefore } = await dropForRecreate(s, sub, slotName));
    sub = undefined;
    action = 'recreated';
  }
  if (sub && sub.slotName === null) {
    throw new UsageError(`subscription ${sub.name} in "${pair.targetDatabase}" has no slot (slot_name = NONE): an interrupted cleanup`, { hint: 'finish it with pgferry cleanup, or recreate it with pgferry sync --force' });
  }
  if (sub && !slot) {
    throw new UsageError(`replication slot ${slotName} of subscription ${sub.name} is gone from the source: changes made since are lost to the target`, {
      hint: 'start over: pgferry cleanup, then pgferry init --restart and pgferry sync',
    });
  }
  // Init's slot carries the stream only while it exists; without it (or without init) the subscription makes its own.
  const useSlot = !!slot && (!!sub || action === 'recreated' || (!!d?.slot && d.slot.name === slotName));
  if (!useSlot && !o.copyData) {
    throw new UsageError(
      d?.slot ? `replication slot ${d.slot.name} that init created is gone from the source` : `init ran without a replication slot for "${db}" (--no-sync)`,
      { hint: 'start over with pgferry init --restart (without --no-sync), or add --copy-data to let PostgreSQL copy every table again' },
    );
  }
  if (!useSlot && slot) {
    throw new UsageError(`a replication slot named ${slotName} exists on the source but belongs to no state of this migration`, { hint: 'remove it with pgferry cleanup, then run sync again' });
  }
  return { sub, slotName, slot, forcedOrigin, readyBefore, action, useSlot };
}

/** --force: drop the subscription but keep its slot, and note where it had got to. */
async function dropForRecreate(s: DbSync, sub: SubscriptionInfo, slotName: string): Promise<{ forcedOrigin: string | null; readyBefore: Set<string> }> {
  const { x, src, tgt } = s;
  const { ids } = x;
  // Recreate on the same slot; the target's applied position (its origin) carries over, so nothing is applied
  // twice. It is read once the workers have stopped: until then the apply worker moves it on.
  await stopSubscription(tgt, sub);
  const forcedOrigin = await originProgress(tgt, sub.oid);
  const readyBefore = new Set((await subscriptionTables(tgt, sub.oid)).filter((t) => t.state === 'r').map((t) => tableKey(t.schema, t.name)));
  await dropSubscriptionKeepSlot(tgt, sub.name);
  await dropTablesyncSlots(src, ids.source.major, sub.oid, ids.target.systemIdentifier);
  x.progress({ kind: 'log', level: 'info', message: `dropped subscription ${sub.name} (its slot ${slotName} and applied position are kept)` });
  return { forcedOrigin, readyBefore };
}

/** How each published table reaches the stream (see TableRoute). */
async function routeTables(
  s: DbSync,
  published: PublishedTable[],
  found: SubscriptionSlot,
): Promise<{ subTables: SubscriptionTable[]; routes: Map<string, TableRoute> }> {
  const { x, db, names, d, src, tgt } = s;
  const { ids } = x;
  const { sub, readyBefore, action, useSlot } = found;
  const subTables = sub ? await subscriptionTables(tgt, sub.oid) : [];
  const inSub = new Set(subTables.map((t) => tableKey(t.schema, t.name)));
  const pubBefore = await readPublication(src, names.publication, ids.source.major);
  const recordTables = x.record.databases[db]?.tables ?? {};
  const routes = new Map<string, TableRoute>();
  for (const p of published) {
    const key = tableKey(p.schema, p.name);
    const st = d?.tables[key];
    const initFilter = d ? (d.filters[key] ?? null) : null;
    let route: TableRoute;
    if (sub && inSub.has(key)) {
      route = key in recordTables && recordTables[key] !== p.filter ? (st ? 'resync' : 'copy') : 'kept';
    } else if (!sub && action === 'recreated' && readyBefore.has(key) && (!(key in recordTables) || recordTables[key] === p.filter)) {
      route = 'snapshot';
    } else if (
      !sub && useSlot && action === 'created' && st?.status === 'done' && st.consistentWithSlot && initFilter === p.filter &&
      (!pubBefore || pubBefore.tables.some((t) => t.oid === p.oid))
    ) {
      route = 'snapshot';
    } else if (st?.status === 'done') {
      route = 'resync';
    } else {
      route = 'copy';
    }
    routes.set(key, route);
  }
  return { subTables, routes };
}

/** Tables init did not copy are copied only with --copy-data, and only into tables empty on the target. */
async function checkCopyTables(s: DbSync, published: PublishedTable[], routes: Map<string, TableRoute>, onTarget: TargetTable[]): Promise<void> {
  const { x, tgt } = s;
  const { o } = x;
  const copyTables = published.filter((p) => routes.get(tableKey(p.schema, p.name)) === 'copy');
  if (copyTables.length && !o.copyData) {
    throw new UsageError(`init did not copy ${copyTables.map((t) => displayName(t.schema, t.name)).join(', ')} (not in its scope, or with another filter)`, {
      hint: 'add --copy-data to let PostgreSQL\'s table synchronisation copy them, or leave them out of the scope',
    });
  }
  const full = await nonEmptyTables(tgt, onTarget.filter((t) => copyTables.some((c) => c.schema === t.schema && c.name === t.name)));
  if (full.length) {
    throw new UsageError(`PostgreSQL would copy rows into tables that already hold rows on the target: ${full.map((t) => displayName(t.schema, t.name)).join(', ')}`, {
      hint: 'empty them on the target first (they were not copied by this migration\'s init), or leave them out of the scope',
    });
  }
}

/** --set-replica-identity-full: on the source, and on the target too. */
async function applyReplicaIdentityFull(s: DbSync, idProblems: IdentityProblem[]): Promise<void> {
  const { x, src, tgt } = s;
  const tables = idProblems.map((p) => ({ schema: p.schema, name: p.name }));
  await setReplicaIdentityFull(src, tables);
  // The target gets the same setting, so the schemas stay equal (and a stream back would work).
  const there = (await locateTargetTables(tgt, tables)).filter((t) => t.oid !== null);
  await setReplicaIdentityFull(tgt, there);
  x.progress({ kind: 'log', level: 'info', message: `REPLICA IDENTITY FULL set on ${tables.map((t) => displayName(t.schema, t.name)).join(', ')}` });
}

/** What the publication and subscription steps did, for the report and the sync record. */
interface Subscribed {
  sub: SubscriptionInfo;
  action: SyncDatabaseReport['subscription']['action'];
  slotName: string;
  conn: SubscriptionConninfo;
  binary: boolean;
  streaming: ReturnType<typeof chooseStreaming>;
  publicationChange: PublicationChange;
  createdBySubscription: boolean;
  emptied: SyncDatabaseReport['emptied'];
}

/** Bring the publication to the tables that stream at once, create (or update) the subscription, then hand over the others. */
async function subscribe(
  s: DbSync,
  published: PublishedTable[],
  pubScope: ScopeTable[],
  onTarget: TargetTable[],
  found: SubscriptionSlot,
  subTables: SubscriptionTable[],
  routes: Map<string, TableRoute>,
): Promise<Subscribed> {
  const { x, pair, db, names, src, tgt } = s;
  const { o, ids } = x;
  const { slotName, forcedOrigin, action, useSlot } = found;
  let sub = found.sub;
  // Masked columns are computed on the target before the subscription can apply a row (masking-target.ts).
  const masked = await installMaskTriggers(tgt, pubScope);
  if (masked.length) x.progress({ kind: 'log', level: 'info', message: `masked columns computed on the target for ${maskedSummary(pubScope).join(', ')}` });
  const immediate = published.filter((p) => ['snapshot', 'kept'].includes(routes.get(tableKey(p.schema, p.name))!));
  let deferred = published.filter((p) => ['resync', 'copy'].includes(routes.get(tableKey(p.schema, p.name))!));
  const conn = subscriptionConninfo(o.source, db, o.subscriptionConninfo);
  const pwWarning = passwordWarning(conn, names.subscription, pair.targetDatabase);
  const binary = chooseBinary(ids.source.major, ids.target.major, pubScope.flatMap((t) => t.columns.map((c) => c.typeOid)));
  const streaming = chooseStreaming(ids.source.major, ids.target.major);
  let publicationChange: PublicationChange;
  let createdBySubscription = false;
  let emptied: SyncDatabaseReport['emptied'] = 'none';

  if (!sub && useSlot) {
    publicationChange = await ensurePublication(src, names.publication, immediate, ids.source.major);
    faultPoint('sync.after-publication');
    // Only a publication made or changed now can be unreadable for the slot (init makes it before the slot), and the
    // peek is not free: it decodes up to the end of the slot's first transaction, all of it when that one is huge.
    if (publicationChange !== 'unchanged') await checkSlotDecodable(s, slotName);
    await createSubscription(tgt, {
      name: names.subscription, publication: names.publication, slot: slotName, conninfo: conn.conninfo, createSlot: false, copyData: false,
      enabled: false, binary, streaming, passwordNotRequired: passwordNotRequired(ids, conn),
    });
    faultPoint('sync.after-subscription');
    sub = (await readSubscription(tgt, names.subscription))!;
    // After the client applier (sync --applier client), its origin holds what the target has committed; the slot may
    // have confirmed less (a kill -9 between COMMIT and acknowledgement), so the subscription starts from the origin.
    // A role that may not read replication origins (no superuser, no grants) cannot have run the client applier either.
    const clientApplied = forcedOrigin ? null : await originPosition(tgt, names.origin).catch(() => null);
    const from = forcedOrigin ?? (clientApplied && clientApplied !== '0/0' ? clientApplied : null);
    if (from) await advanceOrigin(tgt, sub.oid, from);
    await enableSubscription(tgt, sub.name);
  } else if (!sub) {
    // No slot to continue from (--copy-data without init): the subscription creates one after the publication exists.
    emptied = await emptyTargetTables(tgt, onTarget.filter((t) => deferred.some((p) => p.schema === t.schema && p.name === t.name)));
    publicationChange = await ensurePublication(src, names.publication, published, ids.source.major);
    await createSubscription(tgt, {
      name: names.subscription, publication: names.publication, slot: slotName, conninfo: conn.conninfo, createSlot: true, copyData: true,
      enabled: true, binary, streaming, passwordNotRequired: passwordNotRequired(ids, conn),
    });
    sub = (await readSubscription(tgt, names.subscription))!;
    createdBySubscription = true;
    deferred = [];
  } else {
    publicationChange = await ensurePublication(src, names.publication, immediate, ids.source.major);
    // Tables that left the publication leave the subscription; nothing new is added here.
    if (subTables.some((t) => !immediate.some((p) => p.schema === t.schema && p.name === t.name))) await refreshSubscription(tgt, sub.name, false);
    if (conn.custom) await setSubscriptionConninfo(tgt, sub.name, conn.conninfo);
    if (!sub.enabled) await enableSubscription(tgt, sub.name);
  }

  if (deferred.length) {
    // Not in the subscription yet, so the apply worker leaves them alone; table synchronisation copies
    // each under its own snapshot and hands it over to the stream at an exact position.
    emptied = await emptyTargetTables(tgt, onTarget.filter((t) => deferred.some((p) => p.schema === t.schema && p.name === t.name)));
    await addToPublication(src, names.publication, deferred, ids.source.major);
    await refreshSubscription(tgt, sub.name, true);
    if (publicationChange === 'unchanged') publicationChange = 'altered';
  }
  // An existing subscription keeps the connection string it was created with unless --subscription-conninfo replaced it.
  if (pwWarning && (action !== 'existing' || conn.custom)) x.warn(pwWarning);
  return { sub, action, slotName, conn, binary, streaming, publicationChange, createdBySubscription, emptied };
}

/** The slot must be readable with the publication just made to exist; otherwise the stream cannot start. */
async function checkSlotDecodable(s: DbSync, slotName: string): Promise<void> {
  const { names, src } = s;
  const problem = await slotDecodable(src, slotName, names.publication);
  if (problem) {
    throw new UsageError(`replication slot ${slotName} cannot be read with publication ${names.publication}: ${problem}`, {
      hint:
        'changes were committed on the source after init\'s snapshot but before the publication existed, so the slot cannot deliver them ' +
        '(the publication must exist before the slot). Start over: pgferry cleanup, then pgferry init --restart and pgferry sync',
    });
  }
}

function passwordNotRequired(ids: Ctx['ids'], conn: { hasPassword: boolean; custom: boolean }): boolean {
  return ids.target.major >= 16 && ids.target.superuser && conn.custom && !conn.hasPassword;
}

/** Table synchronisation slots of a subscription (pg_<suboid>_sync_<relid>_<sysid>) left on the source. */
export async function dropTablesyncSlots(client: pg.Client, major: number, subOid: number, targetSysid: string): Promise<string[]> {
  const { slots } = await listCandidateSlots(client, major);
  const dropped: string[] = [];
  for (const s of slots) {
    const ts = parseTablesyncSlot(s.name);
    if (!ts || ts.subscriptionOid !== subOid || ts.systemIdentifier !== targetSysid) continue;
    if (await dropSlot(client, s.name)) dropped.push(s.name);
  }
  return dropped;
}

/** Poll both sides until every table replicates and the lag is within the limit. */
async function waitUntilReplicating(
  pairs: ReplicationPair[],
  ids: Ctx['ids'],
  o: SyncOptions,
  signal: AbortSignal,
  progress: ProgressSink,
): Promise<NonNullable<SyncReport['final']>> {
  const maxLag = o.maxLag ?? DEFAULT_MAX_LAG;
  const deadline = o.waitTimeoutSeconds ? Date.now() + o.waitTimeoutSeconds * 1000 : Infinity;
  const id = 'sync/wait';
  progress({ kind: 'start', id, title: 'waiting until every table replicates' });
  let brokenSince: number | null = null;
  let unreachableSince: number | null = null;
  const drain = new DrainEstimate();
  for (;;) {
    throwIfShuttingDown(signal);
    let facts: Awaited<ReturnType<typeof collectPair>>[];
    try {
      facts = await Promise.all(pairs.map((p) => collectPair(p, { source: ids.source.major, target: ids.target.major })));
      unreachableSince = null;
      faultPoint('sync.waiting');
    } catch (err) {
      // A server restarting or a dropped connection: replication carries on by itself; poll again (a new connection
      // each time) until the tolerated break is over, then report the error as it is.
      if (!isTransientServerError(err)) throw err;
      unreachableSince ??= Date.now();
      if (Date.now() - unreachableSince > TOLERATED_BREAK_MS || Date.now() > deadline) throw err;
      progress({ kind: 'update', id, detail: `reconnecting: ${(err as Error).message}` });
      await sleep(o.pollMs ?? 1000, undefined, { signal }).catch(() => {});
      continue;
    }
    const dbs = facts.map((f) => assess(f, ids.target.systemIdentifier, maxLag));
    const total = dbs.reduce((n, d) => n + d.tables.total, 0);
    const ready = dbs.reduce((n, d) => n + d.tables.replicating, 0);
    const lagBytes = dbs.reduce<number | null>((m, d) => (d.lag.bytes === null ? m : Math.max(m ?? 0, d.lag.bytes)), null);
    const lag = formatLag({
      bytes: lagBytes,
      seconds: dbs.reduce<number | null>((m, d) => (d.lag.seconds === null ? m : Math.max(m ?? 0, d.lag.seconds)), null),
    });
    if (dbs.every((d) => d.health === 'healthy')) {
      progress({ kind: 'end', id, status: 'ok', detail: `${ready}/${total} tables replicating · ${lag}` });
      return { inSync: true, lag, databases: dbs };
    }
    // Catch-up's time left, from how fast the lag shrank lately (only once every table replicates).
    const eta = ready === total && lagBytes !== null ? drain.add(Date.now(), lagBytes) : '';
    progress({ kind: 'update', id, detail: `${ready}/${total} tables replicating · ${lag}${eta ? ` · ${eta}` : ''}`, done: ready, total, unit: 'tables' });
    // Right after creation the worker needs a moment to start and connect: only a lasting break is an error.
    const broken = dbs.find((d) => d.health === 'broken');
    if (broken) brokenSince ??= Date.now();
    else brokenSince = null;
    if (broken && brokenSince !== null && Date.now() - brokenSince > TOLERATED_BREAK_MS) {
      const p = broken.problems.find((x) => x.level === 'broken')!;
      progress({ kind: 'end', id, status: 'fail', detail: p.message });
      throw new OperationError(`replication of "${broken.sourceDatabase}" is not working: ${p.message}`, { hint: p.fix ?? undefined });
    }
    if (Date.now() > deadline) {
      progress({ kind: 'end', id, status: 'fail', detail: 'timed out' });
      throw new OperationError(`not in sync after ${o.waitTimeoutSeconds} s: ${ready}/${total} tables replicating · ${lag}`, {
        hint: 'replication goes on in the background: watch it with pgferry status',
      });
    }
    await sleep(o.pollMs ?? 1000, undefined, { signal }).catch(() => {});
  }
}

