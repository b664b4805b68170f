/**
 * From the facts of a database pair to its status: health, lag, tables,
 * problems with what to do, and pgferry objects left without a counterpart.
 * Pure functions (unit-tested): no queries here.
 *
 *   broken  (exit 2) subscription or slot missing, subscription disabled,
 *                    apply worker not running or not connected, slot lost
 *   lagging (exit 1) tables still synchronising, or lag above --max-lag
 *   healthy (exit 0)
 *
 * A NULL replay lag while the walsender streams means idle and caught up: 0 s.
 */
import { formatBytes, formatLag, formatSeconds } from '../../units.js';
import { TABLE_STATE_NAMES, parseTablesyncSlot, type SourceSlot, type TableSyncState } from './replication-catalog.js';
import { displayName } from '../../postgres/identifiers.js';
import { isPgferryName } from '../../state/object-names.js';
import type { PairFacts, TargetSubscriptionFacts } from './health-facts.js';

export type Health = 'healthy' | 'lagging' | 'broken';

export const HEALTH_EXIT: Record<Health, 0 | 1 | 2> = { healthy: 0, lagging: 1, broken: 2 };

export interface MaxLagLimits {
  bytes: number | null;
  seconds: number | null;
}

export const DEFAULT_MAX_LAG: MaxLagLimits = { bytes: 16 * 1024 * 1024, seconds: 30 };

export interface Problem {
  level: 'broken' | 'lagging' | 'warning';
  message: string;
  fix: string | null;
}

export interface Leftover {
  side: 'source' | 'target';
  kind: 'slot' | 'tablesync-slot' | 'publication';
  name: string;
  detail: string;
}

export interface TableStatus {
  schema: string;
  name: string;
  state: TableSyncState;
  stateName: string;
}

export interface DatabaseStatus {
  sourceDatabase: string;
  targetDatabase: string;
  health: Health;
  problems: Problem[];
  sourceLsn: string;
  /** `masked`: tables whose masked columns the publication leaves out (data rules), with those columns. */
  publication: { name: string; exists: boolean; tables: number; masked: { schema: string; name: string; columns: string[] }[] };
  slot: {
    name: string;
    exists: boolean;
    active: boolean;
    walStatus: string | null;
    retainedBytes: number | null;
    confirmedFlushLsn: string | null;
  };
  lag: { bytes: number | null; seconds: number | null };
  /** Who applies the stream: the native subscription, or pgferry's client applier (sync --applier client). */
  applier: 'native' | 'client';
  /** The client applier: running (a live process with a fresh heartbeat), and the position committed on the target. */
  client: { running: boolean; pid: number | null; heartbeatAt: string | null; appliedLsn: string | null } | null;
  subscription: {
    name: string;
    exists: boolean;
    enabled: boolean;
    workerRunning: boolean;
    workerPid: number | null;
    receivedLsn: string | null;
    appliedLsn: string | null;
    lastMessageAt: string | null;
    syncWorkers: number;
    applyErrors: number | null;
    syncErrors: number | null;
  };
  tables: { total: number; replicating: number; synchronising: number; list: TableStatus[] };
  leftovers: Leftover[];
}

