/**
 * `cutover`: hand every database in scope over to the target, in this order —
 * preconditions (replication healthy, the state directory's lock), fence the
 * source, wait until the target has applied the fence LSN, move sequences,
 * gate on a comparison, hand over (drop the subscription and its slot),
 * optionally reverse replication — and report the phases in milliseconds.
 * With the client applier cutover applies up to the fence LSN itself and
 * drops slot and origin; with the timestamp method a final round with delete
 * detection replaces the catch-up (methods.ts).
 *
 * Every failure before the hand-over lifts the fence again (and says so);
 * cutover.json always says whether the source may be fenced, so that after a
 * kill -9 a rerun continues and `--abort` undoes.
 */
import { emptyScope, resolveTables, rulesFor, type ScopeSpec } from '../../config/scope.js';
import { extensionConfigRelations } from '../../postgres/catalog/extensions.js';
import { NO_SIZES } from '../../postgres/catalog/tables.js';
import { InterruptedError, OperationError, PgferryError, UsageError, errorMessage } from '../../errors.js';
import { faultPoint } from '../../fault.js';
import type { ProgressSink } from '../shared/progress.js';
import type pg from 'pg';
import { displayName } from '../../postgres/identifiers.js';
import { connect, connectAll, withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { acquireLock, loadState, type RunState } from '../../state/checkpoint.js';
import { loadSyncRecord } from '../../state/sync-record.js';
import { syncMethod, type ClientCatchUp, type FinalRound, type SyncMethod } from '../shared/final-apply.js';
import { dropOrigin } from '../shared/replication-origin.js';
import { readPublication } from '../shared/replication-catalog.js';
import { resolvePairs, type ReplicationPair } from '../shared/pairs.js';
import { streamHealth } from '../shared/health.js';
import { copyExtensionData, describeExtensionData, type ExtensionDataResult } from '../shared/extension-data.js';
import { mirrorLargeObjects, type MirrorResult } from '../shared/large-objects.js';
import { flushWal, waitForApplied } from './catch-up.js';
import { fence, newFenceRecord, planFence, refuseUnfenceable, SOURCE_SETTINGS, unfence, withSource, type FencePlan } from './fence.js';
import type { Gate, GateMode, GatePair, GateOutcome as GateResult } from '../shared/gate.js';
import { dropForwardSubscription, dropSourceSlot, enableEventTriggers } from './hand-over.js';
import { eventTriggerStates } from '../shared/event-triggers.js';
import { populatedMaterializedViews, refreshMaterializedViews } from '../shared/materialized-views.js';
import { gatherSubscriptions } from '../shared/source-subscriptions.js';
import { applyDatabaseProperties, describeProperties, propertyChanges } from '../shared/database-properties.js';
import { databaseExtras, type DatabaseExtras } from '../../postgres/catalog/databases.js';
import { withMaintenanceClient } from '../../postgres/maintenance.js';
import { afterUnfence, refuseReverse, runningApplier, stopApplier, timestampReady } from './methods.js';
import { assertReverseRoom, canCreateSubscription, ensureReversePublication, ensureReverseSubscription, reverseNames, reverseRightsProblem } from './reverse.js';
import { moveSequences } from './sequences.js';
import {
  CUTOVER_STATE_VERSION,
  CutoverStore,
  loadCutoverState,
  mayBeFenced,
  removeCutoverState,
  type CutoverPhase,
  type CutoverState,
} from './state.js';

export interface CutoverOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  /** Databases when there is no state (default: the source connection's database). */
  scope?: ScopeSpec;
  verify: GateMode;
  /** The comparison behind --verify (verify's runGate, handed in by the caller). */
  gate: Gate;
  /** Longest wait for the target to apply the fence LSN. */
  maxWaitMs: number;
  /** The client applier up to the fence LSN (sync's, handed in by the caller); needed when sync ran with --applier client. */
  clientCatchUp?: ClientCatchUp;
  /** The final timestamp round (sync's, handed in by the caller); needed after init --method timestamp. */
  finalRound?: FinalRound;
  /** Options given that only the final timestamp round reads (e.g. "--timestamp-column"): a warning names them for the other methods. */
  timestampOnlyOptions?: string[];
  reverse: boolean;
  /** Refresh the target's materialized views before the fence (replication carries no REFRESH). */
  refreshMaterializedViews?: boolean;
  dryRun: boolean;
  /** verify's sessions per side for the gate. */
  jobs: number;
  /** Shown the plan; false stops before anything is changed (exit 2). */
  confirm?: (plan: CutoverPlan) => Promise<boolean>;
  signal?: AbortSignal;
  progress?: ProgressSink;
}

export interface CutoverPlan {
  /** How the target is brought level after the fence: native subscription, client applier, or a final timestamp round. */
  method: SyncMethod;
  databases: {
    sourceDatabase: string;
    targetDatabase: string;
    /** The native subscription (null with the client applier and the timestamp method). */
    subscription: string | null;
    /** init's slot (null with the timestamp method). */
    slot: string | null;
    /** Tables that get the fence trigger. */
    tables: string[];
    /** CONNECT revoked from these (null: PUBLIC). */
    revokeConnect: (string | null)[];
    /** Keep CONNECT: pgferry's role and the walsender's role. */
    keepConnect: string[];
    sessions: FencePlan['sessions'];
  }[];
  verify: GateMode;
  reverse: boolean;
  /** A run killed earlier is continued. */
  resuming: boolean;
  /** pid of the background client applier cutover stops before the fence (null: none running). */
  stopsApplier: number | null;
}

