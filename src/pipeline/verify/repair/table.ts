/**
 * Repair of one table: plan (the row diff of each range verify found
 * different, after the target has applied past the source position of the
 * read), then write in bounded transactions with guarded statements.
 *
 * While a subscription applies changes, a transaction is committed only when,
 * after its writes, (1) the source rows of the batch are read again (one
 * statement), (2) the target has applied past the source position after that
 * read — with no apply worker waiting on a row this transaction holds — and
 * (3) the target rows of the batch, seen from inside the transaction, equal
 * those source rows. Otherwise it rolls back and the rows are compared again
 * in the next round. docs/architecture.md ("Repair") explains why this cannot
 * undo a change the apply worker made.
 */
import type pg from 'pg';
import { faultPoint } from '../../../fault.js';
import { sqlstate } from '../../../postgres/errors.js';
import {
  compareKeyed, countEqualRowsQuery, diffKeyedChunk, diffKeylessTable, diffKeys, keyId, keyedDiffSize, readKeys,
  type KeyedDiff, type KeyedRow, type KeyRange, type MultisetDiff, type Query, type RowReader, type RowValues,
} from '../../shared/row-diff.js';
import { currentLsn, waitForReplay, type ReplicationLink } from '../replication.js';
import type { SideSession } from '../sessions.js';
import type { VerifyTable } from '../sql.js';
import type { RepairChange, RepairDatabaseReport, RepairTableReport } from './types.js';
import {
  deleteCopiesSql, deleteKeyedSql, insertCopiesSql, insertKeyedSql, targetColumnsQuery, updateKeyedSql, type WriteColumn,
} from './writes.js';

/** The sessions and settings of one database pair. */
export interface RepairContext {
  source: SideSession;
  target: SideSession;
  /** The target session that writes (its own connection: transactions). */
  writer: pg.Client;
  link: ReplicationLink;
  lagTimeoutMs: number;
  /** Rounds of write and recheck per table. */
  rounds: number;
  batchRows: number;
  maxDiffs: number;
  db: RepairDatabaseReport;
  signal?: AbortSignal;
}

interface KeyedChange {
  kind: 'insert' | 'update' | 'delete';
  key: string[];
  source?: KeyedRow;
  target?: KeyedRow;
}

interface CopiesChange {
  kind: 'insert' | 'delete';
  values: RowValues;
  count: number;
}

function changedKeys(d: KeyedDiff): string[][] {
  return [...d.missing.map((r) => r.key), ...d.extra.map((r) => r.key), ...d.different.map((x) => x.source.key)];
}

/** Errors after which a batch is simply tried again in the next round. */
const RETRY_STATES = new Set(['40001', '40P01', '55P03']);

type Outcome = 'ok' | 'lag' | 'blocked';

export class TableRepair {
  private keyed = new Map<string, KeyedChange>();
  private copies: CopiesChange[] = [];
  private columns: WriteColumn[] | null = null;
  private lagNoted = false;

  constructor(
    private readonly ctx: RepairContext,
    readonly table: VerifyTable,
    readonly report: RepairTableReport,
  ) {}

  get plannedRows(): number {
    return this.keyed.size + this.copies.reduce((n, c) => n + c.count, 0);
  }

  private get writerReader(): RowReader {
    const w = this.ctx.writer;
    return { query: async <R extends Record<string, unknown>>(q: Query) => (await w.query<R>(q.text, q.values)).rows };
  }

  /** Wait until the target has applied past the source's current position (only while replicating). */
  private async settle(): Promise<void> {
    if (!this.ctx.link.active) return;
    const lsn = await currentLsn(this.ctx.source);
    if (!(await waitForReplay(this.ctx.source, this.ctx.link, lsn, this.ctx.lagTimeoutMs, this.ctx.signal))) this.noteLag(lsn);
  }

  private noteLag(lsn: string): void {
    if (this.lagNoted) return;
    this.lagNoted = true;
    this.report.notes.push(
      `the target did not apply past source LSN ${lsn} within ${Math.round(this.ctx.lagTimeoutMs / 1000)}s: rows that were still in flight were not written`,
    );
  }

  private pair() {
    return { source: this.ctx.source, target: this.ctx.target };
  }

  /** Key ranges follow the key index (as verify's chunk queries do); a table without a key is scanned. */
  private async planFor(): Promise<void> {
    const kind = this.table.key ? 'range' : 'whole';
    await Promise.all([this.ctx.source.planFor(kind), this.ctx.target.planFor(kind)]);
  }

