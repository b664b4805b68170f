/**
 * Catalog reads about the replication objects pgferry creates: the
 * publication on the source, the subscription and its per-table states on
 * the target, the slots on the source (pgferry's own and the table
 * synchronisation slots PostgreSQL creates for a subscription), and the
 * replication origin that remembers how far the target has applied.
 * Shared by sync, status and cleanup.
 */
import type pg from 'pg';
import { WAL_END_SQL } from '../../postgres/lsn.js';

export interface PublicationInfo {
  oid: number;
  name: string;
  viaRoot: boolean;
  /** Members as the source lists them: schema, table, row filter as stored (deparsed) or null. */
  tables: { oid: number; schema: string; name: string; filter: string | null }[];
}

/** The publication of that name in the connected database, if any. */
export async function readPublication(client: pg.Client, name: string, major: number): Promise<PublicationInfo | undefined> {
  const { rows } = await client.query<{ oid: number; pubname: string; via_root: boolean }>(
    `SELECT oid::int AS oid, pubname, ${major >= 13 ? 'pubviaroot' : 'false'} AS via_root FROM pg_publication WHERE pubname = $1`,
    [name],
  );
  const p = rows[0];
  if (!p) return undefined;
  const filterExpr = major >= 15 ? 'pg_get_expr(pr.prqual, pr.prrelid)' : 'NULL::text';
  const { rows: tables } = await client.query<{ oid: number; schema: string; name: string; filter: string | null }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, ${filterExpr} AS filter
       FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE pr.prpubid = $1 ORDER BY n.nspname, c.relname`,
    [p.oid],
  );
  return { oid: p.oid, name: p.pubname, viaRoot: p.via_root, tables };
}

export interface SubscriptionInfo {
  oid: number;
  name: string;
  enabled: boolean;
  /** null after SET (slot_name = NONE). */
  slotName: string | null;
  publications: string[];
  owner: string;
}

/** The subscription of that name in the connected database, if any (never reads the connection string). */
export async function readSubscription(client: pg.Client, name: string): Promise<SubscriptionInfo | undefined> {
  const { rows } = await client.query<{ oid: number; subname: string; subenabled: boolean; subslotname: string | null; pubs: string[]; owner: string }>(
    `SELECT s.oid::int AS oid, s.subname, s.subenabled, s.subslotname::text AS subslotname, s.subpublications::text[] AS pubs,
            pg_get_userbyid(s.subowner) AS owner
       FROM pg_subscription s
      WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [name],
  );
  const s = rows[0];
  if (!s) return undefined;
  return { oid: s.oid, name: s.subname, enabled: s.subenabled, slotName: s.subslotname, publications: s.pubs, owner: s.owner };
}

/** pg_subscription_rel states: i init, d copying, f finished copy, s synced, r ready (replicating). */
export type TableSyncState = 'i' | 'd' | 'f' | 's' | 'r';

export const TABLE_STATE_NAMES: Record<TableSyncState, string> = {
  i: 'waiting to copy',
  d: 'copying',
  f: 'copied, catching up',
  s: 'catching up',
  r: 'replicating',
};

export interface SubscriptionTable {
  oid: number;
  schema: string;
  name: string;
  state: TableSyncState;
  lsn: string | null;
}