export interface PhaseTiming {
  name: CutoverPhase;
  /** ms after this run started. */
  startMs: number;
  ms: number;
}

export type CutoverOutcome = 'handed-over' | 'already-handed-over' | 'dry-run' | 'gate-failed' | 'catch-up-timeout';

export interface CutoverDatabaseReport {
  sourceDatabase: string;
  targetDatabase: string;
  fenceLsn: string | null;
  appliedLsn: string | null;
  tablesFenced: number;
  sessionsEnded: number;
  sessionsInTransaction: number;
  sequencesMoved: number;
  sequencesMissing: string[];
  /** Large objects made the source's at cutover: created or rewritten, unlinked, bytes written. */
  largeObjects: MirrorResult;
  /** The timestamp method's final round (delete detection included); null otherwise. */
  finalRound: { round: number; upserted: number; deleted: number } | null;
  reverse: { publication: string; subscription: string } | null;
}

export interface CutoverReport {
  command: 'cutover';
  method: SyncMethod;
  ok: boolean;
  exitCode: 0 | 1;
  outcome: CutoverOutcome;
  dryRun: boolean;
  /** The fence LSN of the first database (see databases[] for each). */
  fenceLsn: string | null;
  /** From the first refused application write to the target being ready (sequences set, gate passed). */
  writeUnavailableMs: number | null;
  /** The gate's share of writeUnavailableMs. */
  gateMs: number | null;
  phases: PhaseTiming[];
  /** Is the source fenced now? */
  sourceFenced: boolean;
  plan: CutoverPlan;
  databases: CutoverDatabaseReport[];
  gate: GateResult | null;
  warnings: string[];
  ms: number;
}

interface Ctx {
  o: CutoverOptions;
  pairs: ReplicationPair[];
  progress: ProgressSink;
  started: number;
  phases: PhaseTiming[];
  warnings: string[];
  /** Per source database, its event triggers' states (read before the fence) for the hand-over. */
  eventTriggers: Map<string, Map<string, string>>;
  /** Per source database, its own properties (settings, privileges, comment, limit) read before the fence revoked CONNECT. */
  sourceExtras: Map<string, DatabaseExtras>;
  /** init ran with --no-privileges: the database's privileges are not carried either. */
  noPrivileges: boolean;
  /** Per pair, what the large-objects phase did. */
  largeObjects: MirrorResult[];
  method: SyncMethod;
  /** Per source database, the final timestamp round. */
  finalRound: Map<string, { round: number; upserted: number; deleted: number }>;
}

async function phase<T>(x: Ctx, name: CutoverPhase, title: string, fn: () => Promise<T>, detail?: (r: T) => string): Promise<T> {
  const id = `cutover/${name}`;
  const t0 = performance.now();
  // The slot is taken at the start: phases that run at the same time are listed in the order they started.
  const timing: PhaseTiming = { name, startMs: Math.round(t0 - x.started), ms: 0 };
  x.phases.push(timing);
  x.progress({ kind: 'start', id, title });
  try {
    const r = await fn();
    timing.ms = Math.round(performance.now() - t0);
    x.progress({ kind: 'end', id, status: 'ok', detail: detail?.(r) });
    return r;
  } catch (err) {
    timing.ms = Math.round(performance.now() - t0);
    x.progress({ kind: 'end', id, status: 'fail', detail: errorMessage(err).split('\n')[0] });
    throw err;
  }
}

function warn(x: Ctx, message: string): void {
  x.warnings.push(message);
  x.progress({ kind: 'log', level: 'warn', message });
}

/** Lift the fence of every database the state says may be fenced. */
async function unfenceAll(store: CutoverStore, pairs: ReplicationPair[]): Promise<void> {
  for (const p of pairs) {
    const d = store.state.databases[p.sourceDatabase];
    if (!d || !mayBeFenced(d.fence)) continue;
    d.fence!.status = 'unfencing';
    await store.save();
    await withSource(p.sourceConn, (c) => unfence(c, p.sourceDatabase, d.fence!));
    d.fence!.status = 'unfenced';
    await store.save();
  }
}

function newState(o: CutoverOptions, pairs: ReplicationPair[], method: SyncMethod): CutoverState {
  const now = new Date().toISOString();
  const databases: CutoverState['databases'] = {};
  for (const p of pairs) {
    databases[p.sourceDatabase] = { sourceDatabase: p.sourceDatabase, targetDatabase: p.targetDatabase, fence: null, fenceLsn: null, appliedLsn: null, handOver: 'none', reverse: null };
  }
  return { version: CUTOVER_STATE_VERSION, startedAt: now, updatedAt: now, phase: 'preconditions', options: { reverse: o.reverse, verify: o.verify, method }, readyAt: null, databases };
}

/** What the fence will do in one source database, and the tables the gate compares (reads only). */
async function lookAtSource(p: ReplicationPair, method: SyncMethod, scope: ScopeSpec, major: number): Promise<{ plan: FencePlan; tables: { schema: string; name: string }[] }> {
  return withSource(p.sourceConn, async (c) => {
    if (method === 'timestamp') {
      // No publication: the fence covers the tables the rounds copy.
      const copied = (await resolveTables(c, p.sourceDatabase, rulesFor(scope, p.sourceDatabase), NO_SIZES)).tables.filter((t) => !t.schemaOnly);
      const plan = await planFence(c, p.sourceDatabase, { relids: copied.map((t) => t.oid), what: 'the scope' }, null);
      return { plan, tables: copied.map((t) => ({ schema: t.schema, name: t.name })) };
    }
    const plan = await planFence(c, p.sourceDatabase, { publication: p.names.publication }, p.names.slot);
    return { plan, tables: (await readPublication(c, p.names.publication, major))?.tables ?? [] };
  });
}