  /** Plan the row differences of one range (keyed) or of the whole table (no key). */
  async planRange(range: KeyRange): Promise<void> {
    await this.planFor();
    if (this.table.key) {
      let d = await diffKeyedChunk(this.pair(), this.table, range, { beforeTarget: () => this.settle() });
      // While replicating, the target is read after the source and may be ahead of it (rows inserted since look
      // extra): look the candidates up again, source first, until only rows that differ every time are left.
      for (let round = 1; this.ctx.link.active && round < this.ctx.rounds && keyedDiffSize(d); round++) {
        d = await diffKeys(this.pair(), this.table, changedKeys(d), { beforeTarget: () => this.settle() });
      }
      this.addKeyed(d);
    } else {
      const d = await diffKeylessTable(this.pair(), this.table, this.table.estimatedRows, { beforeTarget: () => this.settle() });
      this.setCopies(d);
    }
    this.countPlan();
  }

  private addKeyed(d: KeyedDiff): void {
    for (const s of d.missing) this.keyed.set(keyId(s.key), { kind: 'insert', key: s.key, source: s });
    for (const t of d.extra) this.keyed.set(keyId(t.key), { kind: 'delete', key: t.key, target: t });
    for (const x of d.different) this.keyed.set(keyId(x.source.key), { kind: 'update', key: x.source.key, source: x.source, target: x.target });
  }

  private setCopies(d: MultisetDiff): void {
    this.copies = [
      ...d.extra.map((r) => ({ kind: 'delete' as const, values: r.values, count: r.count })),
      ...d.missing.map((r) => ({ kind: 'insert' as const, values: r.values, count: r.count })),
    ];
  }

  private countPlan(): void {
    const p = { insert: 0, update: 0, delete: 0 };
    const listed: RepairChange[] = [];
    for (const c of this.keyed.values()) {
      p[c.kind]++;
      if (listed.length < this.ctx.maxDiffs) listed.push({ kind: c.kind, key: this.keyObject(c.key), count: 1 });
    }
    for (const c of this.copies) {
      p[c.kind] += c.count;
      if (listed.length < this.ctx.maxDiffs) listed.push({ kind: c.kind, key: null, count: c.count });
    }
    this.report.planned = p;
    this.report.changes = listed;
    this.report.changesTruncated = this.keyed.size + this.copies.length > listed.length;
  }

  private keyObject(key: readonly string[]): Record<string, string> {
    const o: Record<string, string> = {};
    this.table.key!.forEach((k, i) => (o[k.name] = key[i]!));
    return o;
  }

  private async writeColumns(): Promise<WriteColumn[]> {
    if (this.columns) return this.columns;
    const rows = await this.ctx.target.query<{ name: string; type: string; generated: boolean }>(targetColumnsQuery(this.table));
    const byName = new Map(rows.map((r) => [r.name, r]));
    const out: WriteColumn[] = [];
    this.table.columns.forEach((c, index) => {
      const col = byName.get(c.name);
      if (col && !col.generated) out.push({ index, name: c.name, targetType: col.type });
    });
    this.columns = out;
    return out;
  }

  /** Write the plan, round after round, until nothing is left or the rounds are used up. */
  async apply(): Promise<void> {
    const cols = await this.writeColumns();
    await this.planFor();
    for (let round = 0; round < this.ctx.rounds; round++) {
      if (this.ctx.signal?.aborted) return;
      const retry = this.table.key ? await this.applyKeyed(cols) : await this.applyCopies(cols);
      if (!retry) {
        this.keyed.clear();
        this.copies = [];
        break;
      }
      if (round + 1 >= this.ctx.rounds) break;
      // Compare the rows that were not written again, as they are now.
      if (this.table.key) {
        const keys = [...this.keyed.values()].map((c) => c.key);
        this.keyed.clear();
        this.addKeyed(await diffKeys(this.pair(), this.table, keys, { beforeTarget: () => this.settle() }));
      } else {
        this.setCopies(await diffKeylessTable(this.pair(), this.table, this.table.estimatedRows, { beforeTarget: () => this.settle() }));
      }
    }
    this.report.skipped = this.keyed.size + this.copies.reduce((n, c) => n + c.count, 0);
  }

