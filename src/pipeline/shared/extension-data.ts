/**
 * The user's rows in an extension's configuration tables (pg_cron's jobs,
 * pg_partman's part_config), and the values of its configuration sequences,
 * copied under init's snapshot as pg_dump copies them with the extension.
 *
 * The target's CREATE EXTENSION (pre-data) made the tables with the
 * extension's own rows, which the extension's condition leaves out. The rows
 * are written in one target transaction that first deletes those the same
 * condition selects there (children of a foreign key first), then copies the
 * source's (parents first): a rerun after an interrupted init writes the same
 * rows again instead of doubling them, and cutover (with writers fenced) makes
 * the target's the source's once more. A table the target refuses is left as
 * it was: the transaction is rolled back and tried again without it.
 *
 * What cannot be copied as it is (the table or a column missing on the target,
 * an extension at another version there, a data rule on one of its columns:
 * pgferry masks only the tables of the scope) is a warning naming the table and
 * the \copy that carries it over by hand; init goes on. Logical replication
 * carries none of these tables: cutover copies them again once the source is
 * fenced.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { parseRules, ruleFor } from '../../config/data-rules.js';
import { tableSelector, type TableRules } from '../../config/scope.js';
import { extensionConfigRelations, foreignKeysAmong, type ExtensionConfigRelation } from '../../postgres/catalog/extensions.js';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isStatementRefusal, operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdentList, quoteLiteral } from '../../postgres/identifiers.js';
import { formatBytes, plural } from '../../units.js';

export interface ExtensionDataOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  /** Sessions to work on instead of opening two (cutover's, inside its window); left as they were found. */
  sessions?: { source: pg.Client; target: pg.Client };
  /** init's snapshot, so that the rows are those of the same instant as every other table's; without one, a fresh one (a fenced source). */
  snapshot?: string;
  rules: TableRules;
  /** The source's configuration relations when the caller has read them already (the catalog does not change meanwhile). */
  relations?: readonly ExtensionConfigRelation[];
  warn: (message: string) => void;
  signal?: AbortSignal;
}

export interface ExtensionDataResult {
  tables: number;
  rows: number;
  sequences: number;
  /** Relations left for the user to copy (each one warned about). */
  skipped: string[];
}

/**
 * A configuration table is read whole before it is written, so that a write the target refuses leaves both sessions
 * usable; one larger than this is left to copy by hand (they hold settings: pg_cron's jobs, PostGIS's 8 500 spatial
 * reference systems take a few MB).
 */
export const MAX_CONFIG_TABLE_BYTES = 128 * 1024 ** 2;

/** What a rerun or the user copies by hand: the extension's own condition on both sides. */
function handCopy(r: ExtensionConfigRelation, columns?: readonly string[]): string {
  const rel = qualifiedName(r.schema, r.name);
  const cols = columns ? quoteIdentList(columns) : '*';
  const where = r.condition ? ` ${r.condition}` : '';
  return `\\copy (SELECT ${cols} FROM ONLY ${rel}${where}) TO 'rows.csv' on the source, then on the target DELETE FROM ONLY ${rel}${where} and \\copy ${rel}${columns ? ` (${cols})` : ''} FROM 'rows.csv'`;
}