/** The handed-in function the method needs, or a usage error naming what is missing. */
function requireHook<T>(hook: T | undefined, what: string): T {
  if (!hook) throw new UsageError(`cutover was called without ${what}`);
  return hook;
}

export async function runCutover(o: CutoverOptions): Promise<CutoverReport> {
  const started = performance.now();
  const x: Ctx = { o, pairs: [], progress: o.progress ?? (() => {}), started, phases: [], warnings: [], largeObjects: [], method: 'native', finalRound: new Map(), eventTriggers: new Map(), sourceExtras: new Map(), noPrivileges: false };
  // A background client applier holds the lock: it is stopped (after the confirmation) and the lock taken then.
  const applierPid = await runningApplier(o.stateDir);
  let release = o.dryRun || applierPid !== null ? undefined : await acquireLock(o.stateDir);
  try {
    const initState = await loadState(o.stateDir);
    x.noPrivileges = !!initState?.options.noPrivileges;
    const previous = await loadCutoverState(o.stateDir);
    const method = (x.method = previous?.options.method ?? syncMethod(initState, await loadSyncRecord(o.stateDir)));
    const scope = o.scope ?? initState?.scope ?? emptyScope();
    const { ids, pairs } = await resolvePairs(o.source, o.target, scope, initState, o.stateDir);
    x.pairs = pairs;
    const resuming = !!previous && previous.phase !== 'done' && previous.phase !== 'aborted';
    const handingOver = resuming && Object.values(previous.databases).some((d) => d.handOver !== 'none');
    const emptyPlan: CutoverPlan = { method, databases: [], verify: o.verify, reverse: o.reverse, resuming, stopsApplier: null };

    if (previous?.phase === 'done') {
      return baseReport(x, previous, 'already-handed-over', emptyPlan, null, o.dryRun);
    }
    if (resuming && previous.options.reverse !== o.reverse) {
      throw new UsageError(`a cutover of this migration was interrupted ${previous.options.reverse ? 'with' : 'without'} --reverse; run it again the same way`, {
        hint: previous.options.reverse ? 'add --reverse' : 'leave out --reverse (or pgferry cutover --abort first)',
      });
    }
    if (o.reverse) refuseReverse(method);
    if (method === 'client') requireHook(o.clientCatchUp, 'the client applier');
    if (method === 'timestamp') requireHook(o.finalRound, 'the final timestamp round');
    else if (o.timestampOnlyOptions?.length) warn(x, `${o.timestampOnlyOptions.join(', ')} only applies after init --method timestamp; ignored for this ${method === 'client' ? 'client applier' : 'native subscription'} migration`);

    // Preconditions: replication healthy (not needed when the hand-over has begun: the subscription is gone by design).
    if (!handingOver && method === 'timestamp') {
      await phase(x, 'preconditions', 'init and round state are there', () => timestampReady(initState, pairs), (t) => t);
    } else if (!handingOver) {
      // --reverse (not yet begun): the target must be able to replicate back, or the fallback would fail after the hand-over.
      const reverseSlots = o.reverse && !resuming
        ? pairs.map((p) => reverseNames({ sourceSystemIdentifier: ids.source.systemIdentifier, targetSystemIdentifier: ids.target.systemIdentifier }, p.sourceDatabase, p.targetDatabase).slot)
        : null;
      await phase(x, 'preconditions', `replication is healthy${reverseSlots ? ', and the target can replicate back' : ''}`, async () => {
        const st = await streamHealth({ source: o.source, target: o.target, stateDir: o.stateDir, scope });
        if (st.verdict.health !== 'healthy') {
          throw new UsageError(`replication is not healthy, so nothing was fenced: ${st.verdict.text}`, { hint: 'fix what pgferry status reports, then run cutover again' });
        }
        for (const p of reverseSlots && !ids.source.superuser ? pairs : []) {
          const may = await withClient(p.sourceConn, (c) => canCreateSubscription(c, ids.source.major), { label: 'the source', applicationName: 'pgferry cutover' });
          const problem = reverseRightsProblem({ superuser: false, major: ids.source.major, canCreateSubscription: may });
          if (problem) throw new UsageError(`--reverse: ${problem} in database "${p.sourceDatabase}"; nothing was fenced`, { hint: 'run cutover as a role that may (or leave out --reverse)' });
        }
        const back = reverseSlots ? await withClient(o.target, (c) => assertReverseRoom(c, reverseSlots), { label: 'the target', applicationName: 'pgferry cutover' }) : null;
        return { st, back };
      }, ({ st, back }) => (back ? `${st.verdict.text}; ${back}` : st.verdict.text));
    }

    // The plan: what the fence will do, per database (reads only).
    const looks = handingOver ? [] : await Promise.all(pairs.map((p) => lookAtSource(p, method, scope, ids.source.major)));
    const plans = looks.map((l) => l.plan);
    refuseUnfenceable(plans);
    const plan: CutoverPlan = {
      method,
      databases: plans.map((pl, i) => ({
        sourceDatabase: pairs[i]!.sourceDatabase,
        targetDatabase: pairs[i]!.targetDatabase,
        subscription: method === 'native' ? pairs[i]!.names.subscription : null,
        slot: method === 'timestamp' ? null : slotOf(initState, pairs[i]!),
        tables: pl.tables.map((t) => `${t.schema}.${t.name}`),
        revokeConnect: (previous?.databases[pl.database]?.fence?.revoked ?? pl.revoke).map((r) => r.grantee),
        keepConnect: pl.keep,
        sessions: pl.sessions,
      })),
      verify: o.verify,
      reverse: o.reverse,
      resuming,
      stopsApplier: applierPid,
    };
    if (o.dryRun) return baseReport(x, previous, 'dry-run', plan, null, true);
    if (o.confirm && !(await o.confirm(plan))) throw new UsageError('cutover cancelled; nothing was changed');
    if (applierPid !== null) {
      await phase(x, 'stop-applier', `stop the client applier (pid ${applierPid}); cutover applies up to the fence itself`, async () => {
        await stopApplier(applierPid, 60_000, o.signal);
        release = await acquireLock(o.stateDir);
      });
    }

    const store = new CutoverStore(o.stateDir, resuming ? previous : newState(o, pairs, method));
    await store.save();
    let gate: GateResult | null = null;

    if (!handingOver) {
      const failed = async (err: unknown): Promise<never> => {
        // Before the hand-over every failure lifts the fence again.
        let unfenced = false;
        try {
          await unfenceAll(store, pairs);
          await removeCutoverState(o.stateDir);
          unfenced = true;
        } catch (e2) {
          warn(x, `lifting the fence failed: ${errorMessage(e2)}`);
        }
        if (err instanceof InterruptedError || o.signal?.aborted) {
          throw new InterruptedError(`cutover interrupted; ${unfenced ? `the source was unfenced: ${afterUnfence(method)}` : 'the source may still be fenced: run pgferry cutover --abort to lift the fence, or pgferry cutover to continue'}`);
        }
        if (err instanceof PgferryError && err.exitCode === 2) throw err;
        throw new OperationError(`cutover failed before the hand-over: ${errorMessage(err)}`, {
          hint: unfenced
            ? `the source was unfenced; ${afterUnfence(method)}; then run pgferry cutover again`
            : 'the source may still be fenced: run pgferry cutover again to continue, or pgferry cutover --abort to lift the fence',
          cause: err,
        });
      };
      // Sessions opened before the first write is refused: one per side and database for the fence, the sequences
      // and the large objects; under a native subscription a second pair for the catch-up, whose polls and flushes
      // would otherwise wait in the queue behind the sequences' and large objects' queries (a client's queries run
      // one at a time). The fence spares the catch-up's source session.
      const sessions: Sessions = [];
      try {
        for (const p of pairs) {
          const src = () => connect(p.sourceConn, { label: 'the source', applicationName: 'pgferry cutover', settings: { ...SOURCE_SETTINGS }, quietDdl: true });
          const tgt = () => connect(p.targetConn, { label: 'the target', applicationName: 'pgferry cutover' });
          const [s, t, ws, wt] = await connectAll([src(), tgt(), ...(method === 'native' ? [src(), tgt()] : [])]);
          // Recorded before the next query, so that a failure still closes all four.
          const entry: Sessions[number] = { src: s!, tgt: t!, wait: ws && wt ? { src: ws, tgt: wt, srcPid: 0 } : undefined };
          sessions.push(entry);
          if (entry.wait) entry.wait.srcPid = (await ws!.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
        }
        // The sequences read once on the fence's sessions before the window (nothing is set): a new backend's first
        // look at 200 sequences (a catalog lookup each) took 30 – 50 ms on each side, inside the window; warm, 20 ms.
        await Promise.all(sessions.map((x2) => moveSequences(x2.src, x2.tgt, true)));
        // Which databases have extensions' configuration tables to copy again in the window (most have none).
        const configs = await Promise.all(sessions.map((x2) => extensionConfigRelations(x2.src)));
        // And the source's event triggers, which the hand-over gives the target (init created them disabled).
        const triggerStates = await Promise.all(sessions.map((x2) => eventTriggerStates(x2.src)));
        for (const [i, p] of pairs.entries()) x.eventTriggers.set(p.sourceDatabase, triggerStates[i]!);
        // And the database's own properties, whose privileges the fence is about to change.
        const extras = await Promise.all(sessions.map((x2, i) => databaseExtras(x2.src, pairs[i]!.sourceDatabase)));
        for (const [i, p] of pairs.entries()) if (extras[i]) x.sourceExtras.set(p.sourceDatabase, extras[i]!);
        // The source's own subscriptions would go on applying to it alone after the hand-over (validate says so too).
        const subscriptions = await Promise.all(sessions.map((x2) => gatherSubscriptions(x2.src)));
        for (const [i, p] of pairs.entries()) {
          const subs = subscriptions[i] ?? [];
          if (subs.length) {
            warn(x, `database "${p.sourceDatabase}": the source subscribes to publications elsewhere (${subs.map((sub) => sub.name).join(', ')}): ` +
              'after the hand-over they go on applying to the fenced source only; create them on the target (copy_data = false) and drop them on the old source');
          }
        }
        await materializedViews(x, sessions.map((x2) => x2.tgt));
        // Fence every database first, then wait for all of them.
        await phase(x, 'fence', 'fence the source: CONNECT revoked, sessions ended, write triggers', async () => {
          store.state.phase = 'fence';
          for (const [i, p] of pairs.entries()) {
            const d = store.db(p.sourceDatabase);
            const rec = d.fence && mayBeFenced(d.fence) ? d.fence : newFenceRecord(plans[i]!);
            rec.status = 'fencing';
            d.fence = rec;
            await store.save();
            faultPoint('cutover.fence-recorded');
            const spare = sessions[i]!.wait?.srcPid;
            const r = await fence(sessions[i]!.src, plans[i]!, rec, o.signal, spare === undefined ? [] : [spare]);
            rec.status = 'fenced';
            rec.fencedAt = new Date().toISOString();
            rec.sessionsEnded += r.sessionsEnded;
            rec.sessionsInTransaction += r.sessionsInTransaction;
            d.fenceLsn = r.fenceLsn;
            // Not waited for inside the window: a crash before it lands leaves "fencing", which a rerun and --abort
            // treat as a fence that may stand (the fence is idempotent). Saves are queued in order, so a failure
            // here fails the next awaited save.
            store.save().catch(() => {});
          }
        }, () => pairs.map((p) => `${p.sourceDatabase} at ${store.db(p.sourceDatabase).fenceLsn}`).join(', '));
        faultPoint('cutover.after-fence');

        // Catch-up, sequences and the large-object check only need the fence: they run at the same time.
        const [reached, seqs] = await Promise.all([
          catchUp(x, store, sessions, initState, scope),
          phase(x, 'sequences', 'sequences from the source (never lowered)', async () => {
            const out = [];
            // On the fence's sessions: three new connections inside the window cost more than the reads.
            for (const [i] of pairs.entries()) out.push(await moveSequences(sessions[i]!.src, sessions[i]!.tgt));
            return out;
          }, (r) => `${r.reduce((n, q) => n + q.moved, 0)} moved`),
          // Logical replication does not carry large objects: with writers fenced, the target's are made the source's.
          phase(x, 'large-objects', 'large objects changed since init', async () => {
            const los = await Promise.all(pairs.map((p, i) => mirrorLargeObjects({
              source: p.sourceConn, target: p.targetConn, sessions: { source: sessions[i]!.src, target: sessions[i]!.tgt }, signal: o.signal,
              noOwner: initState?.options.noOwner ?? false, noPrivileges: initState?.options.noPrivileges ?? false,
            })));
            x.largeObjects = los;
            return los;
          }, (los) => `${los.reduce((n, l) => n + l.copied, 0)} copied, ${los.reduce((n, l) => n + l.removed, 0)} removed`),
        ]);
        if (!reached) {
          o.signal?.throwIfAborted();
          await phase(x, 'aborted', 'catch-up timed out: lift the fence', async () => {
            await unfenceAll(store, pairs);
            await removeCutoverState(o.stateDir);
          });
          return finish(x, store.state, 'catch-up-timeout', plan, null, false);
        }
        // Nor does it carry an extension's configuration tables: the target's rows are made the source's again.
        if (configs.some((c) => c.length)) {
          await phase(x, 'extension-data', "extensions' configuration rows", async () => {
            const out: ExtensionDataResult[] = [];
            for (const [i, p] of pairs.entries()) {
              if (!configs[i]!.length) continue;
              out.push(await copyExtensionData({
                source: p.sourceConn, target: p.targetConn, sessions: { source: sessions[i]!.src, target: sessions[i]!.tgt },
                rules: rulesFor(scope, p.sourceDatabase), relations: configs[i]!, warn: (m) => warn(x, `database ${p.sourceDatabase}: ${m}`), signal: o.signal,
              }));
            }
            return out;
          }, (rs) => rs.map(describeExtensionData).join('; '));
        }
        faultPoint('cutover.after-catch-up');
        for (const [i, q] of seqs.entries()) {
          if (q.missing.length) warn(x, `database ${pairs[i]!.sourceDatabase}: ${q.missing.length} sequences exist on the source only: ${q.missing.slice(0, 5).join(', ')}`);
        }
        faultPoint('cutover.after-sequences');

        const gatePairs: GatePair[] = pairs.map((p, i) => ({
          sourceDatabase: p.sourceDatabase, targetDatabase: p.targetDatabase, sourceConn: p.sourceConn, targetConn: p.targetConn, tables: looks[i]!.tables,
        }));
        gate = await phase(x, 'gate', `gate: verify ${o.verify}`, async () => {
          store.state.phase = 'gate';
          return o.gate({ mode: o.verify, source: o.source, target: o.target, stateDir: o.stateDir, scope, initState, pairs: gatePairs, jobs: o.jobs, signal: o.signal, progress: x.progress });
        }, (g) => (g.mode === 'none' ? 'skipped (--verify none)' : g.ok ? 'equal' : 'DIFFERENT'));
        if (!gate.ok) {
          await phase(x, 'aborted', 'the gate found differences: lift the fence', async () => {
            await unfenceAll(store, pairs);
            await removeCutoverState(o.stateDir);
          });
          return finish(x, store.state, 'gate-failed', plan, gate, false, seqs);
        }
        store.state.readyAt = new Date().toISOString();
        await store.save();
        faultPoint('cutover.after-gate');
        return await handOver(x, store, ids, gate, plan, seqs);
      } catch (err) {
        if (store.state.phase === 'hand-over' || store.state.phase === 'reverse' || store.state.phase === 'done') throw err;
        await closeSessions(sessions);
        sessions.length = 0;
        return await failed(err);
      } finally {
        await closeSessions(sessions);
      }
    }
    return await handOver(x, store, ids, gate, plan, []);
  } finally {
    await release?.();
  }
}

/** Per database pair: the fence's sessions, and the catch-up's (native subscription only). */
type Sessions = { src: pg.Client; tgt: pg.Client; wait: { src: pg.Client; tgt: pg.Client; srcPid: number } | undefined }[];

async function closeSessions(sessions: Sessions): Promise<void> {
  await Promise.all(sessions.flatMap((x2) => [x2.src, x2.tgt, x2.wait?.src, x2.wait?.tgt].map((c) => c?.end().catch(() => {}))));
}

/** init's slot of a pair (the name pgferry gives it when init's state does not say). */
function slotOf(initState: RunState | undefined, p: ReplicationPair): string {
  return initState?.databases[p.sourceDatabase]?.slot?.name ?? p.names.slot;
}

/**
 * Bring the target level with the fenced source, by method: the native
 * subscription confirms the fence LSN; the client applier runs here up to it;
 * the timestamp method runs one last round with delete detection. False when
 * --max-wait ran out first.
 */
async function catchUp(x: Ctx, store: CutoverStore, sessions: Sessions, initState: RunState | undefined, scope: ScopeSpec): Promise<boolean> {
  const { o, pairs } = x;
  if (x.method === 'timestamp') {
    return phase(x, 'final-round', 'final timestamp round with delete detection', async () => {
      store.state.phase = 'final-round';
      const r = await o.finalRound!({ source: o.source, target: o.target, stateDir: o.stateDir, scope, signal: o.signal, progress: x.progress });
      for (const d of r.databases) x.finalRound.set(d.sourceDatabase, { round: d.round, upserted: d.upserted, deleted: d.deleted });
      return true;
    }, () => [...x.finalRound.values()].map((d) => `round ${d.round}: ${d.upserted} upserted, ${d.deleted} deleted`).join('; '));
  }
  return phase(x, 'catch-up', x.method === 'client' ? 'apply up to the fence LSN (client applier)' : 'wait until the target has applied the fence LSN', async () => {
    store.state.phase = 'catch-up';
    const deadline = performance.now() + o.maxWaitMs;
    let reached = true;
    for (const [i, p] of pairs.entries()) {
      const d = store.db(p.sourceDatabase);
      const left = Math.max(0, deadline - performance.now());
      const r = x.method === 'client' ? await applyUntilFence(x, p, slotOf(initState, p), d.fenceLsn!, left) : await waitForApplied(sessions[i]!.wait!.src, p.names.slot, d.fenceLsn!, left, {
        signal: o.signal,
        poke: async () => {
          // The target's flush makes the apply worker's asynchronous commits confirmable; the worker, idle once it
          // has applied the fence, reports them only when woken (its own timer runs for a second), so the source's
          // flush then wakes the walsender, whose keepalive has the worker report at once.
          await flushWal(sessions[i]!.wait!.tgt);
          await flushWal(sessions[i]!.wait!.src);
        },
      });
      d.appliedLsn = r.appliedLsn;
      if (!r.reached) reached = false;
    }
    await store.save();
    return reached;
  });
}

/** The client applier in this process until the target has committed the fence LSN, at most maxWaitMs. */
async function applyUntilFence(x: Ctx, p: ReplicationPair, slot: string, fenceLsn: string, maxWaitMs: number): Promise<{ reached: boolean; appliedLsn: string }> {
  const timeout = AbortSignal.timeout(Math.max(1, Math.round(maxWaitMs)));
  const signal = x.o.signal ? AbortSignal.any([x.o.signal, timeout]) : timeout;
  return x.o.clientCatchUp!({ pair: p, stateDir: x.o.stateDir, slot, untilLsn: fenceLsn, signal, warn: (m) => warn(x, m), progress: x.progress });
}

const HAND_OVER_TITLE: Record<SyncMethod, string> = {
  native: 'hand over: subscription disabled and dropped, slot dropped',
  client: 'hand over: slot dropped on the source, replication origin dropped on the target',
  timestamp: 'hand over: the target is the primary (round state kept for cleanup)',
};

async function handOver(
  x: Ctx,
  store: CutoverStore,
  ids: { source: { systemIdentifier: string; major: number }; target: { systemIdentifier: string; major: number } },
  gate: GateResult | null,
  plan: CutoverPlan,
  seqs: Awaited<ReturnType<typeof moveSequences>>[],
): Promise<CutoverReport> {
  const { o, pairs } = x;
  try {
    store.state.phase = 'hand-over';
    await store.save();
    await phase(x, 'hand-over', HAND_OVER_TITLE[x.method], async () => {
      for (const p of pairs) {
        const d = store.db(p.sourceDatabase);
        // The timestamp method has nothing to drop: its round state stays for cleanup (and status) to read.
        if (x.method === 'timestamp') d.handOver = 'done';
        if (d.handOver === 'none' || d.handOver === 'subscription-dropped') {
          await withSource(p.sourceConn, async (s) => {
            if (d.handOver === 'none') {
              // The source's flush wakes the idle apply worker to see that it was disabled (it would wait up to a second).
              await withClient(p.targetConn, (c) => dropForwardSubscription(c, p.names.subscription, () => flushWal(s)), { label: 'the target', applicationName: 'pgferry cutover' });
              d.handOver = 'subscription-dropped';
              await store.save();
              faultPoint('cutover.after-subscription-drop');
            }
            await dropSourceSlot(s, p.names.slot);
            d.handOver = 'slot-dropped';
            await store.save();
          });
        }
        // The client applier's position on the target; dropping is idempotent, so a rerun simply drops again.
        if (d.handOver === 'slot-dropped' && x.method === 'client') {
          await withClient(p.targetConn, (c) => dropOrigin(c, p.names.origin), { label: 'the target', applicationName: 'pgferry cutover' });
        }
        // Nothing of pgferry's replication is left on the target: its event triggers may fire from now on, as on the source
        // (read before the fence; again here when a rerun finishes a hand-over). No session at all where the source has none.
        const states = x.eventTriggers.get(p.sourceDatabase) ?? (await withSource(p.sourceConn, eventTriggerStates));
        if (states.size) {
          const triggers = await withClient(p.targetConn, (c) => enableEventTriggers(states, c, p.targetDatabase), { label: 'the target', applicationName: 'pgferry cutover' });
          for (const w of triggers) warn(x, w);
        }
        await carryDatabaseProperties(x, p);
      }
      await store.save();
    });
    if (o.reverse) {
      store.state.phase = 'reverse';
      await phase(x, 'reverse', 'reverse replication: target → old source', async () => {
        for (const p of pairs) {
          const d = store.db(p.sourceDatabase);
          const names = reverseNames({ sourceSystemIdentifier: ids.source.systemIdentifier, targetSystemIdentifier: ids.target.systemIdentifier }, p.sourceDatabase, p.targetDatabase);
          d.reverse = { ...names, created: false };
          await store.save();
          const pub = await withSource(p.sourceConn, (c) => readPublication(c, p.names.publication, ids.source.major));
          await withClient(p.targetConn, (c) => ensureReversePublication(c, names.publication, pub?.tables ?? [], pub?.viaRoot ?? false, ids.target.major), { label: 'the target', quietDdl: true });
          const w = await withSource(p.sourceConn, (c) => ensureReverseSubscription(c, names, o.target, p.targetDatabase, ids.source.major));
          if (w) warn(x, w);
          d.reverse.created = true;
          await store.save();
        }
      });
    }
    for (const p of pairs) store.db(p.sourceDatabase).handOver = 'done';
    store.state.phase = 'done';
    await store.save();
    return finish(x, store.state, 'handed-over', plan, gate, true, seqs);
  } catch (err) {
    if (err instanceof InterruptedError || o.signal?.aborted) {
      throw new InterruptedError('cutover interrupted during the hand-over; the source stays fenced: run pgferry cutover again to finish the hand-over');
    }
    throw new OperationError(`the hand-over failed part-way: ${errorMessage(err)}`, {
      hint: 'the source stays fenced and the target is not yet complete: run pgferry cutover again to finish the hand-over (--abort can no longer undo it)',
      cause: err,
    });
  }
}

/**
 * The target's materialized views hold what init computed (shared/materialized-views.ts): refreshed here, before the
 * fence, with --refresh-materialized-views (the target serves no one yet); else named, with what to do.
 */
async function materializedViews(x: Ctx, targets: pg.Client[]): Promise<void> {
  const views = await Promise.all(targets.map((c) => populatedMaterializedViews(c)));
  if (!views.some((v) => v.length)) return;
  if (!x.o.refreshMaterializedViews) {
    for (const [i, p] of x.pairs.entries()) {
      if (!views[i]!.length) continue;
      warn(x, `database "${p.targetDatabase}": materialized views hold what init computed, and replication refreshes none: ` +
        `${views[i]!.map((v) => displayName(v.schema, v.name)).join(', ')}; pass --refresh-materialized-views to refresh them before the fence, or REFRESH them after the hand-over`);
    }
    return;
  }
  await phase(x, 'refresh-views', 'materialized views refreshed on the target, before the fence', async () => {
    let refreshed = 0;
    for (const [i, p] of x.pairs.entries()) {
      const r = await refreshMaterializedViews(targets[i]!, views[i]!);
      refreshed += r.refreshed;
      for (const f of r.failed) warn(x, `database "${p.targetDatabase}": materialized view not refreshed: ${f}`);
    }
    return refreshed;
  }, (n) => `${n} refreshed`);
}

/**
 * The database's own properties as the source has them now (init carried them once; shared/database-properties.ts):
 * settings changed since, the comment, the connection limit and the privileges — these only as read before the fence
 * (a rerun that finishes a hand-over reads a fenced source, and leaves them). Settings only the target has stay.
 */
async function carryDatabaseProperties(x: Ctx, p: ReplicationPair): Promise<void> {
  const before = x.sourceExtras.get(p.sourceDatabase);
  const source = before ?? (await withSource(p.sourceConn, (c) => databaseExtras(c, p.sourceDatabase)));
  if (!source) return;
  const target = await withMaintenanceClient(p.targetConn, p.targetDatabase, (c) => databaseExtras(c, p.targetDatabase));
  if (!target) return;
  const changes = propertyChanges(p.targetDatabase, source, target, { privileges: !!before && !x.noPrivileges });
  if (changes.statements.length) {
    const r = await applyDatabaseProperties({ target: p.targetConn, targetDatabase: p.targetDatabase, warn: (m) => warn(x, m) }, changes.statements);
    x.progress({ kind: 'log', level: 'info', message: `database "${p.targetDatabase}": settings, privileges and comment as on the source now (${describeProperties(r)})` });
  }
  if (changes.leftAlone.length) {
    x.progress({ kind: 'log', level: 'info', message: `database "${p.targetDatabase}": left as they are, set on the target only: ${changes.leftAlone.join(', ')}` });
  }
}

function ms(from: string | null | undefined, to: string | null | undefined): number | null {
  if (!from || !to) return null;
  return Math.max(0, new Date(to).getTime() - new Date(from).getTime());
}

function baseReport(x: Ctx, s: CutoverState | undefined, outcome: CutoverOutcome, plan: CutoverPlan, gate: GateResult | null, dryRun: boolean): CutoverReport {
  return finish(x, s, outcome, plan, gate, outcome === 'already-handed-over' || outcome === 'dry-run', [], dryRun);
}

function finish(
  x: Ctx,
  s: CutoverState | undefined,
  outcome: CutoverOutcome,
  plan: CutoverPlan,
  gate: GateResult | null,
  ok: boolean,
  seqs: Awaited<ReturnType<typeof moveSequences>>[] = [],
  dryRun = false,
): CutoverReport {
  const dbs = Object.values(s?.databases ?? {});
  const fenceStart = dbs.map((d) => d.fence?.startedAt).filter((v): v is string => !!v).sort()[0];
  const databases: CutoverDatabaseReport[] = dbs.map((d, i) => ({
    sourceDatabase: d.sourceDatabase,
    targetDatabase: d.targetDatabase,
    fenceLsn: d.fenceLsn,
    appliedLsn: d.appliedLsn,
    tablesFenced: d.fence?.tables.length ?? 0,
    sessionsEnded: d.fence?.sessionsEnded ?? 0,
    sessionsInTransaction: d.fence?.sessionsInTransaction ?? 0,
    sequencesMoved: seqs[i]?.moved ?? 0,
    sequencesMissing: seqs[i]?.missing ?? [],
    largeObjects: x.largeObjects[i] ?? { copied: 0, removed: 0, bytes: 0 },
    finalRound: x.finalRound.get(d.sourceDatabase) ?? null,
    reverse: d.reverse ? { publication: d.reverse.publication, subscription: d.reverse.subscription } : null,
  }));
  // After a gate failure or a catch-up timeout the fence was lifted; a dry run changes nothing.
  const sourceFenced = (outcome === 'handed-over' || outcome === 'already-handed-over') && dbs.some((d) => mayBeFenced(d.fence));
  return {
    command: 'cutover',
    method: x.method,
    ok,
    exitCode: ok ? 0 : 1,
    outcome,
    dryRun,
    fenceLsn: dbs[0]?.fenceLsn ?? null,
    writeUnavailableMs: outcome === 'dry-run' ? null : ms(fenceStart, s?.readyAt ?? null),
    gateMs: gate ? gate.ms : null,
    phases: x.phases,
    sourceFenced,
    plan,
    databases: outcome === 'dry-run' ? [] : databases,
    gate,
    warnings: x.warnings,
    ms: Math.round(performance.now() - x.started),
  };
}

export interface AbortReport {
  command: 'cutover';
  abort: true;
  ok: boolean;
  /** Databases whose fence was lifted. */
  unfenced: string[];
  /** The method of the cutover undone (what the message says comes next depends on it). */
  method: SyncMethod;
  message: string;
}

/** `--abort`: lift the fence of an unfinished cutover (before the hand-over) and forget it. */
export async function abortCutover(o: Pick<CutoverOptions, 'source' | 'target' | 'stateDir' | 'scope' | 'progress'>): Promise<AbortReport> {
  const release = await acquireLock(o.stateDir);
  try {
    const s = await loadCutoverState(o.stateDir);
    if (!s || s.phase === 'aborted') {
      await removeCutoverState(o.stateDir);
      return { command: 'cutover', abort: true, ok: true, unfenced: [], method: s?.options.method ?? 'native', message: 'no unfinished cutover in this state directory: nothing to undo' };
    }
    const method = s.options.method ?? 'native';
    if (s.phase === 'done' || Object.values(s.databases).some((d) => d.handOver !== 'none')) {
      throw new UsageError(
        s.phase === 'done'
          ? 'the cutover is finished: the target is the primary and the source is fenced on purpose; --abort cannot undo a hand-over'
          : `the hand-over has begun (${method === 'client' ? 'the slot is being dropped' : 'the subscription is gone'}): --abort cannot undo it`,
        { hint: s.phase === 'done' ? 'to move back, migrate in the other direction (or use the reverse replication of --reverse)' : 'run pgferry cutover again to finish the hand-over' },
      );
    }
    const initState = await loadState(o.stateDir);
    const { pairs } = await resolvePairs(o.source, o.target, o.scope ?? initState?.scope ?? emptyScope(), initState, o.stateDir);
    const known = new Set(pairs.map((p) => p.sourceDatabase));
    const missing = Object.keys(s.databases).filter((d) => !known.has(d));
    if (missing.length) throw new UsageError(`the interrupted cutover fenced databases outside the scope given now: ${missing.join(', ')}`, { hint: 'run --abort with the scope of the cutover' });
    const store = new CutoverStore(o.stateDir, s);
    const unfenced = pairs.filter((p) => mayBeFenced(s.databases[p.sourceDatabase]?.fence ?? null)).map((p) => p.sourceDatabase);
    await unfenceAll(store, pairs);
    await removeCutoverState(o.stateDir);
    return {
      command: 'cutover',
      abort: true,
      ok: true,
      unfenced,
      method,
      message: unfenced.length ? `fence lifted on ${unfenced.join(', ')}; ${afterUnfence(method)}` : 'nothing was fenced; the unfinished cutover is forgotten',
    };
  } finally {
    await release();
  }
}
