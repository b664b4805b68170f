/**
 * A table's own post-data items (its indexes, primary key, unique, exclusion
 * and separately dumped check constraints), and then its ANALYZE, start as
 * soon as its last part is committed and recorded, while other tables are
 * still being copied, as pg_restore does with indexes. They share the --jobs
 * budget with the copy workers (budget.ts). The leaf partitions of a
 * partitioned table are such units of their own: a leaf's items (its part of
 * a partitioned index is an index or constraint of the leaf) start once the
 * leaf's parts are in. Foreign keys, triggers, rules, policies, comments, the
 * partitioned table's own items and the INDEX ATTACH that joins a leaf's
 * index to them stay in the post-data phase: they span tables, or need
 * another table's unique index. So do small tables (see
 * EARLY_POST_DATA_MIN_BYTES).
 *
 * Each batch is one `pg_restore -L` of the items of the tables that finished
 * since the last batch started, so 200 small tables do not mean 200
 * pg_restore processes. Nothing is recorded per item: the post-data phase
 * leaves out whatever already exists on the target (entriesPresentOnTarget),
 * which also covers a run killed in the middle of a batch. A failed batch does
 * not stop the copy; its error is raised once the copy is done, as the
 * post-data phase would have raised it.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { faultPoint } from '../../fault.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { displayName } from '../../postgres/identifiers.js';
import { tableKey } from '../../state/checkpoint.js';
import type { ProgressSink } from '../shared/progress.js';
import { analyzeTables } from './analyze.js';
import type { Budget } from './budget.js';
import { restoreEntries, type SchemaToolOptions, type TocEntry } from './schema.js';

/** Post-data items that belong to exactly one table and need nothing else built first. */
const OWN_ITEM_DESCS = new Set(['INDEX', 'CONSTRAINT', 'CHECK CONSTRAINT']);
const PG_CLASS = 1259;
const PG_CONSTRAINT = 2606;

/** A relation whose own items start as soon as its rows are in: a plain table, or a leaf partition. */
export interface EarlyUnit {
  /** tableKey of the relation (a leaf's own name for a leaf). */
  key: string;
  schema: string;
  name: string;
  oid: number;
  /** The scope table it belongs to (itself, or the partitioned root). */
  root: string;
}

/**
 * The own items of each given unit, by unit key, read from the source
 * catalog through the OIDs the archive records.
 */
export async function ownPostDataItems(source: pg.Client, entries: TocEntry[], units: EarlyUnit[]): Promise<Map<string, TocEntry[]>> {
  const byOid = new Map(units.map((u) => [u.oid, u.key]));
  const candidates = entries.filter((e) => OWN_ITEM_DESCS.has(e.desc) && (e.tableOid === PG_CLASS || e.tableOid === PG_CONSTRAINT));
  const out = new Map<string, TocEntry[]>();
  if (!candidates.length || !byOid.size) return out;
  // oid as text (it may exceed int4); rel as int, as the catalog gives table OIDs (catalog/tables.ts).
  const { rows } = await source.query<{ cat: number; oid: string; rel: number }>(
    `SELECT x.cat, x.oid::text AS oid, coalesce(i.indrelid, c.conrelid)::int AS rel
       FROM unnest($1::int[], $2::oid[]) x(cat, oid)
       LEFT JOIN pg_index i ON x.cat = ${PG_CLASS} AND i.indexrelid = x.oid
       LEFT JOIN pg_constraint c ON x.cat = ${PG_CONSTRAINT} AND c.oid = x.oid`,
    [candidates.map((e) => e.tableOid), candidates.map((e) => e.oid)],
  );
  const relOf = new Map(rows.map((r) => [`${r.cat}:${r.oid}`, r.rel]));
  for (const e of candidates) {
    const key = byOid.get(relOf.get(`${e.tableOid}:${e.oid}`) ?? 0);
    if (!key) continue;
    const list = out.get(key) ?? [];
    list.push(e);
    out.set(key, list);
  }
  return out;
}

export interface TablePostDataOptions {
  target: ResolvedConnInfo;
  archive: string;
  /** Where the batches' list files are written. */
  workDir: string;
  /** File name prefix of the list files (the database). */
  base: string;
  items: Map<string, TocEntry[]>;
  /** The relations to treat this way (earlyUnits); others are left to the post-data and ANALYZE phases. */
  units: EarlyUnit[];
  budget: Budget;
  toolOpts: SchemaToolOptions;
  progress: ProgressSink;
  /** Progress id of the data phase: each table's post-data is a task under it. */
  progressParent: string;
  /** Keys of the tables analysed here (the ANALYZE phase leaves them out). */
  analyzed: Set<string>;
}

