/**
 * The user tables of a database, with what every step needs: columns (and
 * which are generated), keys, replica identity, persistence, partitions,
 * size estimates and the current user's rights. Works on PostgreSQL 12+.
 */
import type pg from 'pg';

export interface CatalogColumn {
  name: string;
  /** format_type(), e.g. "numeric(12,2)". */
  type: string;
  typeOid: number;
  /** A NOT NULL constraint exists (on PostgreSQL 18 it may be NOT VALID: old rows can still hold NULLs). */
  notNull: boolean;
  /** NOT NULL and validated: no row holds a NULL here. */
  notNullValid: boolean;
  /** Generated columns are computed on the target and left out of COPY column lists. */
  generated: boolean;
  identity: boolean;
}

export interface CatalogTable {
  oid: number;
  schema: string;
  name: string;
  /** 'r' ordinary, 'p' partitioned. */
  relkind: 'r' | 'p';
  owner: string;
  unlogged: boolean;
  /** Leaf partitions (schema, name) of a partitioned table, empty otherwise. */
  partitions: { schema: string; name: string; oid: number }[];
  columns: CatalogColumn[];
  /** Primary key columns in key order, or null. */
  primaryKey: string[] | null;
  /** A unique index over NOT NULL columns (the first one found), when there is no primary key. */
  uniqueKey: string[] | null;
  /** 'd' default, 'n' nothing, 'f' full, 'i' index. */
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  /** Columns that identify a row for UPDATE/DELETE in logical replication (empty for FULL/NOTHING/keyless DEFAULT). */
  replicaIdentityColumns: string[];
  /** pg_class.reltuples (summed over partitions); -1 when never analysed. */
  estimatedRows: number;
  /**
   * With ListTablesOptions.liveRows, where pg_class knows nothing (a plain table never vacuumed or
   * analysed: estimatedRows -1), the live rows the cumulative statistics count (inserts less deletes,
   * read without touching the table); null otherwise. Small tables that autovacuum never reaches (under
   * 50 rows written) stay unanalysed for good. 0 after the statistics were reset.
   */
  liveRows: number | null;
  /** Heap + TOAST bytes (summed over partitions); -1 when not read (ListTablesOptions.sizes). */
  bytes: number;
  /** The current user may SELECT it. */
  canSelect: boolean;
  /** The current user owns it (needed to add it to a publication unless superuser). */
  isOwner: boolean;
  /** Has inheritance children that are not partitions. */
  hasInheritanceChildren: boolean;
}

/** A column type a time filter can compare with a point in time: date, timestamp, timestamptz (as format_type names them). */
export function isDateTimeType(type: string): boolean {
  return /^(date|timestamp)/.test(type);
}

/**
 * SQL: the relation `c` (a pg_class row) is not a member of an extension. Membership is a pg_depend row of
 * type 'e' on the extension, so the few rows that point at pg_extension are read by the reference index
 * (a test of each relation's own dependencies read all of pg_depend: 3 ms at 3 000 tables, growing with them).
 */
export function notExtensionMemberSql(c: string): string {
  return `${c}.oid NOT IN (SELECT ext.objid FROM pg_depend ext
                            WHERE ext.refclassid = 'pg_extension'::regclass AND ext.classid = 'pg_class'::regclass AND ext.deptype = 'e')`;
}

/**
 * The tables pgferry works on, for a query over pg_class c joined to
 * pg_namespace n: ordinary and partitioned tables that are not partitions,
 * outside the system schemas, not owned by an extension.
 */
export const USER_TABLE = `c.relkind IN ('r', 'p')
     AND NOT c.relispartition
     AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname NOT LIKE 'pg\\_toast%'
     AND n.nspname NOT LIKE 'pg\\_temp\\_%'
     AND ${notExtensionMemberSql('c')}`;

/**
 * SQL: the column of pg_attribute row `a` is NOT NULL with a validated
 * constraint. PostgreSQL 18 can add NOT NULL … NOT VALID (attnotnull is true,
 * its pg_constraint row of contype 'n' has convalidated false); before 18
 * attnotnull always means no NULLs, and contype 'n' does not exist.
 */
export function notNullValidSql(a: string): string {
  return `(${a}.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_constraint nn WHERE nn.conrelid = ${a}.attrelid AND nn.contype = 'n' AND NOT nn.convalidated AND nn.conkey[1] = ${a}.attnum))`;
}