export function assess(f: PairFacts, targetSystemIdentifier: string, maxLag: MaxLagLimits): DatabaseStatus {
  const names = f.pair.names;
  const slot = f.source.slots.find((s) => s.name === names.slot);
  const sub = f.target.subscriptions.find((s) => s.name === names.subscription);
  const problems: Problem[] = [];
  const warning = (message: string, fix: string | null) => problems.push({ level: 'warning', message, fix });

  const tables: TableStatus[] = (sub?.tables ?? []).map((t) => ({ schema: t.schema, name: t.name, state: t.state, stateName: TABLE_STATE_NAMES[t.state] ?? t.state }));
  const replicating = tables.filter((t) => t.state === 'r').length;
  const workerRunning = !!sub?.worker;
  const streaming = slot?.active === true && slot.walsenderState === 'streaming';
  const lag = {
    bytes: slot?.lagBytes ?? null,
    // NULL replay_lag from a streaming walsender: idle and caught up.
    seconds: slot && streaming ? (slot.replayLagSeconds ?? 0) : null,
  };

  problems.push(...(f.client ? clientProblems(f, slot, lag, maxLag) : streamProblems({ f, slot, sub, tables, replicating, workerRunning, lag }, maxLag)));

  const leftovers = findLeftovers(f, targetSystemIdentifier, sub?.oid ?? null, !!slot, !!sub);
  for (const l of leftovers) warning(`${l.side} ${l.kind} ${l.name}: ${l.detail}`, 'pgferry cleanup removes pgferry\'s objects');

  const health: Health = problems.some((p) => p.level === 'broken') ? 'broken' : problems.some((p) => p.level === 'lagging') ? 'lagging' : 'healthy';
  return {
    sourceDatabase: f.pair.sourceDatabase,
    targetDatabase: f.pair.targetDatabase,
    health,
    problems,
    sourceLsn: f.source.currentLsn,
    publication: { name: names.publication, exists: f.source.publication.exists, tables: f.source.publication.tables, masked: f.source.publication.masked ?? [] },
    slot: {
      name: names.slot, exists: !!slot, active: !!slot?.active, walStatus: slot?.walStatus ?? null, retainedBytes: slot?.retainedBytes ?? null,
      confirmedFlushLsn: slot?.confirmedFlushLsn ?? null,
    },
    lag,
    applier: f.client ? 'client' : 'native',
    client: f.client ? { running: f.client.running, pid: f.client.pid, heartbeatAt: f.client.heartbeatAt, appliedLsn: f.client.originLsn } : null,
    subscription: {
      name: names.subscription, exists: !!sub, enabled: !!sub?.enabled, workerRunning, workerPid: sub?.worker?.pid ?? null,
      receivedLsn: sub?.worker?.receivedLsn ?? null, appliedLsn: sub?.worker?.latestEndLsn ?? null, lastMessageAt: sub?.worker?.lastMessageAt ?? null,
      syncWorkers: sub?.syncWorkers ?? 0, applyErrors: sub?.applyErrors ?? null, syncErrors: sub?.syncErrors ?? null,
    },
    tables: { total: tables.length, replicating, synchronising: tables.length - replicating, list: tables },
    leftovers,
  };
}

/** One pair's facts as assess has read them. */
interface Observed {
  f: PairFacts;
  slot: SourceSlot | undefined;
  sub: TargetSubscriptionFacts | undefined;
  tables: TableStatus[];
  replicating: number;
  workerRunning: boolean;
  lag: DatabaseStatus['lag'];
}

