/**
 * `cleanup`: remove everything pgferry created for the migration, on both
 * sides — the subscription (disabled, its slot detached, dropped) or the
 * client applier's replication origin, the publication, the slot, the table
 * synchronisation slots PostgreSQL made for the subscription — and the state
 * files. Objects are recognised only by the
 * names pgferry gives them (and, for table synchronisation slots, by the OID
 * of pgferry's subscription and the target's system identifier), so nothing
 * else is ever touched. Idempotent: what is already gone is skipped.
 */
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { emptyScope, type ScopeSpec } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import type { ProgressSink } from '../shared/progress.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { quoteIdent } from '../../postgres/identifiers.js';
import { acquireLock, discardState, loadState, statePaths, type RunState } from '../../state/checkpoint.js';
import { dropSlot, findSlot } from '../shared/slot.js';
import { listCandidateSlots, parseTablesyncSlot, readPublication, readSubscription } from '../shared/replication-catalog.js';
import { resolvePairs, type ReplicationPair, type ResolvedPairs } from '../shared/pairs.js';
import { loadSyncRecord, removeSyncRecord, syncRecordPath, type SyncRecord } from '../../state/sync-record.js';
import { dropSubscriptionKeepSlot } from '../shared/subscription.js';
import { orphanedTablesyncSlots, targetSubscriptionOids } from './orphans.js';
import { dropReverse, recordedReverse } from './reverse.js';
import { dropMaskTriggers, listMaskTriggers } from '../shared/masking-target.js';
import { dropStateSchema, hasState as hasTimestampState, STATE_SCHEMA } from '../shared/timestamp-state.js';
import { dropOrigin, originPosition } from '../shared/replication-origin.js';
import { clientApplierPath, removeClientApplier } from '../../state/client-applier.js';

export type CleanupKind = 'subscription' | 'origin' | 'publication' | 'slot' | 'tablesync-slot' | 'mask-trigger' | 'timestamp-state' | 'state';

export interface CleanupItem {
  side: 'source' | 'target' | 'local';
  kind: CleanupKind;
  /** Source database for source objects, target database for target objects, '' for state files. */
  database: string;
  name: string;
}

export interface CleanupOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  /** Databases when there is no state (default: the source connection's database). */
  scope?: ScopeSpec;
  /** Asked with the list of what will be dropped; false stops with nothing dropped (exit 2). */
  confirm?: (items: CleanupItem[]) => Promise<boolean>;
  /** List only. */
  dryRun?: boolean;
  progress?: ProgressSink;
}

export interface CleanupReport {
  command: 'cleanup';
  dryRun: boolean;
  /** What was found (and, unless dryRun, dropped). */
  items: CleanupItem[];
  seconds: number;
}

interface PairPlan {
  pair: ReplicationPair;
  subscription: string | null;
  subscriptionOid: number | null;
  /** The client applier's replication origin on the target (sync --applier client), when it exists. */
  origin: string | null;
  publication: boolean;
  slots: string[];
  tablesyncSlots: string[];
  /** Tables with the masking trigger sync created (data rules), "schema.table". */
  maskTriggers: string[];
  /** The target holds the state of sync --method timestamp (schema pgferry). */
  timestampState: boolean;
}

export async function runCleanup(o: CleanupOptions): Promise<CleanupReport> {
  const started = performance.now();
  const progress: ProgressSink = o.progress ?? (() => {});
  const release = o.dryRun ? undefined : await acquireLock(o.stateDir);
  try {
    const state = await loadState(o.stateDir);
    const record = await loadSyncRecord(o.stateDir);
    const { ids, pairs } = await resolvePairs(o.source, o.target, o.scope ?? state?.scope ?? emptyScope(), state, o.stateDir);
    const plans: PairPlan[] = [];
    for (const pair of pairs) {
      plans.push(await planPair(pair, ids, state, record));
    }

    const reverse = recordedReverse(o.stateDir);
    const items = listItems(plans, reverse, o.stateDir);

    if (o.dryRun || !items.length) return { command: 'cleanup', dryRun: !!o.dryRun, items, seconds: (performance.now() - started) / 1000 };
    if (o.confirm && !(await o.confirm(items))) throw new UsageError('cleanup cancelled; nothing was dropped');

    for (const r of reverse) await dropReverse(o.source, o.target, r);
    for (const p of plans) {
      await dropPair(p, items, progress);
    }
    await discardState(o.stateDir);
    await removeSyncRecord(o.stateDir);
    await removeClientApplier(o.stateDir);
    return { command: 'cleanup', dryRun: false, items, seconds: (performance.now() - started) / 1000 };
  } finally {
    await release?.();
    removeIfEmpty(o.stateDir);
  }
}

