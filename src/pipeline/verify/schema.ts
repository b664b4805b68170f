/**
 * The schema check beside the data: columns (type, NOT NULL, generated,
 * identity), constraints and indexes of every table in scope, compared by
 * name; and sequences, whose target value must have reached the source's
 * (sequences are not replicated, so a target behind the source would hand out
 * used values after cutover).
 */
import { notExtensionMemberSql, notNullValidSql, USER_TABLE, type CatalogColumn } from '../../postgres/catalog/tables.js';
import { displayName } from '../../postgres/identifiers.js';
import type { SideSession } from './sessions.js';
import type { SchemaDifference, SequenceReport } from './types.js';

export interface TableRef {
  schema: string;
  name: string;
}

interface CatalogItem {
  kind: 'table' | 'column' | 'constraint' | 'index';
  schema: string;
  table: string;
  name: string;
  def: string;
}

// Works on PostgreSQL 12+. NOT NULL constraints (contype 'n', PostgreSQL 18) are
// covered by the column check.
const TABLES_CTE = `
WITH t AS (
  SELECT c.oid, n.nspname, c.relname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN unnest($1::text[], $2::text[]) AS u(s, r) ON u.s = n.nspname AND u.r = c.relname
   WHERE c.relkind IN ('r', 'p'))`;

/** A column's definition as CATALOG_SQL reads it (ColumnDef, as JSON). */
const COLUMN_JSON = `json_build_object('type', format_type(a.atttypid, a.atttypmod), 'notNull', a.attnotnull, 'notNullValid', ${notNullValidSql('a')},
                         'generated', a.attgenerated::text, 'identity', a.attidentity::text)::text`;

/** The same facts for the digest, which only compares them: a fifth of the digest's cost less than building JSON (3 000 tables). */
const COLUMN_DIGEST = `concat_ws(chr(1), format_type(a.atttypid, a.atttypmod), a.attnotnull, ${notNullValidSql('a')}, a.attgenerated, a.attidentity)`;

/** The columns, constraints and indexes of the tables in t: (oid, nspname, relname, kind, name, def). */
const itemsSql = (columnDef: string) => `
SELECT t.oid, t.nspname, t.relname, 'column' AS kind, a.attname::text AS name,
       ${columnDef} AS def
  FROM t JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT t.oid, t.nspname, t.relname, 'constraint', co.conname::text, co.contype::text || ' ' || pg_get_constraintdef(co.oid, true)
  FROM t JOIN pg_constraint co ON co.conrelid = t.oid AND co.contype <> 'n'
UNION ALL
SELECT t.oid, t.nspname, t.relname, 'index', ic.relname::text, pg_get_indexdef(i.indexrelid)
  FROM t JOIN pg_index i ON i.indrelid = t.oid JOIN pg_class ic ON ic.oid = i.indexrelid`;

const CATALOG_SQL = `${TABLES_CTE}
SELECT 'table' AS kind, t.nspname AS schema, t.relname AS "table", '' AS name, '' AS def FROM t
UNION ALL
SELECT kind, nspname, relname, name, def FROM (${itemsSql(COLUMN_JSON)}) i`;

/**
 * One digest per table of everything CATALOG_SQL lists for it, in a fixed order: two sides whose digests
 * match have the same columns, constraints and indexes, and only the others are read item by item. A table
 * with no item at all has no digest (it is read item by item too); so has one whose digests differ only
 * because the two servers encode its names differently. The items are grouped as they come: joined back to
 * t, whose row count the planner cannot know, they were rescanned once per table (0.8 s for 200 tables).
 */
const DIGEST_SQL = `${TABLES_CTE}
SELECT i.nspname AS schema, i.relname AS "table",
       md5(string_agg(i.kind || chr(1) || i.name || chr(1) || coalesce(i.def, ''), chr(2) ORDER BY i.kind COLLATE "C", i.name COLLATE "C")) AS digest
  FROM (${itemsSql(COLUMN_DIGEST)}) i
 GROUP BY i.oid, i.nspname, i.relname`;

/** A side's columns, constraints and indexes of the given tables, keyed by kind, table and name. */
type SchemaCatalog = Map<string, CatalogItem>;

async function readSchemaCatalog(s: SideSession, tables: readonly TableRef[]): Promise<SchemaCatalog> {
  const rows = await s.query<{ kind: CatalogItem['kind']; schema: string; table: string; name: string; def: string }>({
    text: CATALOG_SQL,
    values: [tables.map((t) => t.schema), tables.map((t) => t.name)],
  });
  const out = new Map<string, CatalogItem>();
  // Names cannot hold a NUL, so the joined key is unambiguous.
  for (const r of rows) out.set(`${r.kind}\0${r.schema}\0${r.table}\0${r.name}`, r);
  return out;
}

