/**
 * Server-wide settings of the source that logical replication depends on:
 * version, wal_level, room for one slot per database (and WAL senders for the
 * subscriptions plus init's snapshot connection), the WAL a slot may retain,
 * and whether the source is a standby.
 */
import type pg from 'pg';
import { quoteLiteral } from '../../postgres/identifiers.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export const MIN_SOURCE_MAJOR = 12;

export interface SlotInfo {
  name: string;
  type: string;
  active: boolean;
  database: string | null;
}

export interface SourceServerFacts {
  major: number;
  inRecovery: boolean;
  walLevel: string;
  maxReplicationSlots: number;
  maxWalSenders: number;
  /** Megabytes; -1 unlimited; null when the setting does not exist (PostgreSQL 12). */
  maxSlotWalKeepSizeMb: number | null;
  /** As the server shows it, e.g. "1GB". */
  maxSlotWalKeepSizeText: string | null;
  hotStandbyFeedback: boolean;
  slots: SlotInfo[];
  /** WAL sender processes seen (others' sessions may be hidden without pg_read_all_stats). */
  walSendersSeen: number;
  /** The current user may see every session (superuser or pg_read_all_stats). */
  seesAllSessions: boolean;
}

export async function gatherSourceServer(client: pg.Client, major: number, inRecovery: boolean): Promise<SourceServerFacts> {
  const { rows: settings } = await client.query<{ name: string; setting: string; shown: string }>(
    `SELECT name, setting, current_setting(name) AS shown FROM pg_settings
      WHERE name IN ('wal_level', 'max_replication_slots', 'max_wal_senders', 'max_slot_wal_keep_size', 'hot_standby_feedback')`,
  );
  const get = (n: string) => settings.find((s) => s.name === n);
  const { rows: slots } = await client.query<SlotInfo>(
    'SELECT slot_name AS name, slot_type AS type, active, database FROM pg_replication_slots ORDER BY slot_name',
  );
  const { rows: seen } = await client.query<{ walsenders: number; sees_all: boolean }>(
    `SELECT (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'walsender') AS walsenders,
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
              OR pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER') AS sees_all`,
  );
  const keep = get('max_slot_wal_keep_size');
  return {
    major,
    inRecovery,
    walLevel: get('wal_level')?.setting ?? 'unknown',
    maxReplicationSlots: Number(get('max_replication_slots')?.setting ?? 0),
    maxWalSenders: Number(get('max_wal_senders')?.setting ?? 0),
    maxSlotWalKeepSizeMb: keep ? Number(keep.setting) : null,
    maxSlotWalKeepSizeText: keep ? keep.shown : null,
    hotStandbyFeedback: get('hot_standby_feedback')?.setting === 'on',
    slots,
    walSendersSeen: seen[0]?.walsenders ?? 0,
    seesAllSessions: !!seen[0]?.sees_all,
  };
}

export interface SlotDemand {
  /** Databases in scope: one slot (and one subscription's WAL sender) each. */
  databases: number;
  /** Names of pgferry slots this run would create that already exist (a rerun after init). */
  existingOwnSlots: string[];
}

const restart = 'then restart PostgreSQL (this setting takes effect only at server start)';

export function checkSourceServer(f: SourceServerFacts, demand: SlotDemand): CheckResult[] {
  return [
    checkVersion(f),
    checkWalLevel(f),
    checkReplicationSlots(f, demand),
    checkWalSenders(f, demand),
    checkSlotWalKeepSize(f),
    checkRecovery(f),
  ];
}

function checkVersion(f: SourceServerFacts): CheckResult {
  return f.major >= MIN_SOURCE_MAJOR
    ? ok('source.version', 'source', `PostgreSQL ${f.major} supports logical replication with pgoutput`)
    : fail(
        'source.version',
        'source',
        `PostgreSQL ${f.major} is too old: pgferry needs PostgreSQL ${MIN_SOURCE_MAJOR} or later on the source`,
        `upgrade the source to PostgreSQL ${MIN_SOURCE_MAJOR} or later (pg_upgrade) before migrating with pgferry`,
      );
}

function checkWalLevel(f: SourceServerFacts): CheckResult {
  return f.walLevel === 'logical'
    ? ok('source.wal_level', 'source', 'wal_level = logical')
    : fail(
        'source.wal_level',
        'source',
        `wal_level = ${f.walLevel}: logical replication needs wal_level = logical`,
        `ALTER SYSTEM SET wal_level = logical; ${restart}`,
      );
}