/** What of pgferry's exists for one pair: its subscription on the target; publication, slots and table synchronisation slots on the source. */
async function planPair(
  pair: ReplicationPair,
  ids: ResolvedPairs['ids'],
  state: RunState | undefined,
  record: SyncRecord | undefined,
): Promise<PairPlan> {
  let allSubOids: Set<number> | undefined;
  let origin: string | null = null;
  const sub = await withClient(pair.targetConn, async (c) => {
    allSubOids = await targetSubscriptionOids(c);
    if ((await originPosition(c, pair.names.origin)) !== null) origin = pair.names.origin;
    return readSubscription(c, pair.names.subscription);
  }, { label: 'the target' }).catch((err) => {
    // A target database that was never created holds nothing of ours.
    if ((err as { exitCode?: number }).exitCode === 3 && /does not exist/.test((err as Error).message)) return undefined;
    throw err;
  });
  const subOids = new Set<number>();
  if (sub) subOids.add(sub.oid);
  const rec = record?.databases[pair.sourceDatabase];
  if (rec) subOids.add(rec.subscriptionOid);
  const plan = await withClient(
    pair.sourceConn,
    async (c) => {
      const pub = await readPublication(c, pair.names.publication, ids.source.major);
      const slotNames = new Set([pair.names.slot]);
      const stSlot = state?.databases[pair.sourceDatabase]?.slot?.name;
      if (stSlot) slotNames.add(stSlot);
      if (rec?.slot) slotNames.add(rec.slot);
      const slots: string[] = [];
      for (const n of slotNames) if (await findSlot(c, n)) slots.push(n);
      const { slots: candidates } = await listCandidateSlots(c, ids.source.major);
      const tablesync = candidates
        .map((s) => ({ s, ts: parseTablesyncSlot(s.name) }))
        .filter(({ ts }) => ts && subOids.has(ts.subscriptionOid) && ts.systemIdentifier === ids.target.systemIdentifier)
        .map(({ s }) => s.name);
      // Those of subscriptions gone from the target (status lists them as leftovers).
      if (allSubOids) for (const n of orphanedTablesyncSlots(candidates, ids.target.systemIdentifier, allSubOids)) if (!tablesync.includes(n)) tablesync.push(n);
      return { publication: !!pub, slots, tablesyncSlots: tablesync };
    },
    { label: 'the source' },
  );
  const onTarget = await withClient(pair.targetConn, async (c) => ({ masks: await listMaskTriggers(c), timestamp: await hasTimestampState(c) }), { label: 'the target' }).catch((err) => {
    if ((err as { exitCode?: number }).exitCode === 3 && /does not exist/.test((err as Error).message)) return { masks: [], timestamp: false };
    throw err;
  });
  return {
    pair, subscription: sub?.name ?? null, subscriptionOid: sub?.oid ?? null, origin, ...plan, maskTriggers: onTarget.masks.map((t) => `${t.schema}.${t.table}`),
    timestampState: onTarget.timestamp,
  };
}

