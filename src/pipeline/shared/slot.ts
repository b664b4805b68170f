/**
 * The snapshot every part of init reads under.
 *
 * With sync (the default): a replication connection creates the logical slot
 * with an exported snapshot (`CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')` on
 * 15+, `EXPORT_SNAPSHOT` before). The snapshot is exactly the slot's consistent
 * point: every change committed after it is in the slot. It lives only while
 * that connection stays open and idle, so the holder keeps it until released.
 *
 * Without a slot (--no-sync, or a resume that keeps an existing slot): a normal
 * connection in a REPEATABLE READ transaction exports its snapshot with
 * pg_export_snapshot().
 */
import type pg from 'pg';
import { OperationError, UsageError } from '../../errors.js';
import { acquireClient, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError, sqlstate } from '../../postgres/errors.js';
import { quoteIdent } from '../../postgres/identifiers.js';

export interface SnapshotHolder {
  /** The exported snapshot id, for SET TRANSACTION SNAPSHOT and pg_dump --snapshot. */
  snapshotName: string;
  /** Set when the snapshot belongs to a newly created slot. */
  slot: { name: string; consistentLsn: string } | null;
  /** End the exporting transaction / connection: the snapshot dies. */
  release(): Promise<void>;
}

export interface SlotInfo {
  name: string;
  database: string | null;
  plugin: string | null;
  slotType: string;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: string | null;
}

/** The slot of that name on the source, if it exists. */
export async function findSlot(client: pg.Client, name: string): Promise<SlotInfo | undefined> {
  const { rows } = await client.query<{
    slot_name: string; database: string | null; plugin: string | null; slot_type: string; active: boolean; active_pid: number | null;
    confirmed_flush_lsn: string | null;
  }>(
    `SELECT slot_name, database, plugin, slot_type, active, active_pid, confirmed_flush_lsn::text
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    name: r.slot_name, database: r.database, plugin: r.plugin, slotType: r.slot_type, active: r.active,
    activePid: r.active_pid, confirmedFlushLsn: r.confirmed_flush_lsn,
  };
}

/**
 * Drop a slot pgferry created. A slot still held by the walsender of a run that
 * just died is released by the server within moments: wait for that, but never
 * take a slot from a live consumer.
 */
export async function dropSlot(client: pg.Client, name: string, waitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const slot = await findSlot(client, name);
    if (!slot) return false;
    if (!slot.active) {
      try {
        await client.query('SELECT pg_drop_replication_slot($1)', [name]);
        return true;
      } catch (err) {
        if (sqlstate(err) === '42704') return false; // dropped meanwhile
        if (sqlstate(err) !== '55006') throw operationError(err, `dropping replication slot ${name} on the source`);
      }
    }
    if (Date.now() > deadline) {
      throw new UsageError(`replication slot ${name} on the source is in use by process ${slot.activePid ?? '?'}`, {
        hint: 'stop whatever consumes it (a running pgferry sync, a subscription), then try again',
      });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Create the logical slot with an exported snapshot; the returned holder keeps the snapshot alive.
 * A temporary slot (only its snapshot and consistent point are wanted) goes away with release().
 */
export async function createSlotWithSnapshot(conn: ResolvedConnInfo, slotName: string, sourceMajor: number, opts: { temporary?: boolean } = {}): Promise<SnapshotHolder> {
  const repl = await connect(conn, { label: 'the source (replication connection)', replication: true });
  try {
    const how = sourceMajor >= 15 ? "(SNAPSHOT 'export')" : 'EXPORT_SNAPSHOT';
    let res: pg.QueryResult<{ slot_name: string; consistent_point: string; snapshot_name: string }>;
    try {
      res = await repl.query(`CREATE_REPLICATION_SLOT ${quoteIdent(slotName)}${opts.temporary ? ' TEMPORARY' : ''} LOGICAL pgoutput ${how}`);
    } catch (err) {
      const code = sqlstate(err);
      if (code === '42710') {
        throw new UsageError(`replication slot ${slotName} already exists on the source`, {
          hint: 'it belongs to an earlier pgferry run of this source/target pair: resume with the same state directory, or remove it with pgferry cleanup',
        });
      }
      if (code === '53400') {
        throw new UsageError(`the source has no free replication slot for ${slotName}: ${(err as Error).message}`, {
          hint: 'raise max_replication_slots on the source (needs a restart) or drop unused slots',
        });
      }
      throw operationError(err, `creating replication slot ${slotName} on the source`);
    }
    const row = res.rows[0];
    if (!row?.snapshot_name) throw new OperationError(`creating replication slot ${slotName}: the server exported no snapshot`);
    let released = false;
    return {
      snapshotName: row.snapshot_name,
      slot: { name: row.slot_name, consistentLsn: row.consistent_point },
      async release() {
        if (released) return;
        released = true;
        await repl.end().catch(() => {});
      },
    };
  } catch (err) {
    await repl.end().catch(() => {});
    throw err;
  }
}

/** Export a snapshot from a REPEATABLE READ transaction on a normal connection (no slot). */
export async function exportSnapshot(conn: ResolvedConnInfo): Promise<SnapshotHolder> {
  // A session the command keeps (session-keeper.ts) when there is one: the export is on the path to pg_dump's start.
  const { client, release } = await acquireClient(conn, { label: 'the source' });
  try {
    // The exporting transaction sits idle for the whole data phase: no server timeout may end it
    // (session settings, undone by DISCARD ALL when the session is handed on).
    await client.query('SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0');
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await client.query<{ snap: string }>('SELECT pg_export_snapshot() AS snap');
    let released = false;
    return {
      snapshotName: rows[0]!.snap,
      slot: null,
      async release() {
        if (released) return;
        released = true;
        const ok = await client.query('COMMIT').then(
          () => true,
          () => false,
        );
        await release(ok);
      },
    };
  } catch (err) {
    await release(false);
    throw operationError(err, 'exporting a snapshot on the source');
  }
}