  /** True when some rows were not written (kept in this.keyed for the next round). */
  private async applyKeyed(cols: readonly WriteColumn[]): Promise<boolean> {
    // Deletes before updates before inserts: a key whose text changed (1.0 → 1.00) is freed before it is taken.
    const order = { delete: 0, update: 1, insert: 2 } as const;
    const all = [...this.keyed.values()].sort((a, b) => order[a.kind] - order[b.kind]);
    const left = new Map<string, KeyedChange>();
    for (let i = 0; i < all.length; i += this.ctx.batchRows) {
      if (this.ctx.signal?.aborted) break;
      const batch = all.slice(i, i + this.ctx.batchRows);
      const result = await this.transaction(async () => {
        const done = { insert: 0, update: 0, delete: 0 };
        const written: KeyedChange[] = [];
        for (const c of batch) {
          let q: Query | null;
          if (c.kind === 'insert') q = insertKeyedSql(this.table, cols, c.source!.values);
          else if (c.kind === 'delete') q = deleteKeyedSql(this.table, c.key, c.target!.values);
          else q = updateKeyedSql(this.table, cols, c.key, c.target!.values, c.source!.values);
          if (!q) {
            left.set(keyId(c.key), c);
            continue;
          }
          const r = await this.ctx.writer.query(q.text, q.values);
          if (r.rowCount === 1) {
            done[c.kind]++;
            written.push(c);
          } else left.set(keyId(c.key), c);
        }
        if (this.ctx.link.active && written.length) {
          const keys = written.map((c) => c.key);
          const source = await readKeys(this.ctx.source, this.table, keys, 'source');
          const outcome = await this.waitWhileHolding(await currentLsn(this.ctx.source));
          if (outcome !== 'ok') return { commit: false, done };
          const target = await readKeys(this.writerReader, this.table, keys, 'target');
          if (keyedDiffSize(compareKeyed(source, target))) return { commit: false, done };
        }
        return { commit: true, done };
      });
      if (result) {
        this.report.inserted += result.insert;
        this.report.updated += result.update;
        this.report.deleted += result.delete;
      } else for (const c of batch) left.set(keyId(c.key), c);
    }
    this.keyed = left;
    return left.size > 0;
  }

  private async applyCopies(cols: readonly WriteColumn[]): Promise<boolean> {
    const left: CopiesChange[] = [];
    for (let i = 0; i < this.copies.length; i += this.ctx.batchRows) {
      if (this.ctx.signal?.aborted) break;
      const batch = this.copies.slice(i, i + this.ctx.batchRows);
      const result = await this.transaction(async () => {
        const done = { insert: 0, update: 0, delete: 0 };
        for (const c of batch) {
          const q = c.kind === 'insert' ? insertCopiesSql(this.table, cols, c.values, c.count) : deleteCopiesSql(this.table, c.values, c.count);
          const r = await this.ctx.writer.query(q.text, q.values);
          const n = r.rowCount ?? 0;
          done[c.kind] += n;
          if (n < c.count) return { commit: false, done };
        }
        if (this.ctx.link.active) {
          // The source's counts of these rows in one snapshot, then the target's from inside this transaction.
          const counts = async (reader: RowReader) => {
            const out: string[] = [];
            for (const c of batch) out.push((await reader.query<{ n: string }>(countEqualRowsQuery(this.table, c.values)))[0]!.n);
            return out.join(',');
          };
          await this.ctx.source.query({ text: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', values: [] });
          let source: string;
          try {
            source = await counts(this.ctx.source);
          } finally {
            await this.ctx.source.query({ text: 'COMMIT', values: [] });
          }
          const outcome = await this.waitWhileHolding(await currentLsn(this.ctx.source));
          if (outcome !== 'ok') return { commit: false, done };
          if ((await counts(this.writerReader)) !== source) return { commit: false, done };
        }
        return { commit: true, done };
      });
      if (result) {
        this.report.inserted += result.insert;
        this.report.deleted += result.delete;
      } else left.push(...batch);
    }
    this.copies = left;
    return left.length > 0;
  }

  /**
   * One target transaction. `body` writes and says whether to commit; the
   * counts are returned only when it committed (null: rolled back, to be
   * tried again). Lock conflicts and deadlocks roll back for a retry too.
   */
  private async transaction(body: () => Promise<{ commit: boolean; done: { insert: number; update: number; delete: number } }>) {
    const w = this.ctx.writer;
    await w.query('BEGIN');
    try {
      const r = await body();
      if (!r.commit) {
        await w.query('ROLLBACK');
        return null;
      }
      faultPoint('repair.mid-write');
      await w.query('COMMIT');
      this.ctx.db.transactions++;
      return r.done;
    } catch (err) {
      await w.query('ROLLBACK').catch(() => {});
      if (RETRY_STATES.has(sqlstate(err) ?? '')) return null;
      throw err;
    }
  }

  /**
   * Wait until the target has applied past `lsn` while this transaction holds
   * its rows. 'blocked': a session (the apply worker) waits for a lock this
   * transaction holds, so the target cannot get there before it ends.
   */
  private async waitWhileHolding(lsn: string): Promise<Outcome> {
    const deadline = Date.now() + this.ctx.lagTimeoutMs;
    for (;;) {
      if (await waitForReplay(this.ctx.source, this.ctx.link, lsn, 250, this.ctx.signal)) return 'ok';
      const { rows } = await this.ctx.writer.query<{ b: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE NOT l.granted AND pg_backend_pid() = ANY (pg_blocking_pids(l.pid))) AS b',
      );
      if (rows[0]?.b) return 'blocked';
      if (Date.now() >= deadline || this.ctx.signal?.aborted) {
        this.noteLag(lsn);
        return 'lag';
      }
    }
  }
}