const TABLES_SQL_TEMPLATE = `
WITH tables AS (
  SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.relreplident, c.reltuples,
         pg_get_userbyid(c.relowner) AS owner, c.relowner
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE ${USER_TABLE}
)
SELECT t.oid::int AS oid, t.nspname AS schema, t.relname AS name, t.relkind, t.owner,
       t.relpersistence = 'u' AS unlogged, t.relreplident AS replident,
       pg_has_role(t.relowner, 'USAGE') AS is_owner,
       has_table_privilege(t.oid, 'SELECT') AS can_select,
       EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid
                WHERE i.inhparent = t.oid AND NOT ch.relispartition) AS has_inh_children,
       COALESCE((SELECT json_agg(json_build_object('schema', ln.nspname, 'name', lc.relname, 'oid', lc.oid::int)
                                 ORDER BY ln.nspname, lc.relname)
                   FROM pg_partition_tree(t.oid) pt
                   JOIN pg_class lc ON lc.oid = pt.relid
                   JOIN pg_namespace ln ON ln.oid = lc.relnamespace
                  WHERE t.relkind = 'p' AND pt.isleaf), '[]'::json) AS partitions,
       (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                          'typeOid', a.atttypid::int, 'notNull', a.attnotnull,
                                          'notNullValid', ${notNullValidSql('a')},
                                          'generated', a.attgenerated <> '', 'identity', a.attidentity <> '')
                        ORDER BY a.attnum)
          FROM pg_attribute a
         WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT json_agg(a.attname ORDER BY k.ord)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = t.oid AND i.indisprimary) AS primary_key,
       (SELECT json_agg(a.attname ORDER BY k.ord)
          FROM (SELECT i.indkey FROM pg_index i
                 WHERE i.indrelid = t.oid AND i.indisunique AND NOT i.indisprimary AND i.indisvalid
                   AND i.indpred IS NULL AND i.indexprs IS NULL
                   AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey) x(attnum)
                                     JOIN pg_attribute xa ON xa.attrelid = i.indrelid AND xa.attnum = x.attnum
                                    WHERE NOT ${notNullValidSql('xa')})
                 ORDER BY i.indnatts, i.indexrelid LIMIT 1) u
          CROSS JOIN LATERAL unnest(u.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum) AS unique_key,
       (SELECT json_agg(a.attname ORDER BY k.ord)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = t.oid AND i.indisreplident) AS replident_index,
       CASE WHEN t.relkind = 'p'
            THEN COALESCE((SELECT sum(GREATEST(lc.reltuples, 0))::float8 FROM pg_partition_tree(t.oid) pt
                             JOIN pg_class lc ON lc.oid = pt.relid WHERE pt.isleaf), 0)
            ELSE t.reltuples::float8 END AS estimated_rows,
       \${LIVE_ROWS} AS live_rows,
       \${BYTES} AS bytes
  FROM tables t
 ORDER BY t.nspname, t.relname`;

const BYTES_SQL = `CASE WHEN t.relkind = 'p'
            THEN COALESCE((SELECT sum(pg_table_size(pt.relid))::float8 FROM pg_partition_tree(t.oid) pt WHERE pt.isleaf), 0)
            ELSE pg_table_size(t.oid)::float8 END`;

// No lock: pg_relation_size() would open the table, and wait behind anyone's ACCESS EXCLUSIVE on it.
const LIVE_ROWS_SQL = `CASE WHEN t.relkind = 'r' AND t.reltuples < 0 THEN pg_stat_get_live_tuples(t.oid) END::float8`;

// pg_table_size() looks at every file of every table: half the cost of this query on 200 small tables.
const tablesSql = (sizes: boolean, liveRows: boolean) =>
  TABLES_SQL_TEMPLATE.replace('${BYTES}', sizes ? BYTES_SQL : '(-1)::float8').replace('${LIVE_ROWS}', liveRows ? LIVE_ROWS_SQL : 'NULL::float8');
const TABLES_SQL = [[tablesSql(false, false), tablesSql(false, true)], [tablesSql(true, false), tablesSql(true, true)]];

interface Row {
  oid: number;
  schema: string;
  name: string;
  relkind: 'r' | 'p';
  owner: string;
  unlogged: boolean;
  replident: 'd' | 'n' | 'f' | 'i';
  is_owner: boolean;
  can_select: boolean;
  has_inh_children: boolean;
  partitions: { schema: string; name: string; oid: number }[];
  columns: CatalogColumn[];
  primary_key: string[] | null;
  unique_key: string[] | null;
  replident_index: string[] | null;
  estimated_rows: number;
  live_rows: number | null;
  bytes: number;
}

export interface ListTablesOptions {
  /** Read each table's size (default true); a step that does not use `bytes` saves a look at every file. */
  sizes?: boolean;
  /** Read liveRows (default false), for the plain tables never analysed. */
  liveRows?: boolean;
}

/** For steps that never read `bytes` (sync, cutover, validate): the sizes cost a look at every file of every table. */
export const NO_SIZES: Readonly<ListTablesOptions> = { sizes: false };

export async function listTables(client: pg.Client, opts: ListTablesOptions = {}): Promise<CatalogTable[]> {
  const { rows } = await client.query<Row>(TABLES_SQL[opts.sizes === false ? 0 : 1]![opts.liveRows ? 1 : 0]!);
  return rows.map((r) => {
    const identityColumns =
      r.replident === 'i' ? (r.replident_index ?? []) : r.replident === 'd' ? (r.primary_key ?? []) : [];
    return {
      oid: r.oid,
      schema: r.schema,
      name: r.name,
      relkind: r.relkind,
      owner: r.owner,
      unlogged: r.unlogged,
      partitions: r.partitions,
      columns: r.columns ?? [],
      primaryKey: r.primary_key,
      uniqueKey: r.unique_key,
      replicaIdentity: r.replident,
      replicaIdentityColumns: identityColumns,
      estimatedRows: Number(r.estimated_rows),
      liveRows: r.live_rows === null ? null : Number(r.live_rows),
      bytes: Number(r.bytes),
      canSelect: r.can_select,
      isOwner: r.is_owner,
      hasInheritanceChildren: r.has_inh_children,
    };
  });
}

/** UPDATE and DELETE on a published table need a row identity: a key, an identity index, or FULL. */
export function hasUsableReplicaIdentity(t: Pick<CatalogTable, 'replicaIdentity' | 'primaryKey' | 'replicaIdentityColumns'>): boolean {
  if (t.replicaIdentity === 'f') return true;
  if (t.replicaIdentity === 'n') return false;
  return t.replicaIdentityColumns.length > 0;
}
