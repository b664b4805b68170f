/**
 * Tables init copied again after a resume (consistentWithSlot = false) hold
 * rows of a later snapshot than the slot's, so the stream cannot simply be
 * applied to them. The client applier brings them into the stream as
 * PostgreSQL's table synchronisation does: a temporary slot exports a snapshot
 * at its consistent point L; the tables are emptied and copied under that
 * snapshot in one target transaction; from then on the applier skips their
 * changes in source transactions that committed before L (the copy holds
 * them) and applies the rest. The caller records L (init's state,
 * `resyncedFrom`) after the target's COMMIT: a crash in between only means
 * that the next run copies them again.
 */
import type pg from 'pg';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { ScopeTable } from '../../../config/scope.js';
import { OperationError } from '../../../errors.js';
import { CANONICAL_SETTINGS, connect } from '../../../postgres/connect.js';
import { operationError } from '../../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdentList, quoteLiteral } from '../../../postgres/identifiers.js';
import type { ReplicationPair } from '../../shared/pairs.js';
import type { PublishedTable } from '../../shared/publication.js';
import { createSlotWithSnapshot } from '../../shared/slot.js';
import { emptyInTransaction, locateTargetTables } from '../target-tables.js';

export interface ResyncResult {
  /** The consistent point L of the snapshot the tables were copied under ("X/Y"). */
  lsn: string;
  rows: number;
}

/** Copy `tables` again under a fresh snapshot; their changes before the returned position must then be skipped. */
export async function resyncTables(pair: ReplicationPair, sourceMajor: number, tables: PublishedTable[], scope: ScopeTable[]): Promise<ResyncResult> {
  // Only the snapshot and its position are wanted; the slot goes with the connection.
  const holder = await createSlotWithSnapshot(pair.sourceConn, `pgferry_resync_${process.pid}_${Date.now() % 1_000_000}`, sourceMajor, { temporary: true });
  let src: pg.Client | undefined;
  let tgt: pg.Client | undefined;
  try {
    src = await connect(pair.sourceConn, { label: 'the source', settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync (client applier)' });
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(holder.snapshotName)}`);
    tgt = await connect(pair.targetConn, { label: 'the target', settings: { ...CANONICAL_SETTINGS }, applicationName: 'pgferry sync (client applier)' });
    await tgt.query('BEGIN');
    // As the applier writes: user triggers and foreign keys off, masking triggers (ENABLE ALWAYS) on.
    await tgt.query("SET LOCAL session_replication_role = 'replica'");
    await emptyInTransaction(tgt, await locateTargetTables(tgt, tables));
    let rows = 0;
    for (const p of tables) rows += await copyTable(src, tgt, p, scope.find((t) => t.oid === p.oid));
    await tgt.query('COMMIT');
    return { lsn: holder.slot!.consistentLsn, rows };
  } catch (err) {
    await tgt?.query('ROLLBACK').catch(() => {});
    throw err instanceof OperationError ? err : operationError(err, `copying ${tables.map((t) => displayName(t.schema, t.name)).join(', ')} again for the client applier`);
  } finally {
    await src?.end().catch(() => {});
    await tgt?.end().catch(() => {});
    await holder.release();
  }
}

/** One table, source → target, in text format (same session settings on both sides). */
async function copyTable(src: pg.Client, tgt: pg.Client, p: PublishedTable, t: ScopeTable | undefined): Promise<number> {
  // The publication's column list when it has one (masked columns are computed on the target), else every stored column.
  const columns = p.columns ?? t?.columns.filter((c) => !c.generated).map((c) => c.name);
  if (!columns?.length) throw new OperationError(`no columns known for ${displayName(p.schema, p.name)}`);
  const rel = qualifiedName(p.schema, p.name);
  // A partitioned table's rows live in its partitions; an inheritance parent's children are tables of their own.
  const from = `${p.partitioned ? '' : 'ONLY '}${rel}`;
  const where = p.filter ? ` WHERE (${p.filter}\n)` : '';
  const out = src.query(copyTo(`COPY (SELECT ${quoteIdentList(columns)} FROM ${from}${where}) TO STDOUT`));
  const into = tgt.query(copyFrom(`COPY ${rel} (${quoteIdentList(columns)}) FROM STDIN`));
  await pipeline(out, into);
  if (out.rowCount !== into.rowCount) throw new OperationError(`copying ${displayName(p.schema, p.name)}: the source sent ${out.rowCount} rows, the target took ${into.rowCount}`);
  return into.rowCount;
}
