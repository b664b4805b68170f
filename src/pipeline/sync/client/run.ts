/**
 * `sync --applier client`: pgferry streams init's slot itself and applies to
 * the target over ordinary connections; the target never gets a subscription
 * and never connects to the source. Per database pair: refuse what the client
 * applier cannot continue (an unfinished init, tables not consistent with the
 * slot, a subscription of the native applier), bring the publication to the
 * scope, create the replication origin, then stream in the foreground until
 * Ctrl-C / SIGTERM or, with untilCaughtUp, until the target has committed
 * everything the source had written at the start. A dropped connection or a
 * restarting server starts a new session from the origin's committed position.
 * See docs/architecture.md, "Client applier".
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { changedDataRules, maskedSummary, streamingRefusal } from '../../../config/data-rules-catalog.js';
import { resolveTables, rulesFor, scopeHash, type ScopeSpec, type ScopeTable } from '../../../config/scope.js';
import { NO_SIZES } from '../../../postgres/catalog/tables.js';
import { OperationError, UsageError } from '../../../errors.js';
import { shutdownSignal, throwIfShuttingDown } from '../../../lifecycle.js';
import { CANONICAL_SETTINGS, connect } from '../../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../../postgres/conninfo.js';
import { operationError } from '../../../postgres/errors.js';
import { displayName } from '../../../postgres/identifiers.js';
import { WAL_END_SQL, formatLsn, lsnToBigInt } from '../../../postgres/lsn.js';
import { acquireLock, loadState, saveState, tableKey, type DatabaseState } from '../../../state/checkpoint.js';
import { removeClientApplier, saveClientApplier, type ClientApplierBeat } from '../../../state/client-applier.js';
import { loadSyncRecord, saveSyncRecord, type SyncRecord } from '../../../state/sync-record.js';
import { DrainEstimate, formatBytes } from '../../../units.js';
import { resolvePairs, type ReplicationPair } from '../../shared/pairs.js';
import { warningCollector, type ProgressSink } from '../../shared/progress.js';
import type { ClientCatchUp } from '../../shared/final-apply.js';
import { installMaskTriggers } from '../../shared/masking-target.js';
import { ensurePublication, publishedTables, slotDecodable, type PublishedTable } from '../../shared/publication.js';
import { resyncTables } from './resync.js';
import { readSubscription } from '../../shared/replication-catalog.js';
import { identityProblems, identityRefusal, setReplicaIdentityFull } from '../../shared/replication-checks.js';
import { ensureOrigin } from '../../shared/replication-origin.js';
import { findSlot } from '../../shared/slot.js';
import { isTransientServerError, TOLERATED_BREAK_MS } from '../transient.js';
import { inUseByDeparted, newStats, runSession, type ApplierStats } from './applier.js';

/** Default budget of buffered changes per database pair before they go into the open target transaction (estimated size). */
export const DEFAULT_BATCH_BYTES = 4 * 1024 * 1024;

export interface ClientSyncOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  scope?: ScopeSpec;
  stateDir: string;
  setReplicaIdentityFull?: boolean;
  /** Exit once the target has committed everything the source had written at the start. */
  untilCaughtUp?: boolean;
  batchBytes?: number;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface ClientSyncDatabaseReport {
  sourceDatabase: string;
  targetDatabase: string;
  slot: string;
  publication: string;
  origin: string;
  /** Position committed on the target (and acknowledged to the slot). */
  appliedLsn: string;
  changes: number;
  transactions: number;
  batches: number;
  /** Updates and deletes that found no row on the target. */
  missingRows: number;
  /** Source transactions that arrived streamed before their commit (protocol 2, spooled) and were applied; those aborted. */
  streamedTransactions: number;
  streamedAborted: number;
}

export interface ClientSyncReport {
  command: 'sync';
  applier: 'client';
  source: { endpoint: string; major: number };
  target: { endpoint: string; major: number };
  stateDir: string;
  /** caught-up: --until-caught-up reached its position; stopped: Ctrl-C / SIGTERM. */
  outcome: 'caught-up' | 'stopped';
  databases: ClientSyncDatabaseReport[];
  warnings: string[];
  seconds: number;
}

interface Prepared {
  pair: ReplicationPair;
  slot: string;
  untilLsn: bigint | null;
  /** See ApplierOptions.skipBefore. */
  skipBefore: ReadonlyMap<string, bigint>;
}