/** Room for one slot per database in scope. */
function checkReplicationSlots(f: SourceServerFacts, demand: SlotDemand): CheckResult {
  // Slots pgferry already created for this pair are reused, not created again.
  const own = new Set(demand.existingOwnSlots);
  const slotsNeeded = Math.max(0, demand.databases - own.size);
  const slotsUsed = f.slots.filter((s) => !own.has(s.name)).length + own.size;
  const slotsFree = Math.max(0, f.maxReplicationSlots - slotsUsed);
  const slotText = `max_replication_slots = ${f.maxReplicationSlots}: ${slotsUsed} in use, ${slotsFree} free, ${slotsNeeded} needed (one per database)`;
  if (slotsFree >= slotsNeeded) return ok('source.replication_slots', 'source', slotText);
  const inactive = f.slots.filter((s) => !s.active && !own.has(s.name));
  return fail(
    'source.replication_slots',
    'source',
    `not enough replication slots: ${slotText}`,
    `ALTER SYSTEM SET max_replication_slots = ${slotsUsed + slotsNeeded}; ${restart}` +
      (inactive.length ? `; or drop slots nobody uses: ${inactive.map((s) => `SELECT pg_drop_replication_slot(${quoteLiteral(s.name)});`).join(' ')}` : ''),
    { details: f.slots.map((s) => `${s.name} (${s.type}${s.database ? `, database ${s.database}` : ''}, ${s.active ? 'active' : 'inactive'})`) },
  );
}

function checkWalSenders(f: SourceServerFacts, demand: SlotDemand): CheckResult {
  // One WAL sender per subscription, plus init's replication connection that holds the snapshot.
  const sendersNeeded = demand.databases + 1;
  const activeSlots = f.slots.filter((s) => s.active).length;
  const sendersUsed = Math.max(f.walSendersSeen, activeSlots);
  const sendersFree = Math.max(0, f.maxWalSenders - sendersUsed);
  const hidden = f.seesAllSessions ? '' : ' (other users\' sessions are hidden from this user; the count may be low)';
  const senderText = `max_wal_senders = ${f.maxWalSenders}: ${sendersUsed} in use, ${sendersFree} free, ${sendersNeeded} needed (one per database plus one for init's snapshot)${hidden}`;
  return sendersFree >= sendersNeeded
    ? ok('source.wal_senders', 'source', senderText)
    : fail('source.wal_senders', 'source', `not enough WAL senders: ${senderText}`, `ALTER SYSTEM SET max_wal_senders = ${sendersUsed + sendersNeeded}; ${restart}`);
}

/** Whether an abandoned slot can fill the disk with retained WAL. */
function checkSlotWalKeepSize(f: SourceServerFacts): CheckResult {
  const keepFix = "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();  -- choose what the disk holding pg_wal can spare";
  if (f.maxSlotWalKeepSizeMb === null) {
    return warn(
      'source.max_slot_wal_keep_size',
      'source',
      `PostgreSQL ${f.major} cannot limit the WAL a replication slot retains: an abandoned slot keeps WAL until the disk is full`,
      'watch retained WAL with pgferry status, and run pgferry cleanup as soon as a migration is abandoned (PostgreSQL 13+ offers max_slot_wal_keep_size)',
    );
  } else if (f.maxSlotWalKeepSizeMb < 0) {
    return warn(
      'source.max_slot_wal_keep_size',
      'source',
      'max_slot_wal_keep_size = -1 (unlimited): an abandoned slot keeps WAL until the disk is full',
      keepFix,
    );
  } else {
    return ok(
      'source.max_slot_wal_keep_size',
      'source',
      `max_slot_wal_keep_size = ${f.maxSlotWalKeepSizeText}: a slot that falls further behind is invalidated (the migration then starts over)`,
    );
  }
}

/** A standby can decode logically only from PostgreSQL 16. */
function checkRecovery(f: SourceServerFacts): CheckResult {
  if (!f.inRecovery) {
    return ok('source.recovery', 'source', 'the source is a primary (not in recovery)');
  } else if (f.major >= 16) {
    return warn(
      'source.recovery',
      'source',
      `the source is a standby: PostgreSQL ${f.major} can decode logically on a standby, but only with wal_level = logical on the primary too${f.hotStandbyFeedback ? '' : ' and hot_standby_feedback = on (it is off)'}; slot creation waits for activity on the primary`,
      f.hotStandbyFeedback
        ? 'make sure the primary runs with wal_level = logical, or point --source at the primary'
        : 'ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();  -- on the standby; and wal_level = logical on the primary, or point --source at the primary',
    );
  } else {
    return fail(
      'source.recovery',
      'source',
      `the source is a standby (in recovery): PostgreSQL ${f.major} cannot create logical replication slots on a standby (16+ can)`,
      'point --source at the primary server',
    );
  }
}