/** A side's schema digest per table (keyed by tableId), tables not found absent. */
export type SchemaDigests = Map<string, string>;

/** A table's key in SchemaDigests and in what compareTableSchemas takes and returns: unambiguous, as names hold no NUL. */
export function tableId(schema: string, name: string): string {
  return `${schema}\0${name}`;
}

export async function readSchemaDigests(s: SideSession, tables: readonly TableRef[]): Promise<SchemaDigests> {
  const rows = await s.query<{ schema: string; table: string; digest: string }>({
    text: DIGEST_SQL,
    values: [tables.map((t) => t.schema), tables.map((t) => t.name)],
  });
  return new Map(rows.map((r) => [tableId(r.schema, r.table), r.digest]));
}

interface ColumnDef {
  type: string;
  notNull: boolean;
  notNullValid: boolean;
  generated: string;
  identity: string;
}

function describeColumnChange(a: ColumnDef, b: ColumnDef): string {
  const parts: string[] = [];
  if (a.type !== b.type) parts.push(`type ${a.type} on the source, ${b.type} on the target`);
  if (a.notNull !== b.notNull) parts.push(a.notNull ? 'NOT NULL on the source only' : 'NOT NULL on the target only');
  else if (a.notNull && a.notNullValid !== b.notNullValid) parts.push(`NOT NULL not validated on the ${a.notNullValid ? 'target' : 'source'}`);
  if (a.generated !== b.generated) parts.push(a.generated ? 'generated on the source only' : 'generated on the target only');
  if (a.identity !== b.identity) parts.push(`identity "${a.identity || 'none'}" on the source, "${b.identity || 'none'}" on the target`);
  return parts.join('; ');
}

export interface TargetColumn {
  type: string;
  notNullValid: boolean;
}

export interface SchemaComparison {
  /** Differences per table, keyed by tableId. A missing table is one 'table' difference. */
  differences: Map<string, SchemaDifference[]>;
  /**
   * Columns of each table as the target sees them (tableId → column → its format_type, and whether
   * it holds no NULL: a validated NOT NULL); missing tables are absent.
   */
  targetColumns: Map<string, Map<string, TargetColumn>>;
}

/**
 * The schemas of the tables on both sides, compared; and the target's columns. Each side first sends one
 * digest per table; only tables whose digests differ (or that one side lacks) are read item by item, and a
 * table whose digests match has the source's columns on the target too (`sourceColumns`).
 * `targetDigests`: the target's, already being read (of these tables or more: others are left out).
 */
export async function compareTableSchemas(
  source: SideSession, target: SideSession, tables: readonly TableRef[],
  sourceColumns: ReadonlyMap<string, readonly CatalogColumn[]>, targetDigests?: Promise<SchemaDigests>,
): Promise<SchemaComparison> {
  const [srcDigests, tgtDigests] = await Promise.all([readSchemaDigests(source, tables), targetDigests ?? readSchemaDigests(target, tables)]);
  const targetColumns = new Map<string, Map<string, TargetColumn>>();
  const differing: TableRef[] = [];
  for (const t of tables) {
    const id = tableId(t.schema, t.name);
    const digest = srcDigests.get(id);
    const cols = sourceColumns.get(id);
    if (digest !== undefined && digest === tgtDigests.get(id) && cols) {
      targetColumns.set(id, new Map(cols.map((c) => [c.name, { type: c.type, notNullValid: c.notNullValid }])));
    } else {
      differing.push(t);
    }
  }
  const [src, tgt] = differing.length
    ? await Promise.all([readSchemaCatalog(source, differing), readSchemaCatalog(target, differing)])
    : [new Map<string, CatalogItem>(), new Map<string, CatalogItem>()];
  for (const i of tgt.values()) {
    if (i.kind !== 'column') continue;
    const key = tableId(i.schema, i.table);
    if (!targetColumns.has(key)) targetColumns.set(key, new Map());
    const { type, notNullValid } = JSON.parse(i.def) as ColumnDef;
    targetColumns.get(key)!.set(i.name, { type, notNullValid });
  }
  const out = new Map<string, SchemaDifference[]>();
  for (const t of tables) out.set(tableId(t.schema, t.name), []);
  const push = (i: CatalogItem, d: Omit<SchemaDifference, 'kind'> & { kind?: SchemaDifference['kind'] }) =>
    out.get(tableId(i.schema, i.table))?.push({ kind: d.kind ?? i.kind, object: d.object, message: d.message });
  const missingTables = new Set<string>();
  for (const [id, a] of src) {
    const b = tgt.get(id);
    // Most items are equal: names are formatted only for a difference.
    if (b && a.def === b.def) continue;
    const tableName = displayName(a.schema, a.table);
    if (a.kind === 'table') {
      if (!b) {
        missingTables.add(tableId(a.schema, a.table));
        push(a, { object: tableName, message: 'table is missing on the target' });
      }
      continue;
    }
    if (missingTables.has(tableId(a.schema, a.table))) continue;
    const object = a.kind === 'column' ? `${tableName}.${a.name}` : `${a.name} on ${tableName}`;
    if (!b) {
      push(a, { object, message: `${a.kind} is missing on the target` });
      continue;
    }
    if (a.kind === 'column') {
      push(a, { object, message: describeColumnChange(JSON.parse(a.def) as ColumnDef, JSON.parse(b.def) as ColumnDef) });
    } else {
      push(a, { object, message: `definition differs: source "${a.def}", target "${b.def}"` });
    }
  }
  for (const [id, b] of tgt) {
    if (b.kind === 'table' || src.has(id)) continue;
    const tableName = displayName(b.schema, b.table);
    const object = b.kind === 'column' ? `${tableName}.${b.name}` : `${b.name} on ${tableName}`;
    push(b, { object, message: `${b.kind} exists only on the target` });
  }
  return { differences: out, targetColumns };
}

