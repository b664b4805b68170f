/**
 * `verify --repair`: verify, which confirms the differing ranges of rows;
 * the row diff of each such range (src/pipeline/shared/row-diff.ts), after
 * the target has applied past the source position of the read; the limit
 * (--max-repair-rows), the dry run or the confirmation; guarded writes in
 * bounded transactions (./table.ts); then verify again, whose result decides
 * the exit code. Plain async function: the CLI parses flags and renders.
 */
import type pg from 'pg';
import { PgferryError, UsageError } from '../../../errors.js';
import { silentProgress } from '../../shared/progress.js';
import { connect } from '../../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../../postgres/conninfo.js';
import { operationError, sqlstate } from '../../../postgres/errors.js';
import { ROW_TEXT_SETTINGS, type KeyRange } from '../../shared/row-diff.js';
import { detectReplication } from '../replication.js';
import { closeSessions, openSession, type SideSession } from '../sessions.js';
import type { VerifyTable } from '../sql.js';
import type { DifferingRange, VerifyOptions } from '../types.js';
import { verify } from '../verify.js';
import { TableRepair, type RepairContext } from './table.js';
import type { RepairDatabaseReport, RepairOptions, RepairReport, RepairResult, RepairTableReport } from './types.js';

export const REPAIR_DEFAULTS = { batchRows: 500 } as const;

interface TableRanges {
  table: VerifyTable;
  ranges: KeyRange[];
}

interface DatabaseRanges {
  sourceDatabase: string;
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  tables: Map<string, TableRanges>;
}

interface OpenDatabase {
  ranges: DatabaseRanges;
  source: SideSession;
  target: SideSession;
  writer: pg.Client;
  ctx: RepairContext;
  repairs: TableRepair[];
}

function checkRepairOptions(o: RepairOptions): void {
  if (o.maxRepairRows !== null && !(Number.isInteger(o.maxRepairRows) && o.maxRepairRows >= 0)) {
    throw new UsageError(`--max-repair-rows must be a whole number ≥ 0 (got ${o.maxRepairRows})`);
  }
  const batch = o.batchRows ?? REPAIR_DEFAULTS.batchRows;
  if (!Number.isInteger(batch) || batch < 1) throw new UsageError(`the repair batch size must be a whole number ≥ 1 (got ${batch})`);
}

function emptyTableReport(db: string, t: VerifyTable, display: string): RepairTableReport {
  return {
    database: db,
    schema: t.schema,
    name: t.name,
    display,
    method: t.key ? 'keyed' : 'multiset',
    planned: { insert: 0, update: 0, delete: 0 },
    inserted: 0,
    updated: 0,
    deleted: 0,
    skipped: 0,
    changes: [],
    changesTruncated: false,
    notes: [],
    error: null,
  };
}

function total(r: RepairReport): void {
  r.rowsPlanned = r.tables.reduce((n, t) => n + t.planned.insert + t.planned.update + t.planned.delete, 0);
  r.rowsInserted = r.tables.reduce((n, t) => n + t.inserted, 0);
  r.rowsUpdated = r.tables.reduce((n, t) => n + t.updated, 0);
  r.rowsDeleted = r.tables.reduce((n, t) => n + t.deleted, 0);
  r.rowsSkipped = r.tables.reduce((n, t) => n + t.skipped, 0);
}

/** A session that writes on the target: canonical settings, as replication where the user may. */
async function openWriter(conn: ResolvedConnInfo, db: RepairDatabaseReport): Promise<pg.Client> {
  const client = await connect(conn, { label: 'target', settings: { ...ROW_TEXT_SETTINGS, lock_timeout: '10s' }, applicationName: 'pgferry repair' });
  try {
    await client.query('SET session_replication_role = replica');
    db.sessionReplicationRole = 'replica';
  } catch (err) {
    if (sqlstate(err) !== '42501') {
      await client.end().catch(() => {});
      throw err;
    }
    db.sessionReplicationRole = 'origin';
  }
  return client;
}

async function openDatabase(d: DatabaseRanges, opts: VerifyOptions, ro: RepairOptions, report: RepairReport): Promise<OpenDatabase> {
  const opened: { sessions: SideSession[]; writer?: pg.Client } = { sessions: [] };
  try {
    const source = await openSession(d.source, 'source');
    opened.sessions.push(source);
    const target = await openSession(d.target, 'target');
    opened.sessions.push(target);
    const db: RepairDatabaseReport = { source: d.sourceDatabase, target: d.target.dbname, replicationActive: false, sessionReplicationRole: null, transactions: 0 };
    const writer = await openWriter(d.target, db);
    opened.writer = writer;
    const link = await detectReplication(source, target);
    db.replicationActive = link.active;
    report.databases.push(db);
    const ctx: RepairContext = {
      source,
      target,
      writer,
      link,
      lagTimeoutMs: opts.lagTimeoutMs,
      rounds: Math.max(3, opts.recheck),
      // Smaller transactions while replicating: a batch is rolled back whole when one of its rows moved meanwhile.
      batchRows: link.active ? Math.min(100, ro.batchRows ?? REPAIR_DEFAULTS.batchRows) : (ro.batchRows ?? REPAIR_DEFAULTS.batchRows),
      maxDiffs: opts.maxDiffs,
      db,
      signal: opts.signal,
    };
    return { ranges: d, source, target, writer, ctx, repairs: [] };
  } catch (err) {
    await closeSessions(opened.sessions);
    await opened.writer?.end().catch(() => {});
    throw err;
  }
}

async function closeDatabase(o: OpenDatabase): Promise<void> {
  await closeSessions([o.source, o.target]);
  await o.writer.end().catch(() => {});
}