/** Everything the plans found, and the state files, in the order they are listed (and dropped). */
function listItems(plans: PairPlan[], reverse: ReturnType<typeof recordedReverse>, stateDir: string): CleanupItem[] {
  const items: CleanupItem[] = [];
  for (const p of plans) {
    if (p.subscription) items.push({ side: 'target', kind: 'subscription', database: p.pair.targetDatabase, name: p.subscription });
    if (p.origin) items.push({ side: 'target', kind: 'origin', database: p.pair.targetDatabase, name: p.origin });
    if (p.publication) items.push({ side: 'source', kind: 'publication', database: p.pair.sourceDatabase, name: p.pair.names.publication });
    for (const s of p.slots) items.push({ side: 'source', kind: 'slot', database: p.pair.sourceDatabase, name: s });
    for (const s of p.tablesyncSlots) items.push({ side: 'source', kind: 'tablesync-slot', database: p.pair.sourceDatabase, name: s });
    for (const t of p.maskTriggers) items.push({ side: 'target', kind: 'mask-trigger', database: p.pair.targetDatabase, name: t });
    if (p.timestampState) items.push({ side: 'target', kind: 'timestamp-state', database: p.pair.targetDatabase, name: STATE_SCHEMA });
  }
  // The replication back to the old source that `cutover --reverse` set up.
  for (const r of reverse) {
    items.push({ side: 'source', kind: 'subscription', database: r.sourceDatabase, name: r.subscription });
    items.push({ side: 'target', kind: 'publication', database: r.targetDatabase, name: r.publication });
  }
  const paths = statePaths(stateDir);
  for (const f of [paths.state, syncRecordPath(stateDir), clientApplierPath(stateDir), paths.work]) if (existsSync(f)) items.push({ side: 'local', kind: 'state', database: '', name: f });
  return items;
}

/** Drop one pair's objects: the subscription first (its slot detached), then the publication and the slots. */
async function dropPair(p: PairPlan, items: CleanupItem[], progress: ProgressSink): Promise<void> {
  const id = `cleanup/${p.pair.sourceDatabase}`;
  progress({ kind: 'start', id, title: `database ${p.pair.sourceDatabase} → ${p.pair.targetDatabase}` });
  try {
    if (p.subscription) {
      await withClient(p.pair.targetConn, async (c) => {
        const sub = await readSubscription(c, p.subscription!);
        if (!sub) return;
        if (sub.slotName === null) await c.query(`DROP SUBSCRIPTION ${quoteIdent(sub.name)}`);
        else await dropSubscriptionKeepSlot(c, sub.name);
      }, { label: 'the target', quietDdl: true });
    }
    if (p.origin) await withClient(p.pair.targetConn, (c) => dropOrigin(c, p.origin!), { label: 'the target', quietDdl: true });
    if (p.maskTriggers.length) await withClient(p.pair.targetConn, (c) => dropMaskTriggers(c), { label: 'the target', quietDdl: true });
    if (p.timestampState) await withClient(p.pair.targetConn, (c) => dropStateSchema(c), { label: 'the target', quietDdl: true });
    await withClient(p.pair.sourceConn, async (c) => {
      if (p.publication) await c.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(p.pair.names.publication)}`);
      // The walsender of the subscription just dropped lets go of its slot within moments: dropSlot waits for that.
      for (const s of [...p.slots, ...p.tablesyncSlots]) await dropSlot(c, s, 30_000);
      // A source whose database or roles default to read-only must still let us drop our objects (every session is read-write by default; said again here).
    }, { label: 'the source', settings: { default_transaction_read_only: 'off' }, quietDdl: true });
    progress({ kind: 'end', id, status: 'ok', detail: `${items.filter((i) => i.database === p.pair.sourceDatabase || i.database === p.pair.targetDatabase).length} objects dropped` });
  } catch (err) {
    progress({ kind: 'end', id, status: 'fail', detail: (err as Error).message.split('\n')[0] });
    throw operationError(err, `cleanup of database "${p.pair.sourceDatabase}"`);
  }
}

function removeIfEmpty(dir: string): void {
  try {
    if (existsSync(dir) && readdirSync(dir).length === 0) rmdirSync(dir);
  } catch {
    // Not ours to insist on.
  }
}
