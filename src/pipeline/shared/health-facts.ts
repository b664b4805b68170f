/**
 * Facts about one database pair, read in parallel on both sides with as few
 * queries as possible (status must answer in well under a second): the
 * source's WAL position, pgferry's slots there and the walsenders serving
 * them, the publication; on the target the subscription, its apply worker,
 * its error counters and the state of every table.
 */
import type pg from 'pg';
import { withClient } from '../../postgres/connect.js';
import { listCandidateSlots, parseTablesyncSlot, type SourceSlot, type TableSyncState } from './replication-catalog.js';
import type { ReplicationPair } from './pairs.js';
import { originPosition } from './replication-origin.js';

export interface SourceFacts {
  currentLsn: string;
  slots: SourceSlot[];
  publication: { exists: boolean; tables: number; masked?: MaskedTable[] };
}

/** A published table whose publication column list leaves columns out: the masked ones (data rules). */
export interface MaskedTable {
  schema: string;
  name: string;
  columns: string[];
}

/** Members with a column list (15+): the columns left out, which the target computes (src/pipeline/shared/masking-target.ts). */
function maskedSql(major: number): string {
  if (major < 15) return `'[]'::json`;
  return `(SELECT coalesce(json_agg(json_build_object('schema', n.nspname, 'name', c.relname, 'columns',
            (SELECT coalesce(json_agg(a.attname ORDER BY a.attnum), '[]'::json) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                AND a.attnum <> ALL (pr.prattrs::int2[]))) ORDER BY n.nspname, c.relname), '[]'::json)
            FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE pr.prpubid = p.oid AND pr.prattrs IS NOT NULL)`;
}

export interface TargetSubscriptionFacts {
  oid: number;
  name: string;
  enabled: boolean;
  slotName: string | null;
  worker: { pid: number; receivedLsn: string | null; latestEndLsn: string | null; lastMessageAt: string | null } | null;
  syncWorkers: number;
  applyErrors: number | null;
  syncErrors: number | null;
  tables: { oid: number; schema: string; name: string; state: TableSyncState }[];
}

export interface TargetFacts {
  /** Subscriptions of this database whose name pgferry could have given. */
  subscriptions: TargetSubscriptionFacts[];
  /** OIDs of every subscription on the target server (pg_subscription is shared): tells orphaned table-sync slots. */
  allSubscriptionOids: number[];
  major: number;
}

export async function sourceFacts(client: pg.Client, major: number, publication: string): Promise<SourceFacts> {
  const [slots, pub] = await Promise.all([
    listCandidateSlots(client, major),
    client.query<{ tables: number; masked: MaskedTable[] }>(
      `SELECT (SELECT count(*)::int FROM pg_publication_rel pr WHERE pr.prpubid = p.oid) AS tables, ${maskedSql(major)} AS masked
         FROM pg_publication p WHERE p.pubname = $1`,
      [publication],
    ),
  ]);
  return { currentLsn: slots.currentLsn, slots: slots.slots, publication: { exists: pub.rows.length > 0, tables: pub.rows[0]?.tables ?? 0, masked: pub.rows[0]?.masked ?? [] } };
}

export async function targetFacts(client: pg.Client, major: number): Promise<TargetFacts> {
  const stats = major >= 15;
  const { rows } = await client.query<{
    oid: number; subname: string; subenabled: boolean; subslotname: string | null; worker: TargetSubscriptionFacts['worker'];
    sync_workers: number; apply_errors: number | null; sync_errors: number | null; tables: TargetSubscriptionFacts['tables'] | null;
    all_oids: number[];
  }>(
    `SELECT s.oid::int AS oid, s.subname, s.subenabled, s.subslotname::text AS subslotname,
            (SELECT json_build_object('pid', w.pid, 'receivedLsn', w.received_lsn::text, 'latestEndLsn', w.latest_end_lsn::text,
                                      'lastMessageAt', to_char(w.last_msg_receipt_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
               FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL LIMIT 1) AS worker,
            (SELECT count(*)::int FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NOT NULL AND w.pid IS NOT NULL) AS sync_workers,
            ${stats ? '(SELECT st.apply_error_count::int FROM pg_stat_subscription_stats st WHERE st.subid = s.oid)' : 'NULL::int'} AS apply_errors,
            ${stats ? '(SELECT st.sync_error_count::int FROM pg_stat_subscription_stats st WHERE st.subid = s.oid)' : 'NULL::int'} AS sync_errors,
            (SELECT json_agg(json_build_object('oid', c.oid::int, 'schema', n.nspname, 'name', c.relname, 'state', sr.srsubstate::text)
                             ORDER BY n.nspname, c.relname)
               FROM pg_subscription_rel sr JOIN pg_class c ON c.oid = sr.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE sr.srsubid = s.oid) AS tables,
            ARRAY(SELECT oid::int FROM pg_subscription) AS all_oids
       FROM (SELECT 1) one
       LEFT JOIN pg_subscription s
         ON s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND s.subname LIKE 'pgferry\\_%'
      ORDER BY s.subname`,
  );
  const subscriptions = rows
    .filter((r) => r.oid !== null)
    .map((r) => ({
      oid: r.oid, name: r.subname, enabled: r.subenabled, slotName: r.subslotname, worker: r.worker, syncWorkers: r.sync_workers,
      applyErrors: r.apply_errors, syncErrors: r.sync_errors, tables: r.tables ?? [],
    }));
  return { subscriptions, allSubscriptionOids: rows[0]?.all_oids ?? [], major };
}

/** The client applier of a pair (sync --applier client): whether it runs, and the origin's committed position on the target. */
export interface ClientApplierFacts {
  running: boolean;
  pid: number | null;
  heartbeatAt: string | null;
  originLsn: string | null;
}

export interface PairFacts {
  pair: ReplicationPair;
  source: SourceFacts;
  target: TargetFacts;
  /** Present when the sync record says the client applier streams this pair. */
  client?: ClientApplierFacts;
}

/** Both sides at once, one connection each; `client`: the pair is streamed by the client applier (its heartbeat). */
export async function collectPair(
  pair: ReplicationPair,
  majors: { source: number; target: number },
  client?: Omit<ClientApplierFacts, 'originLsn'>,
): Promise<PairFacts> {
  const [source, [target, originLsn]] = await Promise.all([
    withClient(pair.sourceConn, (c) => sourceFacts(c, majors.source, pair.names.publication), { label: 'the source', applicationName: 'pgferry status' }),
    withClient(pair.targetConn, async (c) => Promise.all([targetFacts(c, majors.target), client ? originPosition(c, pair.names.origin).catch(() => null) : null]), {
      label: 'the target', applicationName: 'pgferry status',
    }),
  ]);
  return { pair, source, target, ...(client ? { client: { ...client, originLsn } } : {}) };
}

export { parseTablesyncSlot };