export interface TablePostData {
  /** The unit's rows are in (a table committed and recorded, a leaf's parts all committed): queue its own items. */
  tableDone(key: string): void;
  /** Start no more batches (the copy failed); a running one ends as it would (its index build commits anyway). */
  stop(): void;
  /** Wait for every batch; rejects with the first failure. Returns the number of items built. */
  settle(): Promise<number>;
}

/**
 * Below this size a table's items wait for the post-data phase: a batch costs
 * a pg_restore process and two target sessions (~0.1–0.2 s), more than the
 * index build of a small table, and 200 small tables finishing one after the
 * other made the copy's tail several times longer in a trial.
 */
export const EARLY_POST_DATA_MIN_BYTES = 16 * 1024 ** 2;

/**
 * A leaf is taken early only from LEAF_FACTOR × minBytes on average. Leaves
 * finish one after another and each batch's pg_restore holds a job away from
 * the copy: 8 leaves of 26 MB took 0.1 s longer early than all in the
 * post-data phase, 8 of 100 MB 0.2 s shorter (5 and 3 alternated runs).
 */
const LEAF_FACTOR = 4;

/**
 * The relations whose own items (and ANALYZE) are worth starting during the
 * copy: plain tables of at least `minBytes`, and the leaves of partitioned
 * tables whose leaves hold LEAF_FACTOR times that on average (the catalog
 * sums a partitioned table's size over its leaves).
 */
export function earlyUnits(tables: ScopeTable[], minBytes: number): EarlyUnit[] {
  const units: EarlyUnit[] = [];
  for (const t of tables) {
    if (t.schemaOnly) continue;
    const root = tableKey(t.schema, t.name);
    if (t.relkind === 'r' && t.bytes >= minBytes) units.push({ key: root, schema: t.schema, name: t.name, oid: t.oid, root });
    if (t.relkind === 'p' && t.partitions.length && t.bytes / t.partitions.length >= LEAF_FACTOR * minBytes) {
      for (const p of t.partitions) units.push({ key: tableKey(p.schema, p.name), schema: p.schema, name: p.name, oid: p.oid, root });
    }
  }
  return units;
}

export function tablePostData(o: TablePostDataOptions): TablePostData {
  const plain = new Map(o.units.map((u) => [u.key, u]));
  const signal = o.toolOpts.signal;
  let stopped = false;
  let pending: string[] = [];
  const running = new Set<Promise<void>>();
  let firstError: unknown;
  let built = 0;
  let batchNo = 0;

  const batch = async (): Promise<void> => {
    const keys = pending;
    pending = [];
    if (!keys.length || stopped || firstError) return;
    const entries = keys.flatMap((k) => o.items.get(k) ?? []);
    const tables = keys.map((k) => plain.get(k)!);
    const id = (k: string) => `${o.progressParent}/${k}/post-data`;
    for (const t of tables) {
      const what = o.items.get(t.key)?.length ? 'indexes, ANALYZE' : 'ANALYZE';
      o.progress({ kind: 'start', id: id(t.key), title: `${displayName(t.schema, t.name)}: ${what}`, parent: o.progressParent });
    }
    const listFile = path.join(o.workDir, `${o.base}.post-data.table-${++batchNo}.list`);
    try {
      const what = keys.length === 1 ? `the indexes of ${displayName(tables[0]!.schema, tables[0]!.name)}` : `the indexes of ${keys.length} tables`;
      await restoreEntries(o.target, o.archive, entries, listFile, 1, o.toolOpts, what);
      built += entries.length;
      await rm(listFile, { force: true });
      // After the indexes: ANALYZE also samples expression indexes. Done here, autovacuum rarely gets to it first (and twice).
      await analyzeTables(o.target, tables, 1, signal);
      for (const t of tables) o.analyzed.add(t.key);
      for (const k of keys) o.progress({ kind: 'end', id: id(k), status: 'ok', detail: `${o.items.get(k)?.length ?? 0} indexes and constraints` });
      faultPoint('init.post-data.table');
    } catch (err) {
      for (const k of keys) o.progress({ kind: 'end', id: id(k), status: 'fail', detail: (err as Error).message.split('\n')[0] });
      throw err;
    }
  };

  return {
    tableDone(key) {
      if (!plain.has(key) || stopped) return;
      pending.push(key);
      // One waiter per finished table; the first to get a permit takes every table queued by then.
      const p = o.budget
        .run(batch, signal)
        .catch((err: unknown) => {
          firstError ??= err;
        })
        .finally(() => running.delete(p));
      running.add(p);
    },
    stop() {
      stopped = true;
    },
    async settle() {
      while (running.size) await Promise.all([...running]);
      if (firstError && !stopped) throw firstError;
      return built;
    },
  };
}