/** What is wrong with the stream: subscription or slot missing, workers not running, tables still synchronising, lag over the limit, WAL at risk. */
function streamProblems(s: Observed, maxLag: MaxLagLimits): Problem[] {
  const { f, slot, sub, tables, replicating, workerRunning, lag } = s;
  const names = f.pair.names;
  const problems: Problem[] = [];
  const broken = (message: string, fix: string | null) => problems.push({ level: 'broken', message, fix });
  const lagging = (message: string, fix: string | null) => problems.push({ level: 'lagging', message, fix });
  const warning = (message: string, fix: string | null) => problems.push({ level: 'warning', message, fix });

  if (!sub) {
    if (slot) {
      broken(`subscription ${names.subscription} does not exist in target database "${f.pair.targetDatabase}": nothing is replicating, and slot ${names.slot} keeps WAL on the source (${formatBytes(slot.retainedBytes)})`, 'run pgferry sync (or pgferry cleanup to drop the slot)');
    } else {
      broken(`no replication is set up for "${f.pair.sourceDatabase}" → "${f.pair.targetDatabase}" (no slot ${names.slot}, no subscription ${names.subscription})`, 'run pgferry init, then pgferry sync');
    }
  } else {
    if (!slot) {
      broken(`replication slot ${names.slot} is missing on the source: the subscription cannot stream, and changes made since it disappeared never reach the target`, 'run pgferry cleanup, then pgferry init --restart and pgferry sync');
    } else if (slot.walStatus === 'lost') {
      broken(`replication slot ${names.slot} has lost WAL it needed (wal_status lost, max_slot_wal_keep_size exceeded): the target has missed changes`, 'run pgferry cleanup, then pgferry init --restart and pgferry sync; raise max_slot_wal_keep_size');
    }
    if (!sub.enabled) {
      broken(`subscription ${names.subscription} is disabled: changes pile up on the source`, `run pgferry sync, or on the target: ALTER SUBSCRIPTION ${names.subscription} ENABLE`);
    } else if (!workerRunning) {
      broken(`the apply worker of subscription ${names.subscription} is not running${errorsText(sub.applyErrors, sub.syncErrors)}`, 'read the target server\'s log for the error (it retries by itself once the cause is fixed)');
    } else if (slot && !slot.active) {
      broken(`slot ${names.slot} is not in use: the apply worker is not connected to the source${errorsText(sub.applyErrors, sub.syncErrors)}`, 'read the target server\'s log for the error (connection, authentication, or publication problems)');
    } else if ((sub.applyErrors ?? 0) + (sub.syncErrors ?? 0) > 0) {
      warning(`subscription ${names.subscription} has recorded${errorsText(sub.applyErrors, sub.syncErrors).replace(/^ \(|\)$/g, ' ')}since its statistics were reset; it is running now`, `after reading the target's log: SELECT pg_stat_reset_subscription_stats(${sub.oid})`);
    }
    const syncing = tables.length - replicating;
    if (syncing > 0) {
      const names = tables.filter((t) => t.state !== 'r').slice(0, 5).map((t) => `${displayName(t.schema, t.name)} (${t.stateName})`);
      lagging(`${syncing} of ${tables.length} tables are still synchronising: ${names.join(', ')}${syncing > 5 ? ', …' : ''}`, 'wait: PostgreSQL copies them and hands them over to the stream');
    }
    if (problems.every((p) => p.level !== 'broken')) {
      const overBytes = maxLag.bytes !== null && lag.bytes !== null && lag.bytes > maxLag.bytes;
      const overSeconds = maxLag.seconds !== null && lag.seconds !== null && lag.seconds > maxLag.seconds;
      if (overBytes || overSeconds) {
        const limit = [maxLag.bytes !== null ? formatBytes(maxLag.bytes) : null, maxLag.seconds !== null ? formatSeconds(maxLag.seconds) : null].filter(Boolean).join(' / ');
        lagging(`behind by ${formatBytes(lag.bytes)} / ${formatSeconds(lag.seconds)} (limit ${limit})`, 'wait and check again; if it keeps growing, the target applies more slowly than the source writes');
      }
    }
  }
  if (slot && (slot.walStatus === 'unreserved' || slot.walStatus === 'extended') && sub) {
    warning(`slot ${names.slot} retains ${formatBytes(slot.retainedBytes)} of WAL (wal_status ${slot.walStatus})`, 'make sure the target keeps up; the source may remove WAL the slot needs once max_slot_wal_keep_size is exceeded');
  }
  return problems;
}

/** The client applier's stream: the slot must be there; not running is a warning (sync --applier client continues from the saved position). */
function clientProblems(f: PairFacts, slot: SourceSlot | undefined, lag: DatabaseStatus['lag'], maxLag: MaxLagLimits): Problem[] {
  const names = f.pair.names;
  const problems: Problem[] = [];
  if (!slot) {
    problems.push({ level: 'broken', message: `replication slot ${names.slot} is missing on the source: the client applier cannot stream, and changes made since it disappeared never reach the target`, fix: 'run pgferry cleanup, then pgferry init --restart and pgferry sync' });
    return problems;
  }
  if (slot.walStatus === 'lost') {
    problems.push({ level: 'broken', message: `replication slot ${names.slot} has lost WAL it needed (wal_status lost): the target has missed changes`, fix: 'run pgferry cleanup, then pgferry init --restart and pgferry sync; raise max_slot_wal_keep_size' });
  }
  if (!f.client!.running) {
    problems.push({ level: 'warning', message: `the client applier is not running: changes wait in slot ${names.slot} (${formatBytes(slot.retainedBytes)} of WAL retained)`, fix: 'run pgferry sync --applier client (it continues from the position saved on the target)' });
  }
  const overBytes = maxLag.bytes !== null && lag.bytes !== null && lag.bytes > maxLag.bytes;
  const overSeconds = maxLag.seconds !== null && lag.seconds !== null && lag.seconds > maxLag.seconds;
  if (problems.every((p) => p.level !== 'broken') && (overBytes || overSeconds)) {
    problems.push({ level: 'lagging', message: `behind by ${formatBytes(lag.bytes)} / ${formatSeconds(lag.seconds)}`, fix: f.client!.running ? 'wait and check again' : 'run pgferry sync --applier client' });
  }
  return problems;
}