export async function copyExtensionData(o: ExtensionDataOptions): Promise<ExtensionDataResult> {
  const result: ExtensionDataResult = { tables: 0, rows: 0, sequences: 0, skipped: [] };
  const skip = (r: ExtensionConfigRelation, why: string, fix: string) => {
    result.skipped.push(`${r.schema}.${r.name}`);
    o.warn(`${displayName(r.schema, r.name)} (configuration of extension ${r.extension}) was not copied: ${why}; ${fix}`);
  };
  const own: pg.Client[] = [];
  const opened = async (c: Promise<pg.Client>) => {
    const client = await c;
    own.push(client);
    return client;
  };
  let src: pg.Client | undefined;
  let tgt: pg.Client | undefined;
  let open = false;
  let writing = false;
  try {
    src = o.sessions?.source ?? (await opened(connect(o.source, { label: 'the source', settings: { ...CANONICAL_SETTINGS } })));
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    open = true;
    if (o.snapshot) await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(o.snapshot)}`);
    const selected = tableSelector(o.rules);
    const dataRules = parseRules(o.rules.dataRules ?? []);
    // Left out of the scope by a pattern (an exact name cannot name an extension's table), or schema only: not copied, as any table.
    const relations = (o.relations ?? (await extensionConfigRelations(src))).filter((r) => selected(r.schema, r.name) && !schemaOnly(o.rules, r));
    if (!relations.length) return result;
    tgt = o.sessions?.target ?? (await opened(connect(o.target, { label: 'the target' })));
    const ready: { r: ExtensionConfigRelation; rel: string; columns: string[]; rows: Buffer[] }[] = [];
    const tables = relations.filter((r) => r.relkind === 'r');
    const order = parentsFirst(tables.map((r) => r.oid), await foreignKeysAmong(src, tables.map((r) => r.oid)));
    for (const r of [...relations.filter((x) => x.relkind === 'S'), ...order.map((oid) => tables.find((t) => t.oid === oid)!)]) {
      if (o.signal?.aborted) throw o.signal.reason;
      const rel = qualifiedName(r.schema, r.name);
      if (r.relkind === 'S') {
        let value: { value: string; called: boolean };
        try {
          // Read outside any snapshot, as pg_dump reads it: a sequence's latest value.
          await src.query('SAVEPOINT config_table');
          value = (await src.query<{ value: string; called: boolean }>(`SELECT last_value::text AS value, is_called AS called FROM ${rel}`)).rows[0]!;
          await src.query('RELEASE SAVEPOINT config_table');
        } catch (err) {
          if (!isStatementRefusal(err)) throw err;
          await src.query('ROLLBACK TO SAVEPOINT config_table');
          skip(r, `the source refused to read it: ${(err as Error).message}`, 'set it on the target by hand (setval)');
          continue;
        }
        const setval = `SELECT setval(${quoteLiteral(rel)}, ${value.value}, ${value.called})`;
        const there = await tgt.query('SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind = $2', [rel, 'S']);
        if (!there.rowCount) {
          skip(r, 'the sequence does not exist on the target', `set it there by hand: ${setval}`);
          continue;
        }
        try {
          await tgt.query('SELECT setval($1::regclass, $2::bigint, $3)', [rel, value.value, value.called]);
          result.sequences++;
        } catch (err) {
          if (!isStatementRefusal(err)) throw err;
          skip(r, `the target refused it: ${(err as Error).message}`, `set it there by hand: ${setval}`);
        }
        continue;
      }
      const { columns, bytes } = await sourceTable(src, rel);
      const masked = columns.filter((c) => ruleFor(dataRules, r.schema, r.name, c));
      if (masked.length) {
        skip(r, `a data rule names its column${masked.length > 1 ? 's' : ''} ${masked.join(', ')}, and pgferry masks only the tables of the scope`, 'copy the rows you want there by hand');
        continue;
      }
      if (bytes > MAX_CONFIG_TABLE_BYTES) {
        skip(r, `it takes ${formatBytes(bytes)}, more than pgferry reads into memory for such a table`, `copy its rows by hand: ${handCopy(r, columns)}`);
        continue;
      }
      const onTarget = await tgt.query<{ name: string }>(
        'SELECT a.attname AS name FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped',
        [rel],
      );
      if (!onTarget.rowCount) {
        skip(r, 'the table does not exist on the target (is the extension at the same version there?)', `copy its rows by hand: ${handCopy(r, columns)}`);
        continue;
      }
      const missing = columns.filter((c) => !onTarget.rows.some((t) => t.name === c));
      if (missing.length) {
        skip(r, `the target's table has no column ${missing.join(', ')} (is the extension at another version there?)`, `copy the rows by hand: ${handCopy(r)}`);
        continue;
      }
      try {
        await src.query('SAVEPOINT config_table');
        const rows = await readAll(src.query(copyTo(`COPY (SELECT ${quoteIdentList(columns)} FROM ONLY ${rel} ${r.condition}) TO STDOUT`)));
        await src.query('RELEASE SAVEPOINT config_table');
        ready.push({ r, rel, columns, rows });
      } catch (err) {
        if (!isStatementRefusal(err)) throw err;
        await src.query('ROLLBACK TO SAVEPOINT config_table');
        skip(r, `the source refused to read it: ${(err as Error).message}`, `copy the rows by hand: ${handCopy(r, columns)}`);
      }
    }
    // One target transaction: the rows a foreign key between two such tables ties are deleted children first and
    // written parents first. A table the target refuses undoes the whole transaction, and it is tried again without
    // that table, so that every table's rows are either all replaced or left as they were.
    let pending = ready;
    while (pending.length) {
      await tgt.query('BEGIN');
      writing = true;
      let failed: (typeof ready)[number] | undefined;
      let failure: unknown;
      let rows = 0;
      for (const t of [...pending].reverse()) {
        try {
          await tgt.query(`DELETE FROM ONLY ${t.rel} ${t.r.condition}`);
        } catch (err) {
          [failed, failure] = [t, err];
          break;
        }
      }
      for (const t of failed ? [] : pending) {
        try {
          const into = tgt.query(copyFrom(`COPY ${t.rel} (${quoteIdentList(t.columns)}) FROM STDIN`));
          await pipeline(Readable.from(t.rows), into);
          rows += into.rowCount ?? 0;
        } catch (err) {
          [failed, failure] = [t, err];
          break;
        }
      }
      if (!failed) {
        await tgt.query('COMMIT');
        writing = false;
        result.tables += pending.length;
        result.rows += rows;
        break;
      }
      await tgt.query('ROLLBACK');
      writing = false;
      if (!isStatementRefusal(failure)) throw failure;
      skip(failed.r, `the target refused it: ${(failure as Error).message}`, `copy the rows by hand: ${handCopy(failed.r, failed.columns)}`);
      pending = pending.filter((t) => t !== failed);
    }
    return result;
  } catch (err) {
    throw operationError(err, "copying the rows of the extensions' configuration tables");
  } finally {
    // Borrowed sessions are handed back outside any transaction.
    if (open && !own.includes(src!)) await src!.query('ROLLBACK').catch(() => {});
    if (writing && !own.includes(tgt!)) await tgt!.query('ROLLBACK').catch(() => {});
    await Promise.all(own.map((c) => c.end().catch(() => {})));
  }
}

