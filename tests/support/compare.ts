/**
 * Compare two databases the way a test needs to: the schema as pg_dump
 * prints it (normalised), every table's rows as an ordered hash, large
 * objects and sequence values. Both sides are read with the same canonical
 * session settings, so equal data gives equal text.
 */
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { listTables } from '../../src/postgres/catalog/tables.js';
import { CANONICAL_SETTINGS, withClient } from '../../src/postgres/connect.js';
import type { ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { qualifiedName } from '../../src/postgres/identifiers.js';
import { runTool } from '../../src/postgres/tools.js';

export interface TableHash {
  rows: number;
  /** sha256 over the rows' text, sorted bytewise. */
  hash: string;
}

async function hashQuery(client: pg.Client, sql: string): Promise<TableHash> {
  const h = createHash('sha256');
  let rows = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      // One line per row in COPY's text format (newlines inside values are escaped). Counted here: the stream's
      // rowCount comes with CommandComplete, which may trail the last data byte and so the end of the pipeline.
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) rows++;
      cb();
    },
  });
  const stream = client.query(copyTo(`COPY (${sql}) TO STDOUT`));
  await pipeline(stream, sink);
  return { rows, hash: h.digest('hex') };
}

/** SELECT of one table's own rows (partitioned: all partitions), as row text, in a stable order. */
export function orderedRowsSql(schema: string, name: string, partitioned: boolean, where?: string): string {
  const rel = `${partitioned ? '' : 'ONLY '}${qualifiedName(schema, name)}`;
  return `SELECT t::text AS r FROM ${rel} t${where ? ` WHERE ${where}` : ''} ORDER BY (t::text) COLLATE "C"`;
}

/** "schema.table" → row count and ordered hash, for every user table (or those given). */
export async function tableHashes(
  conn: ResolvedConnInfo,
  only?: { schema: string; name: string; where?: string }[],
): Promise<Record<string, TableHash>> {
  return withClient(
    conn,
    async (c) => {
      const tables = await listTables(c);
      const out: Record<string, TableHash> = {};
      const wanted: { schema: string; name: string; where?: string }[] = only ?? tables.map((t) => ({ schema: t.schema, name: t.name }));
      for (const w of wanted) {
        const t = tables.find((x) => x.schema === w.schema && x.name === w.name);
        if (!t) throw new Error(`table ${w.schema}.${w.name} does not exist in ${conn.dbname}`);
        out[`${t.schema}.${t.name}`] = await hashQuery(c, orderedRowsSql(t.schema, t.name, t.relkind === 'p', w.where));
      }
      return out;
    },
    { settings: { ...CANONICAL_SETTINGS } },
  );
}

/** Large objects: oid → md5 of the content, owner. */
export async function largeObjects(conn: ResolvedConnInfo): Promise<Record<string, string>> {
  return withClient(conn, async (c) => {
    const { rows } = await c.query<{ oid: string; md5: string; owner: string; comment: string | null }>(
      `SELECT oid::text, md5(lo_get(oid)) AS md5, pg_get_userbyid(lomowner) AS owner, obj_description(oid, 'pg_largeobject') AS comment
         FROM pg_largeobject_metadata ORDER BY oid`,
    );
    return Object.fromEntries(rows.map((r) => [r.oid, `${r.md5} ${r.owner} ${r.comment ?? ''}`]));
  });
}

/** Sequences: "schema.name" → "last_value is_called". */
export async function sequenceValues(conn: ResolvedConnInfo): Promise<Record<string, string>> {
  return withClient(conn, async (c) => {
    const { rows } = await c.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`,
    );
    const out: Record<string, string> = {};
    for (const r of rows) {
      const v = await c.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${qualifiedName(r.schema, r.name)}`);
      out[`${r.schema}.${r.name}`] = `${v.rows[0]!.last_value} ${v.rows[0]!.is_called}`;
    }
    return out;
  });
}

/**
 * The schema as `pg_dump --schema-only` prints it, without what differs
 * between any two dumps of equal schemas: comment lines (they name the
 * server version and dump time), psql's \restrict / \unrestrict lines (a
 * random key per dump) and blank lines.
 */
export async function dumpSchemaText(conn: ResolvedConnInfo, pgBinDir?: string): Promise<string> {
  const { stdout } = await runTool('pg_dump', ['--schema-only'], { conn, pgBinDir, label: `pg_dump --schema-only of ${conn.dbname}` });
  return normaliseSchemaDump(stdout);
}

export function normaliseSchemaDump(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('--') && !/^\\(un)?restrict\b/.test(l))
    .join('\n');
}

/**
 * The structure of a database from its catalog, as sorted lines: relations,
 * columns with types, constraints, indexes, triggers, policies, functions and
 * sequences. For servers a pg_dump cannot read (a newer major than the
 * installed client tools); definitions come from pg_get_*def, which prints the
 * same text on every major for the objects the fixtures use.
 */
export async function catalogSummary(conn: ResolvedConnInfo): Promise<string[]> {
  return withClient(conn, async (c) => {
    await c.query("SELECT pg_catalog.set_config('search_path', '', false)");
    const sys = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp%'`;
    const { rows } = await c.query<{ line: string }>(`
      SELECT 'relation ' || c.relkind::text || ' ' || n.nspname || '.' || c.relname || ' owner ' || pg_get_userbyid(c.relowner)
             || ' rls ' || c.relrowsecurity || ' persistence ' || c.relpersistence::text || ' identity ' || c.relreplident::text AS line
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${sys} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'c')
      UNION ALL
      SELECT 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || ' notnull ' || a.attnotnull || ' generated ' || a.attgenerated::text || ' identity ' || a.attidentity::text
             || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE ${sys} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'c')
      UNION ALL
      SELECT 'constraint ' || n.nspname || '.' || coalesce(t.relname, ty.typname, '') || '.' || co.conname || ' ' || pg_get_constraintdef(co.oid)
             || ' validated ' || co.convalidated
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
        LEFT JOIN pg_class t ON t.oid = co.conrelid LEFT JOIN pg_type ty ON ty.oid = co.contypid WHERE ${sys}
      UNION ALL
      SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${sys}
      UNION ALL
      SELECT 'trigger ' || pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${sys} AND NOT g.tgisinternal
      UNION ALL
      SELECT 'policy ' || n.nspname || '.' || c.relname || '.' || p.polname || ' ' || p.polcmd::text || ' ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      UNION ALL
      SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' || md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${sys}
      UNION ALL
      SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE ${sys} AND t.typtype IN ('e', 'd', 'c', 'r') AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
      UNION ALL
      SELECT 'enum ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid GROUP BY t.typname
      UNION ALL
      SELECT 'comment ' || d.classoid::regclass::text || ' ' || d.objsubid || ' ' || d.description FROM pg_description d
        WHERE d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${sys})`);
    return rows.map((r) => r.line).sort();
  });
}
