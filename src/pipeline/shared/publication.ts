/**
 * The publication on the source: which tables it carries and with which row
 * filters, created or brought up to date in one statement.
 *
 * Order matters. pgoutput looks a publication up with the catalog as it was
 * when each change was committed, so a slot created BEFORE its publication
 * cannot be decoded past the first change that precedes it ("publication …
 * does not exist"), and a table added to a publication later loses the changes
 * committed before it was added. So init creates the publication (through
 * `ensurePublication`) before it creates the slot, and sync checks with
 * `slotDecodable` that the slot can in fact be read with it.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { lockTableError, sqlstate } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdent, quoteIdentList } from '../../postgres/identifiers.js';
import { singleStatement as single } from '../../postgres/statement.js';
import { tableKey } from '../../state/checkpoint.js';
import { readPublication, type PublicationInfo } from './replication-catalog.js';
import { publishedColumns } from '../../config/data-rules.js';

export interface PublishedTable {
  oid: number;
  schema: string;
  name: string;
  /** Row filter with constants only (time filters already turned into their fixed cutoff), or null. */
  filter: string | null;
  partitioned: boolean;
  /** Column list (15+): set for tables with masked columns, which are left out of it; null = every column. */
  columns?: string[] | null;
}

/**
 * The tables a publication carries for a scope: every table with rows in
 * scope except unlogged ones (logical replication cannot carry them: they are
 * returned separately so the caller can say so).
 */
export function publishedTables(tables: ScopeTable[], filters: Record<string, string>): { published: PublishedTable[]; unlogged: ScopeTable[] } {
  const published: PublishedTable[] = [];
  const unlogged: ScopeTable[] = [];
  for (const t of tables) {
    if (t.schemaOnly) continue;
    if (t.unlogged) {
      unlogged.push(t);
      continue;
    }
    const key = tableKey(t.schema, t.name);
    published.push({
      oid: t.oid, schema: t.schema, name: t.name, filter: filters[key] ?? t.filter ?? null, partitioned: t.relkind === 'p',
      columns: publishedColumns(t.columns, t.masking),
    });
  }
  return { published, unlogged };
}

function tableList(tables: PublishedTable[]): string {
  return tables
    .map((t) => `${qualifiedName(t.schema, t.name)}${t.columns ? ` (${quoteIdentList(t.columns)})` : ''}${t.filter ? ` WHERE (${t.filter})` : ''}`)
    .join(', ');
}

export type PublicationChange = 'created' | 'altered' | 'unchanged';

function membership(p: PublicationInfo | undefined): string {
  return JSON.stringify((p?.tables ?? []).map((t) => [t.oid, t.filter]).sort());
}

/**
 * Create the publication with exactly these tables, or make an existing one
 * carry exactly these (ALTER PUBLICATION … SET TABLE keeps the members whose
 * filter is unchanged, so it never interrupts the stream of those).
 */
export async function ensurePublication(client: pg.Client, name: string, tables: PublishedTable[], major: number): Promise<PublicationChange> {
  try {
    return await setPublication(client, name, tables, major);
  } catch (err) {
    throw publishError(err, name, tables.length);
  }
}

/** A full lock table while publishing, said with what to change; any other error as it is. */
function publishError(err: unknown, name: string, tables: number): unknown {
  return lockTableError(err, `publication ${name} on the source`, 'source', 'CREATE / ALTER PUBLICATION', `each of the ${tables} tables it publishes`);
}

async function setPublication(client: pg.Client, name: string, tables: PublishedTable[], major: number): Promise<PublicationChange> {
  if (major < 15 && tables.some((t) => t.filter)) {
    const t = tables.find((x) => x.filter)!;
    throw new Error(`${displayName(t.schema, t.name)} has a row filter, but publications on PostgreSQL ${major} cannot filter rows`);
  }
  if (major < 15 && tables.some((t) => t.columns)) {
    const t = tables.find((x) => x.columns)!;
    throw new Error(`${displayName(t.schema, t.name)} has masked columns, but publications on PostgreSQL ${major} cannot leave columns out`);
  }
  const viaRoot = tables.some((t) => t.partitioned);
  const before = await readPublication(client, name, major);
  if (!before) {
    const what = tables.length ? ` FOR TABLE ${tableList(tables)}` : '';
    const withRoot = viaRoot ? ' WITH (publish_via_partition_root = true)' : '';
    await client.query(single(`CREATE PUBLICATION ${quoteIdent(name)}${what}${withRoot}`));
    return 'created';
  }
  await client.query('BEGIN');
  try {
    if (viaRoot && !before.viaRoot) await client.query(`ALTER PUBLICATION ${quoteIdent(name)} SET (publish_via_partition_root = true)`);
    if (tables.length) {
      await client.query(single(`ALTER PUBLICATION ${quoteIdent(name)} SET TABLE ${tableList(tables)}`));
    } else if (before.tables.length) {
      await client.query(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${before.tables.map((t) => qualifiedName(t.schema, t.name)).join(', ')}`);
    }
    const after = await readPublication(client, name, major);
    await client.query('COMMIT');
    return membership(before) === membership(after) && (!viaRoot || before.viaRoot) ? 'unchanged' : 'altered';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Remove tables from the publication (those that must wait for the subscription before they are published again). */
export async function dropFromPublication(client: pg.Client, name: string, tables: { schema: string; name: string }[], major: number): Promise<void> {
  const current = await readPublication(client, name, major);
  const present = tables.filter((t) => current?.tables.some((c) => c.schema === t.schema && c.name === t.name));
  if (!present.length) return;
  await client.query(`ALTER PUBLICATION ${quoteIdent(name)} DROP TABLE ${present.map((t) => qualifiedName(t.schema, t.name)).join(', ')}`);
}

/** Add tables to the publication (with their filters); members already there are left as they are. */
export async function addToPublication(client: pg.Client, name: string, tables: PublishedTable[], major: number): Promise<void> {
  const current = await readPublication(client, name, major);
  const missing = tables.filter((t) => !current?.tables.some((c) => c.oid === t.oid));
  if (!missing.length) return;
  await client.query(single(`ALTER PUBLICATION ${quoteIdent(name)} ADD TABLE ${tableList(missing)}`)).catch((err: unknown) => {
    throw publishError(err, name, missing.length);
  });
}

/**
 * Can the slot be decoded with this publication? Peeks (without consuming)
 * at the slot's first pending transaction through pgoutput: when changes are
 * pending from before the publication existed, pgoutput refuses with
 * "publication … does not exist", and a subscription would fail the same way,
 * forever. Returns the error text, or null when the slot is readable.
 */
export async function slotDecodable(client: pg.Client, slot: string, publication: string): Promise<string | null> {
  // Decoding reads only flushed WAL; with synchronous_commit = off the latest commits may not be flushed yet.
  const { rows } = await client.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
  for (let i = 0; i < 100; i++) {
    const f = await client.query<{ ok: boolean }>('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS ok', [rows[0]!.lsn]);
    if (f.rows[0]!.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  try {
    await client.query(
      `SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, 1, 'proto_version', '1', 'publication_names', $2)`,
      [slot, quoteIdent(publication)],
    );
    return null;
  } catch (err) {
    // 55006: the slot is in use (a subscription is reading it): it is being decoded, so it is readable.
    if (sqlstate(err) === '55006') return null;
    return (err as Error).message;
  }
}