/** Per-table states of a subscription (srsubstate lives in pg_subscription_rel, not pg_stat_subscription). */
export async function subscriptionTables(client: pg.Client, subOid: number): Promise<SubscriptionTable[]> {
  const { rows } = await client.query<{ oid: number; schema: string; name: string; state: TableSyncState; lsn: string | null }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, sr.srsubstate::text AS state, sr.srsublsn::text AS lsn
       FROM pg_subscription_rel sr JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE sr.srsubid = $1 ORDER BY n.nspname, c.relname`,
    [subOid],
  );
  return rows;
}

/** A table synchronisation slot: pg_<subscription oid>_sync_<relation oid>_<subscriber system identifier>. */
export interface TablesyncSlotName {
  subscriptionOid: number;
  relid: number;
  systemIdentifier: string;
}

export function parseTablesyncSlot(name: string): TablesyncSlotName | undefined {
  const m = /^pg_(\d+)_sync_(\d+)_(\d+)$/.exec(name);
  if (!m) return undefined;
  return { subscriptionOid: Number(m[1]), relid: Number(m[2]), systemIdentifier: m[3]! };
}

export interface SourceSlot {
  name: string;
  plugin: string | null;
  database: string | null;
  active: boolean;
  activePid: number | null;
  /** lost / unreserved / extended / reserved (13+), null before. */
  walStatus: string | null;
  confirmedFlushLsn: string | null;
  restartLsn: string | null;
  /** Bytes of WAL the slot keeps on the source (current position − restart_lsn). */
  retainedBytes: number | null;
  /** Bytes between the source's current position and what the consumer confirmed. */
  lagBytes: number | null;
  /** The walsender serving the slot (pg_stat_replication): its state and replay lag; null when none. */
  walsenderState: string | null;
  /** Seconds; NULL in PostgreSQL while idle and caught up. */
  replayLagSeconds: number | null;
}

/**
 * Logical slots of the connected database whose names pgferry or PostgreSQL's
 * table synchronisation could have given (the caller decides which are ours).
 */
export async function listCandidateSlots(client: pg.Client, major: number): Promise<{ currentLsn: string; slots: SourceSlot[] }> {
  const cur = WAL_END_SQL;
  const { rows } = await client.query<{
    current_lsn: string; slot_name: string | null; plugin: string | null; database: string | null; active: boolean | null; active_pid: number | null;
    wal_status: string | null; confirmed_flush_lsn: string | null; restart_lsn: string | null; retained: string | null; lag: string | null;
    ws_state: string | null; replay_lag: number | null;
  }>(
    `SELECT (${cur})::text AS current_lsn, s.slot_name::text, s.plugin::text, s.database::text, s.active, s.active_pid,
            ${major >= 13 ? 's.wal_status' : 'NULL::text'} AS wal_status,
            s.confirmed_flush_lsn::text, s.restart_lsn::text,
            pg_wal_lsn_diff(${cur}, s.restart_lsn)::text AS retained,
            pg_wal_lsn_diff(${cur}, s.confirmed_flush_lsn)::text AS lag,
            r.state AS ws_state,
            -- numeric on 14+, double precision before: one type for both
            EXTRACT(EPOCH FROM r.replay_lag)::float8 AS replay_lag
       FROM (SELECT 1) one
       LEFT JOIN pg_replication_slots s
         ON s.slot_type = 'logical' AND s.database = current_database()
        AND (s.slot_name LIKE 'pgferry\\_%' OR s.slot_name ~ '^pg_[0-9]+_sync_[0-9]+_[0-9]+$')
       LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
      ORDER BY s.slot_name`,
  );
  const num = (v: string | null) => (v === null ? null : Math.max(0, Number(v)));
  return {
    currentLsn: rows[0]!.current_lsn,
    slots: rows
      .filter((r) => r.slot_name !== null)
      .map((r) => ({
        name: r.slot_name!, plugin: r.plugin, database: r.database, active: !!r.active, activePid: r.active_pid, walStatus: r.wal_status,
        confirmedFlushLsn: r.confirmed_flush_lsn, restartLsn: r.restart_lsn, retainedBytes: num(r.retained), lagBytes: num(r.lag),
        walsenderState: r.ws_state, replayLagSeconds: r.replay_lag === null ? null : Number(r.replay_lag),
      })),
  };
}

/**
 * How far the target has applied (its replication origin pg_<subscription oid>,
 * flushed); null when unknown. Final only once the subscription's workers have
 * stopped (stopSubscription): a running apply worker moves it on.
 */
export async function originProgress(client: pg.Client, subOid: number): Promise<string | null> {
  const { rows } = await client.query<{ lsn: string | null }>(
    `SELECT pg_replication_origin_progress($1, true)::text AS lsn
      WHERE EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`,
    [`pg_${subOid}`],
  );
  const lsn = rows[0]?.lsn ?? null;
  return lsn === '0/0' ? null : lsn;
}