/**
 * The tables in an order where each comes after those it references (pg_dump orders the configuration tables'
 * data so); the given order otherwise, and among the tables of a reference cycle.
 */
export function parentsFirst(oids: readonly string[], fks: readonly { child: string; parent: string }[]): string[] {
  const out: string[] = [];
  const left = new Set(oids);
  while (left.size) {
    const next = [...left].find((o) => !fks.some((f) => f.child === o && f.parent !== o && left.has(f.parent))) ?? [...left][0]!;
    out.push(next);
    left.delete(next);
  }
  return out;
}

/** Every chunk of a COPY TO, in order. */
async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const chunk of stream) out.push(chunk as Buffer);
  return out;
}

function schemaOnly(rules: TableRules, r: ExtensionConfigRelation): boolean {
  return rules.schemaOnly.length > 0 && tableSelector({ include: rules.schemaOnly, exclude: [] })(r.schema, r.name);
}

/** The columns COPY writes (every column but generated ones, in the source's order), and the table's size. */
async function sourceTable(src: pg.Client, rel: string): Promise<{ columns: string[]; bytes: number }> {
  const { rows } = await src.query<{ name: string; bytes: string }>(
    `SELECT attname AS name, pg_total_relation_size(attrelid)::text AS bytes FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [rel],
  );
  return { columns: rows.map((x) => x.name), bytes: Number(rows[0]?.bytes ?? 0) };
}

/** One line for the progress display. */
export function describeExtensionData(r: ExtensionDataResult): string {
  const parts = [`${plural(r.tables, 'table')}, ${plural(r.rows, 'row')}`];
  if (r.sequences) parts.push(plural(r.sequences, 'sequence'));
  if (r.skipped.length) parts.push(`${r.skipped.length} left to copy by hand`);
  return parts.join(', ');
}