/**
 * User tables of the target database (not partitions, not owned by an
 * extension), as the source's table list is drawn up. A table in scope on the
 * target but not on the source is a difference too: a leftover of an earlier
 * attempt, or something written to the target alone.
 */
export async function targetTables(target: SideSession): Promise<TableRef[]> {
  return target.query<{ schema: string; name: string }>({
    text: `SELECT n.nspname AS schema, c.relname AS name
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE ${USER_TABLE}
            ORDER BY 1, 2`,
    values: [],
  });
}

interface SequenceRow {
  schema: string;
  name: string;
  value: string | null;
  inc: string;
  owner_schema: string | null;
  owner_table: string | null;
}

const SEQUENCES_SQL = `
SELECT n.nspname AS schema, c.relname AS name, s.last_value::text AS value, s.increment_by::text AS inc,
       tn.nspname AS owner_schema, tc.relname AS owner_table
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
  LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                       AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  LEFT JOIN pg_class tc ON tc.oid = d.refobjid
  LEFT JOIN pg_namespace tn ON tn.oid = tc.relnamespace
 WHERE c.relkind = 'S'
   AND ${notExtensionMemberSql('c')}
 ORDER BY 1, 2`;

/**
 * Sequences owned by a table in scope, plus free-standing ones when the whole
 * database is in scope. The target value must be at least the source value
 * (at most, for descending sequences).
 */
export async function compareSequences(
  source: SideSession,
  target: SideSession,
  tables: readonly TableRef[],
  wholeDatabase: boolean,
): Promise<SequenceReport[]> {
  const [src, tgt] = await Promise.all([
    source.query<SequenceRow & Record<string, unknown>>({ text: SEQUENCES_SQL, values: [] }),
    target.query<SequenceRow & Record<string, unknown>>({ text: SEQUENCES_SQL, values: [] }),
  ]);
  const inScope = new Set(tables.map((t) => `${t.schema}.${t.name}`));
  const tmap = new Map(tgt.map((r) => [`${r.schema}.${r.name}`, r]));
  const out: SequenceReport[] = [];
  for (const s of src) {
    const owned = s.owner_table !== null;
    if (owned ? !inScope.has(`${s.owner_schema}.${s.owner_table}`) : !wholeDatabase) continue;
    const t = tmap.get(`${s.schema}.${s.name}`);
    const name = displayName(s.schema, s.name);
    if (!t) {
      out.push({ name, sourceValue: s.value, targetValue: null, status: 'missing' });
      continue;
    }
    let status: SequenceReport['status'] = 'ok';
    if (s.value !== null) {
      const sv = BigInt(s.value);
      const descending = BigInt(s.inc) < 0n;
      if (t.value === null) status = 'behind';
      else {
        const tv = BigInt(t.value);
        if (descending ? tv > sv : tv < sv) status = 'behind';
      }
    }
    out.push({ name, sourceValue: s.value, targetValue: t.value, status });
  }
  return out;
}