/** A failure of one table (a query error) is recorded; lost connections and our own errors end the run. */
function tableFailure(err: unknown): boolean {
  return err instanceof Error && 'code' in err && !(err instanceof PgferryError) && typeof sqlstate(err) === 'string' && !sqlstate(err)!.startsWith('08');
}

/** Verify, repair the rows that differ, verify again. */
export async function verifyAndRepair(opts: VerifyOptions, ro: RepairOptions): Promise<RepairResult> {
  checkRepairOptions(ro);
  const progress = opts.progress ?? silentProgress;
  const found = new Map<string, DatabaseRanges>();
  const collect = (d: DifferingRange) => {
    let db = found.get(d.sourceDatabase);
    if (!db) found.set(d.sourceDatabase, (db = { sourceDatabase: d.sourceDatabase, source: d.source, target: d.target, tables: new Map() }));
    const id = `${d.table.schema}.${d.table.name}`;
    let t = db.tables.get(id);
    if (!t) db.tables.set(id, (t = { table: d.table, ranges: [] }));
    t.ranges.push(d.range);
  };
  const first = await verify({ ...opts, onDifference: collect });
  const repair: RepairReport = {
    status: 'nothing-to-repair',
    dryRun: ro.dryRun,
    maxRepairRows: ro.maxRepairRows,
    rowsPlanned: 0,
    rowsInserted: 0,
    rowsUpdated: 0,
    rowsDeleted: 0,
    rowsSkipped: 0,
    message: null,
    before: first.summary,
    databases: [],
    tables: [],
  };
  if (!found.size) return { report: first, repair };

  const open: OpenDatabase[] = [];
  try {
    // Plan: the row diff of every range verify confirmed, stopping once past the limit.
    let planned = 0;
    plan: for (const d of [...found.values()].sort((a, b) => (a.sourceDatabase < b.sourceDatabase ? -1 : 1))) {
      const o = await openDatabase(d, opts, ro, repair).catch((err: unknown) => {
        throw operationError(err, `repair of database "${d.sourceDatabase}"`);
      });
      open.push(o);
      const displayOf = new Map(first.databases.find((x) => x.source === d.sourceDatabase)?.tables.map((t) => [`${t.schema}.${t.name}`, t.display]) ?? []);
      for (const [id, t] of [...d.tables.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        const report = emptyTableReport(d.sourceDatabase, t.table, displayOf.get(id) ?? id);
        repair.tables.push(report);
        const r = new TableRepair(o.ctx, t.table, report);
        o.repairs.push(r);
        const pid = `repair/${d.sourceDatabase}/${report.display}`;
        progress({ kind: 'start', id: pid, title: `plan repair of ${d.sourceDatabase}: ${report.display}` });
        try {
          for (const range of t.ranges) {
            await r.planRange(range);
            if (ro.maxRepairRows !== null && planned + r.plannedRows > ro.maxRepairRows) break;
          }
        } catch (err) {
          if (!tableFailure(err)) throw err;
          report.error = `cannot read the differing rows: ${(err as Error).message}`;
        }
        planned += r.plannedRows;
        progress({ kind: 'end', id: pid, status: report.error ? 'fail' : 'ok', detail: `${r.plannedRows} rows to change` });
        if (ro.maxRepairRows !== null && planned > ro.maxRepairRows) break plan;
      }
    }
    total(repair);
    if (ro.maxRepairRows !== null && planned > ro.maxRepairRows) {
      repair.status = 'refused';
      const tables = repair.tables.filter((t) => t.planned.insert + t.planned.update + t.planned.delete > 0).map((t) => t.display);
      repair.message =
        `more than ${ro.maxRepairRows} rows differ (--max-repair-rows): nothing was written; ` +
        `re-copy ${tables.length === 1 ? 'this table' : 'these tables'} instead (${tables.join(', ')})`;
      return { report: first, repair };
    }
    if (ro.dryRun) {
      repair.status = 'dry-run';
      return { report: first, repair };
    }
    // Nothing left to write (the located rows settled meanwhile): verify again below, without asking.
    if (repair.rowsPlanned > 0 && ro.confirm) {
      repair.status = 'planned';
      if (!(await ro.confirm(repair))) {
        repair.status = 'declined';
        repair.message = 'not confirmed: nothing was written';
        return { report: first, repair };
      }
    }

    // Write, table by table, in bounded transactions.
    for (const o of open) {
      for (const r of o.repairs) {
        if (r.report.error || r.plannedRows === 0) continue;
        const pid = `repair/${o.ranges.sourceDatabase}/${r.report.display}/write`;
        progress({ kind: 'start', id: pid, title: `repair ${o.ranges.sourceDatabase}: ${r.report.display}` });
        try {
          await r.apply();
        } catch (err) {
          if (opts.signal?.aborted || !tableFailure(err)) throw err;
          r.report.error = `repair failed: ${(err as Error).message}`;
        }
        const t = r.report;
        progress({
          kind: 'end',
          id: pid,
          status: t.error ? 'fail' : t.skipped ? 'warn' : 'ok',
          detail: t.error ?? `${t.inserted} inserted, ${t.updated} updated, ${t.deleted} deleted${t.skipped ? `, ${t.skipped} not written` : ''}`,
        });
      }
    }
    total(repair);
    repair.status = repair.rowsPlanned > 0 ? 'repaired' : 'nothing-to-repair';
  } catch (err) {
    if (opts.signal?.aborted) throw err;
    throw err instanceof PgferryError ? err : operationError(err, 'repair');
  } finally {
    await Promise.all(open.map(closeDatabase));
  }
  const after = await verify(opts);
  return { report: after, repair };
}