function errorsText(apply: number | null, sync: number | null): string {
  const parts: string[] = [];
  if (apply) parts.push(`${apply} apply error${apply === 1 ? '' : 's'}`);
  if (sync) parts.push(`${sync} table-sync error${sync === 1 ? '' : 's'}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/** pgferry objects without a counterpart: another pgferry slot nobody uses, table-sync slots left behind, a lone publication. */
function findLeftovers(f: PairFacts, targetSysid: string, ourSubOid: number | null, haveSlot: boolean, haveSub: boolean): Leftover[] {
  const out: Leftover[] = [];
  const names = f.pair.names;
  const usedSlots = new Set(f.target.subscriptions.map((s) => s.slotName).filter((s): s is string => !!s));
  for (const s of f.source.slots) {
    if (s.name === names.slot) continue;
    const ts = parseTablesyncSlot(s.name);
    if (ts) {
      if (ts.systemIdentifier !== targetSysid || s.active) continue;
      const sub = f.target.subscriptions.find((x) => x.oid === ts.subscriptionOid);
      if (ts.subscriptionOid === ourSubOid && sub) {
        const t = sub.tables.find((x) => x.oid === ts.relid);
        if (!t || t.state === 'r') out.push({ side: 'source', kind: 'tablesync-slot', name: s.name, detail: `table synchronisation slot of ${names.subscription} for a table that ${t ? 'is already replicating' : 'is no longer subscribed'}; it keeps ${formatBytes(s.retainedBytes)} of WAL` });
      } else if (!f.target.allSubscriptionOids.includes(ts.subscriptionOid)) {
        out.push({ side: 'source', kind: 'tablesync-slot', name: s.name, detail: `table synchronisation slot of a subscription that no longer exists on the target; it keeps ${formatBytes(s.retainedBytes)} of WAL` });
      }
      continue;
    }
    if (isPgferryName(s.name) && !s.active && !usedSlots.has(s.name)) {
      out.push({ side: 'source', kind: 'slot', name: s.name, detail: `pgferry slot that no subscription of target database "${f.pair.targetDatabase}" uses (another migration, or left behind); it keeps ${formatBytes(s.retainedBytes)} of WAL` });
    }
  }
  if (f.source.publication.exists && !haveSlot && !haveSub) {
    out.push({ side: 'source', kind: 'publication', name: names.publication, detail: 'publication without slot or subscription' });
  }
  return out;
}

export interface Verdict {
  health: Health;
  exitCode: 0 | 1 | 2;
  text: string;
}

/** The one line printed first. */
export function verdict(dbs: DatabaseStatus[]): Verdict {
  const worst: Health = dbs.some((d) => d.health === 'broken') ? 'broken' : dbs.some((d) => d.health === 'lagging') ? 'lagging' : 'healthy';
  const maxBytes = dbs.reduce<number | null>((m, d) => (d.lag.bytes === null ? m : Math.max(m ?? 0, d.lag.bytes)), null);
  const maxSecs = dbs.reduce<number | null>((m, d) => (d.lag.seconds === null ? m : Math.max(m ?? 0, d.lag.seconds)), null);
  const lag = formatLag({ bytes: maxBytes, seconds: maxSecs });
  if (worst === 'healthy') return { health: worst, exitCode: 0, text: `in sync · ${lag}` };
  const level = worst === 'broken' ? 'broken' : 'lagging';
  const d = dbs.find((x) => x.health === worst)!;
  const p = d.problems.find((x) => x.level === level)!;
  const where = dbs.length > 1 ? `${d.sourceDatabase}: ` : '';
  const more = dbs.filter((x) => x.health !== 'healthy').length - 1;
  const text = `${worst === 'broken' ? 'BROKEN' : 'lagging'} · ${where}${p.message}${p.fix ? ` — ${p.fix}` : ''}${more > 0 ? ` (+${more} more database${more > 1 ? 's' : ''})` : ''}${worst === 'lagging' ? ` · ${lag}` : ''}`;
  return { health: worst, exitCode: HEALTH_EXIT[worst], text };
}
