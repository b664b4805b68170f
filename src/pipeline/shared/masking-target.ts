/**
 * Masking of streamed rows, on the target.
 *
 * The publication leaves masked columns out (a column list, PostgreSQL 15+),
 * so their raw values never leave the source. The target's apply worker then
 * inserts rows without them and, on UPDATE, keeps the target's own value of
 * columns the stream does not carry. A BEFORE INSERT OR UPDATE trigger on the
 * target table, ENABLE ALWAYS so that it fires under replication (the apply
 * and table synchronisation workers run with session_replication_role =
 * replica), computes the masked columns with the very expressions init used
 * in its COPY (masking.ts):
 * - deterministic rules (unique_*, null, value) on INSERT and UPDATE, from the
 *   row's key, so a row gets the same value as init gave it and a changed key
 *   gets its new value;
 * - random rules and statements on INSERT only; an UPDATE keeps the value the
 *   row already has on the target (the raw new value is never sent).
 * The function runs with the canonical settings, so the key's text (and so its
 * md5) is the same as in init's COPY session and in verify.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { qualifiedName, quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { isDeterministic, maskExpression, type TableMasking } from '../../config/data-rules.js';
import type { MaskableTable } from '../../config/data-rules-catalog.js';

export const MASK_TRIGGER = 'pgferry_mask';

/** The trigger function's name (in the table's schema): one per table, at most 63 bytes. */
export function maskFunctionName(schema: string, table: string): string {
  return `pgferry_mask_${createHash('sha256').update(`${schema}.${table}`).digest('hex').slice(0, 12)}`;
}

/** The assignments of the trigger function's body. */
function assignments(t: { schema: string; name: string }, m: TableMasking): { always: string[]; onInsert: string[] } {
  const always: string[] = [];
  const onInsert: string[] = [];
  const ref = (c: string) => `NEW.${quoteIdent(c)}`;
  for (const mask of m.masks) {
    let line: string;
    if (mask.rule.kind === 'statement') {
      // The statement names columns as in a SELECT from the table: evaluate it over the new row, aliased as the table.
      const sql = `SELECT ${maskExpression(mask, m.keyColumns)} FROM (SELECT ($1).*) AS ${quoteIdent(t.name)}`;
      line = `EXECUTE ${quoteLiteral(sql)} INTO ${ref(mask.column)} USING NEW;`;
    } else {
      line = `${ref(mask.column)} := ${maskExpression(mask, m.keyColumns, ref)};`;
    }
    (isDeterministic(mask.rule) ? always : onInsert).push(line);
  }
  return { always, onInsert };
}

/** CREATE FUNCTION … for one masked table. */
export function maskFunctionSql(t: { schema: string; name: string }, m: TableMasking): string {
  const { always, onInsert } = assignments(t, m);
  const body = [
    'BEGIN',
    ...(onInsert.length ? ["  IF TG_OP = 'INSERT' THEN", ...onInsert.map((l) => `    ${l}`), '  END IF;'] : []),
    ...always.map((l) => `  ${l}`),
    '  RETURN NEW;',
    'END',
  ].join('\n');
  let tag = '$pgferry$';
  for (let i = 0; body.includes(tag); i++) tag = `$pgferry${i}$`;
  return (
    `CREATE OR REPLACE FUNCTION ${qualifiedName(t.schema, maskFunctionName(t.schema, t.name))}() RETURNS trigger LANGUAGE plpgsql ` +
    `SET "TimeZone" = 'UTC' SET "DateStyle" = 'ISO, MDY' SET "IntervalStyle" = 'postgres' SET extra_float_digits = 3 ` +
    `SET bytea_output = 'hex' SET search_path = public AS ${tag}\n${body}\n${tag}`
  );
}

/**
 * Create (or replace) the masking trigger of every masked table on the
 * target, and drop it from tables in `tables` that no longer have masks.
 * Run before the subscription can apply anything to these tables.
 */
export async function installMaskTriggers(client: pg.Client, tables: readonly MaskableTable[]): Promise<string[]> {
  const done: string[] = [];
  // Only tables that have the trigger lose it: DROP TRIGGER locks its table, even when there is nothing to drop.
  const existing = new Set((await listMaskTriggers(client)).map((r) => `${r.schema}\u0000${r.table}`));
  await client.query('BEGIN');
  try {
    for (const t of tables) {
      const rel = qualifiedName(t.schema, t.name);
      const fn = qualifiedName(t.schema, maskFunctionName(t.schema, t.name));
      if (t.masking?.masks.length) {
        await client.query(maskFunctionSql(t, t.masking));
        await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(MASK_TRIGGER)} ON ${rel}`);
        await client.query(`CREATE TRIGGER ${quoteIdent(MASK_TRIGGER)} BEFORE INSERT OR UPDATE ON ${rel} FOR EACH ROW EXECUTE FUNCTION ${fn}()`);
        await client.query(`ALTER TABLE ${rel} ENABLE ALWAYS TRIGGER ${quoteIdent(MASK_TRIGGER)}`);
        done.push(`${t.schema}.${t.name}`);
      } else if (existing.has(`${t.schema}\u0000${t.name}`)) {
        await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(MASK_TRIGGER)} ON ${rel}`);
        await client.query(`DROP FUNCTION IF EXISTS ${fn}()`);
      }
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
  return done;
}

/** Tables of this database with pgferry's masking trigger ("schema.table" → its function), for cleanup. */
export async function listMaskTriggers(client: pg.Client): Promise<{ schema: string; table: string; fn: string }[]> {
  const { rows } = await client.query<{ schema: string; table: string; fn: string }>(
    `SELECT n.nspname AS schema, c.relname AS table, p.proname AS fn
       FROM pg_trigger tg
       JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_proc p ON p.oid = tg.tgfoid
      WHERE tg.tgname = $1 AND p.proname LIKE 'pgferry\\_mask\\_%'
      ORDER BY 1, 2`,
    [MASK_TRIGGER],
  );
  return rows;
}

/** Drop every masking trigger and function pgferry made in this database (cleanup): later writes on the target are no longer masked. */
export async function dropMaskTriggers(client: pg.Client): Promise<number> {
  const rows = await listMaskTriggers(client);
  for (const r of rows) {
    await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(MASK_TRIGGER)} ON ${qualifiedName(r.schema, r.table)}`);
    await client.query(`DROP FUNCTION IF EXISTS ${qualifiedName(r.schema, r.fn)}()`);
  }
  return rows.length;
}