export async function runClientSync(o: ClientSyncOptions): Promise<ClientSyncReport> {
  const started = performance.now();
  const signal = o.signal ?? shutdownSignal;
  const progress: ProgressSink = o.progress ?? (() => {});
  const { warnings, warn } = warningCollector(progress);
  // Held while the applier runs: no second applier, no cleanup under it.
  const release = await acquireLock(o.stateDir);
  try {
    const state = await loadState(o.stateDir);
    if (!state) {
      throw new UsageError(`no init of this migration was found in ${o.stateDir}: the client applier continues from init's slot`, {
        hint: 'run pgferry init first (or pass the --state-dir it used); --copy-data works with the native applier only',
      });
    }
    const scope = o.scope ?? state.scope;
    if (scopeHash(scope) !== state.scopeHash) {
      throw new UsageError(`the scope differs from the one init copied (state in ${o.stateDir})`, { hint: 'run sync without scope flags: it uses init\'s scope' });
    }
    const { ids, pairs } = await resolvePairs(o.source, o.target, scope, state, o.stateDir);
    const record: SyncRecord = (await loadSyncRecord(o.stateDir)) ?? { version: 1, databases: {} };
    const prepared: Prepared[] = [];
    for (const pair of pairs) {
      throwIfShuttingDown(signal);
      prepared.push(await prepare(pair, state.databases[pair.sourceDatabase], { scope, initScope: state.scope, major: ids.source.major, o, warn, progress, saveState: () => saveState(o.stateDir, state) }));
      record.databases[pair.sourceDatabase] = {
        targetDatabase: pair.targetDatabase, applier: 'client', origin: pair.names.origin, subscription: pair.names.subscription, subscriptionOid: 0,
        publication: pair.names.publication, slot: prepared.at(-1)!.slot, tables: record.databases[pair.sourceDatabase]?.tables ?? {},
        updatedAt: new Date().toISOString(),
      };
    }
    await saveSyncRecord(o.stateDir, record);

    const stats = new Map(prepared.map((p) => [p.pair.sourceDatabase, newStats()]));
    const beat: ClientApplierBeat = { version: 1, pid: process.pid, startedAt: new Date().toISOString(), updatedAt: '', applied: {} };
    const stopBeat = heartbeat(o.stateDir, beat, stats, progress);
    const stopPolls = prepared.map((p) => pollSourceEnd(p.pair.sourceConn, stats.get(p.pair.sourceDatabase)!));
    let outcomes: ('caught-up' | 'stopped')[];
    try {
      outcomes = await Promise.all(prepared.map((p) => applyPair(p, o.batchBytes ?? DEFAULT_BATCH_BYTES, o.stateDir, signal, stats.get(p.pair.sourceDatabase)!, warn, progress)));
    } finally {
      await Promise.all([stopBeat(), ...stopPolls.map((stop) => stop())]);
    }
    return {
      command: 'sync', applier: 'client',
      source: { endpoint: ids.source.endpoint, major: ids.source.major },
      target: { endpoint: ids.target.endpoint, major: ids.target.major },
      stateDir: o.stateDir,
      outcome: outcomes.every((x) => x === 'caught-up') ? 'caught-up' : 'stopped',
      databases: prepared.map((p) => {
        const s = stats.get(p.pair.sourceDatabase)!;
        return {
          sourceDatabase: p.pair.sourceDatabase, targetDatabase: p.pair.targetDatabase, slot: p.slot, publication: p.pair.names.publication,
          origin: p.pair.names.origin, appliedLsn: formatLsn(s.acked), changes: s.changes, transactions: s.transactions, batches: s.batches, missingRows: s.missing,
          streamedTransactions: s.streamed, streamedAborted: s.streamedAborted,
        };
      }),
      warnings,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await release();
  }
}

interface PrepareCtx {
  /** Write init's state (the run holds its lock). */
  saveState: () => Promise<void>;
  scope: ScopeSpec;
  initScope: ScopeSpec;
  major: number;
  o: ClientSyncOptions;
  warn: (m: string) => void;
  progress: ProgressSink;
}

/** Checks before anything is created, then the publication and the origin. */
async function prepare(pair: ReplicationPair, d: DatabaseState | undefined, x: PrepareCtx): Promise<Prepared> {
  const db = pair.sourceDatabase;
  if (!d || d.phase !== 'done') {
    throw new UsageError(`init of database "${db}" has not finished${d ? ` (it stopped in phase ${d.phase})` : ''}`, { hint: 'run pgferry init again with the same flags and state directory; then run sync' });
  }
  if (!d.slot) throw new UsageError(`init ran without a replication slot for "${db}" (--no-sync): there is nothing to stream from`, { hint: 'start over with pgferry init --restart (without --no-sync)' });
  const src = await connect(pair.sourceConn, { label: 'the source', settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync' });
  const tgt = await connect(pair.targetConn, { label: 'the target', applicationName: 'pgferry sync' });
  try {
    const resolved = await resolveTables(src, db, rulesFor(x.scope, db), NO_SIZES);
    const { published, unlogged } = publishedTables(resolved.tables, d.filters);
    for (const t of unlogged) x.warn(`${displayName(t.schema, t.name)} is unlogged: logical replication carries none of its changes`);
    const pubScope = published.map((p) => resolved.tables.find((t) => t.oid === p.oid)!);
    // Masking as under the native applier: the publication's column list keeps masked columns on the source (15+), and
    // the target's ENABLE ALWAYS trigger computes them on every INSERT and UPDATE the applier runs (masking-target.ts).
    const maskRefusal = streamingRefusal(x.major, pubScope) ?? changedDataRules(x.initScope, x.scope, db);
    if (maskRefusal) throw maskRefusal;
    const sub = await readSubscription(tgt, pair.names.subscription);
    if (sub) {
      throw new UsageError(`target database "${pair.targetDatabase}" has the native applier's subscription ${sub.name}: two appliers on one slot would apply changes twice`, {
        hint: 'keep using the native applier, or switch by running pgferry cleanup and starting over; the client applier never creates a subscription',
      });
    }
    const idProblems = await identityProblems(src, pubScope);
    if (idProblems.length && !x.o.setReplicaIdentityFull) throw identityRefusal(idProblems);
    if (idProblems.length) await setReplicaIdentityFull(src, idProblems.map((p) => ({ schema: p.schema, name: p.name })));
    const slot = await findSlot(src, d.slot.name);
    if (!slot) throw new UsageError(`replication slot ${d.slot.name} that init created is gone from the source`, { hint: 'start over: pgferry cleanup, then pgferry init --restart' });
    // Before the publication is brought to the scope and before anything streams: no row is applied unmasked.
    const masked = await installMaskTriggers(tgt, pubScope);
    if (masked.length) x.progress({ kind: 'log', level: 'info', message: `masked columns computed on the target for ${maskedSummary(pubScope).join(', ')}` });
    const change = await ensurePublication(src, pair.names.publication, published, x.major);
    // Only a publication made or changed now can be unreadable for the slot (init makes it before the slot). The check
    // is not free: its peek decodes the slot up to the end of the first transaction, all of it when that one is huge.
    const problem = change === 'unchanged' ? null : await slotDecodable(src, d.slot.name, pair.names.publication);
    if (problem) throw new UsageError(`replication slot ${d.slot.name} cannot be read with publication ${pair.names.publication}: ${problem}`, { hint: 'start over: pgferry cleanup, then pgferry init --restart' });
    const origin = await ensureOrigin(tgt, pair.names.origin);
    if (origin.created) x.progress({ kind: 'log', level: 'info', message: `replication origin ${pair.names.origin} created in target database "${pair.targetDatabase}"` });
    await resyncLate(pair, d, published, pubScope, x);
    const untilLsn = x.o.untilCaughtUp ? await sourceWalEnd(src) : null;
    return { pair, slot: d.slot.name, untilLsn, skipBefore: skipBeforeOf(d) };
  } catch (err) {
    throw operationError(err, `sync of database "${db}"`);
  } finally {
    await Promise.all([src.end().catch(() => {}), tgt.end().catch(() => {})]);
  }
}

/** Tables init copied after a resume, not under the slot's snapshot: copied again here (resync.ts), then recorded. */
async function resyncLate(pair: ReplicationPair, d: DatabaseState, published: PublishedTable[], scope: ScopeTable[], x: PrepareCtx): Promise<void> {
  const unknown = published.filter((p) => !d.tables[tableKey(p.schema, p.name)]);
  if (unknown.length) {
    throw new UsageError(`${unknown.map((t) => displayName(t.schema, t.name)).join(', ')} match the scope but init did not copy them (created since?)`, {
      hint: 'the client applier streams only tables init copied: start over with pgferry init --restart, or use pgferry sync --applier native, which copies new tables',
    });
  }
  const late = published.filter((p) => {
    const t = d.tables[tableKey(p.schema, p.name)]!;
    return !t.consistentWithSlot && !t.resyncedFrom;
  });
  if (!late.length) return;
  const names = late.map((t) => displayName(t.schema, t.name)).join(', ');
  x.progress({ kind: 'log', level: 'info', message: `copying ${names} again under a new snapshot: init copied them after a resume, not under the slot's snapshot` });
  const r = await resyncTables(pair, x.major, late, scope);
  for (const p of late) {
    const t = d.tables[tableKey(p.schema, p.name)];
    if (t) t.resyncedFrom = r.lsn;
  }
  await x.saveState();
  x.progress({ kind: 'log', level: 'info', message: `${names}: ${r.rows} rows copied; their changes from ${r.lsn} on are applied from the stream` });
}

/** The tables copied again (resyncedFrom) and the position their stream starts at. */
function skipBeforeOf(d: DatabaseState): Map<string, bigint> {
  const m = new Map<string, bigint>();
  for (const [key, t] of Object.entries(d.tables)) if (t.resyncedFrom) m.set(key, lsnToBigInt(t.resyncedFrom));
  return m;
}

async function sourceWalEnd(src: pg.Client): Promise<bigint> {
  const { rows } = await src.query<{ lsn: string }>(`SELECT ${WAL_END_SQL}::text AS lsn`);
  return lsnToBigInt(rows[0]!.lsn);
}

/** Sessions one after the other: a break (server restart, dropped connection) is ridden out for TOLERATED_BREAK_MS without progress. */
async function applyPair(
  p: Prepared, batchBytes: number, stateDir: string, signal: AbortSignal, stats: ApplierStats, warn: (m: string) => void, progress: ProgressSink,
): Promise<'caught-up' | 'stopped'> {
  const id = `sync/client/${p.pair.sourceDatabase}`;
  progress({ kind: 'start', id, title: `database ${p.pair.sourceDatabase} → ${p.pair.targetDatabase}: client applier${p.untilLsn !== null ? ` until ${formatLsn(p.untilLsn)}` : ''}` });
  let brokenSince: number | null = null;
  let ackedAtBreak = -1n;
  for (;;) {
    try {
      const outcome = await runSession({
        sourceConn: p.pair.sourceConn, targetConn: p.pair.targetConn, slot: p.slot, publication: p.pair.names.publication, origin: p.pair.names.origin,
        batchBytes, untilLsn: p.untilLsn, skipBefore: p.skipBefore, signal, warn, spoolDir: path.join(stateDir, 'spool', p.slot),
      }, stats);
      progress({ kind: 'end', id, status: 'ok', detail: `${outcome === 'caught-up' ? 'caught up' : 'stopped'} at ${formatLsn(stats.acked)} · ${stats.changes} changes in ${stats.batches} batches` });
      return outcome;
    } catch (err) {
      const retry = !signal.aborted && (isTransientServerError(err) || inUseByDeparted(err));
      if (stats.acked !== ackedAtBreak) {
        brokenSince = null;
        ackedAtBreak = stats.acked;
      }
      brokenSince ??= Date.now();
      if (!retry || Date.now() - brokenSince > TOLERATED_BREAK_MS) {
        progress({ kind: 'end', id, status: 'fail', detail: (err as Error).message.split('\n')[0] });
        if (err instanceof OperationError || err instanceof UsageError) throw err;
        throw operationError(err, `client applier of database "${p.pair.sourceDatabase}"`);
      }
      progress({ kind: 'update', id, detail: `reconnecting: ${(err as Error).message.split('\n')[0]}` });
      await sleep(1000, undefined, { signal }).catch(() => {});
    }
  }
}

/**
 * cutover's catch-up (shared/final-apply.ts): the applier of one pair in this
 * process until the target has committed everything before untilLsn, the
 * fence LSN. The caller has checked the pair (sync prepared it earlier) and
 * holds the state directory's lock; no heartbeat is written.
 */
export const clientCatchUp: ClientCatchUp = async (r) => {
  const stats = newStats();
  const d = (await loadState(r.stateDir))?.databases[r.pair.sourceDatabase];
  const outcome = await applyPair(
    { pair: r.pair, slot: r.slot, untilLsn: lsnToBigInt(r.untilLsn), skipBefore: d ? skipBeforeOf(d) : new Map() }, DEFAULT_BATCH_BYTES, r.stateDir, r.signal, stats, r.warn, r.progress ?? (() => {}),
  );
  return { reached: outcome === 'caught-up', appliedLsn: formatLsn(stats.acked) };
};

/** How often the source's WAL end is read for the progress line's lag and time left. */
const SOURCE_END_POLL_MS = 2000;
/** Below this lag the applier counts as caught up in the progress line (no time-left estimate). */
const CAUGHT_UP_BYTES = 64 * 1024;

/**
 * The source's WAL end every SOURCE_END_POLL_MS over one ordinary connection, into stats.sourceEnd: the stream
 * alone does not tell it (the walsender reports the position it has decoded up to, and while the applier is behind
 * that is just ahead of what it applied). Best effort: an error closes the connection and the next tick opens one.
 */
function pollSourceEnd(conn: ResolvedConnInfo, stats: ApplierStats): () => Promise<void> {
  let client: pg.Client | null = null;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();
  const tick = async () => {
    try {
      client ??= await connect(conn, { label: 'the source', applicationName: 'pgferry sync (client applier, lag)' });
      if (stopped) return;
      stats.sourceEnd = lsnToBigInt((await client.query<{ lsn: string }>(`SELECT ${WAL_END_SQL}::text AS lsn`)).rows[0]!.lsn);
    } catch {
      const c = client;
      client = null;
      await c?.end().catch(() => {});
    }
  };
  running = tick();
  const timer = setInterval(() => {
    running = running.then(tick);
  }, SOURCE_END_POLL_MS);
  return async () => {
    stopped = true;
    clearInterval(timer);
    await running;
    await client?.end().catch(() => {});
  };
}

/** Behind the source: its WAL end (polled, or as last heard on the stream) minus what the target has committed. */
export function clientLagBytes(s: Pick<ApplierStats, 'acked' | 'walEnd' | 'sourceEnd'>): number {
  const end = s.sourceEnd > s.walEnd ? s.sourceEnd : s.walEnd;
  return end > s.acked ? Number(end - s.acked) : 0;
}

/** Progress every second and the heartbeat file every two; returns a function that stops both and removes the file. */
function heartbeat(stateDir: string, beat: ClientApplierBeat, stats: Map<string, ApplierStats>, progress: ProgressSink): () => Promise<void> {
  const drains = new Map([...stats.keys()].map((db) => [db, new DrainEstimate()]));
  let last = { at: Date.now(), changes: 0 };
  let tick = 0;
  let writing: Promise<void> = Promise.resolve();
  const write = () => {
    beat.updatedAt = new Date().toISOString();
    for (const [db, s] of stats) beat.applied[db] = formatLsn(s.acked);
    writing = writing.then(() => saveClientApplier(stateDir, beat)).catch(() => {});
  };
  write();
  const timer = setInterval(() => {
    const now = Date.now();
    const changes = [...stats.values()].reduce((n, s) => n + s.changes, 0);
    const rate = Math.round(((changes - last.changes) * 1000) / Math.max(1, now - last.at));
    last = { at: now, changes };
    for (const [db, s] of stats) {
      const lag = clientLagBytes(s);
      // Time left from how fast the lag shrank lately, as native sync's wait shows it; none once caught up.
      const eta = drains.get(db)!.add(now, lag < CAUGHT_UP_BYTES ? 0 : lag);
      progress({ kind: 'update', id: `sync/client/${db}`, detail: `${s.changes} changes · ${rate}/s · lag ${formatBytes(lag)}${eta ? ` (${eta})` : ''} · last batch ${s.lastBatchChanges} changes · applied ${formatLsn(s.acked)}${s.spooledBytes ? ` · spooled ${formatBytes(s.spooledBytes)} of open streamed transactions` : ''}` });
    }
    if (++tick % 2 === 0) write();
  }, 1000);
  return async () => {
    clearInterval(timer);
    await writing;
    await removeClientApplier(stateDir);
  };
}
