/**
 * What a source holds and what of it is in scope: databases with sizes, or
 * the tables of one database with row estimates, sizes, keys, replica
 * identity and their place in the scope. Used by `pgferry list` and by the
 * interactive mode, so both show the same facts.
 */
import type pg from 'pg';
import { resolveDatabases, resolveTables, rulesFor, type ScopeSpec } from '../../config/scope.js';
import { describeMasks } from '../../config/data-rules.js';
import { withClient } from '../../postgres/connect.js';
import { describeConn, forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { hasUsableReplicaIdentity, isDateTimeType } from '../../postgres/catalog/tables.js';

export interface DatabaseEntry {
  name: string;
  /** pg_database_size, or null when we may not connect to it. */
  bytes: number | null;
  owner: string;
  encoding: string;
  /** The database named in the source connection. */
  connectionDatabase: boolean;
  inScope: boolean;
}

export interface DatabaseListing {
  endpoint: string;
  serverVersion: string;
  databases: DatabaseEntry[];
}

export type KeyKind = 'primary key' | 'unique' | 'none';
export type ReplicaIdentityName = 'default' | 'full' | 'index' | 'nothing';

export interface TableEntry {
  schema: string;
  name: string;
  /** "table" or "partitioned" (with its leaf partitions counted). */
  kind: 'table' | 'partitioned';
  partitions: number;
  /** null when the table was never analysed. */
  estimatedRows: number | null;
  bytes: number;
  key: { kind: KeyKind; columns: string[] };
  replicaIdentity: ReplicaIdentityName;
  /** Columns that identify a row for UPDATE/DELETE (empty for FULL, NOTHING, or DEFAULT without a key). */
  replicaIdentityColumns: string[];
  /** UPDATE and DELETE keep working on the source once the table is published. */
  replicaIdentityUsable: boolean;
  /** Columns of type date, timestamp or timestamptz (candidates for a time filter). */
  timeColumns: string[];
  unlogged: boolean;
  inScope: boolean;
  schemaOnly: boolean;
  filter: string | null;
  timeFilter: { column: string; window: string } | null;
  /** Masked columns with their rule (data rules), e.g. "email (unique_email)". */
  masked: string[];
}

export interface TableListing {
  endpoint: string;
  database: string;
  /** The database itself is in the scope's database selection. */
  databaseInScope: boolean;
  tables: TableEntry[];
}

const IDENTITY: Record<'d' | 'f' | 'i' | 'n', ReplicaIdentityName> = { d: 'default', f: 'full', i: 'index', n: 'nothing' };

async function databasesInScope(client: pg.Client, spec: ScopeSpec, urlDatabase: string): Promise<string[]> {
  return resolveDatabases(client, spec.databases, urlDatabase);
}

/** Every database of the source that accepts connections (templates left out), with sizes. */
export async function listDatabases(conn: ResolvedConnInfo, spec: ScopeSpec): Promise<DatabaseListing> {
  return withClient(
    conn,
    async (client) => {
      const { rows } = await client.query<{ name: string; bytes: string | null; owner: string; encoding: string; version: string }>(
        `SELECT d.datname AS name,
                CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid) END AS bytes,
                pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
                current_setting('server_version') AS version
           FROM pg_database d
          WHERE NOT d.datistemplate AND d.datallowconn
          ORDER BY d.datname`,
      );
      const inScope = new Set(await databasesInScope(client, spec, conn.dbname));
      return {
        endpoint: describeConn(conn),
        serverVersion: rows[0]?.version ?? '',
        databases: rows.map((r) => ({
          name: r.name,
          bytes: r.bytes === null ? null : Number(r.bytes),
          owner: r.owner,
          encoding: r.encoding,
          connectionDatabase: r.name === conn.dbname,
          inScope: inScope.has(r.name),
        })),
      };
    },
    { label: 'source' },
  );
}

/** The tables of one database and where each stands in the scope (the rules for that database). */
export async function listDatabaseTables(conn: ResolvedConnInfo, database: string, spec: ScopeSpec): Promise<TableListing> {
  if (database !== conn.dbname) {
    // A missing database is a usage error naming the ones that exist, not a connection failure.
    await withClient(conn, (c) => resolveDatabases(c, { all: false, include: [database], exclude: [] }, conn.dbname), { label: 'source' });
  }
  const dbConn = forDatabase(conn, database);
  return withClient(
    dbConn,
    async (client) => {
      const resolved = await resolveTables(client, database, rulesFor(spec, database));
      const catalog = resolved.all;
      const dbs = await databasesInScope(client, spec, conn.dbname);
      const inScope = new Map(resolved.tables.map((t) => [`${t.schema}\u0000${t.name}`, t]));
      const tables: TableEntry[] = catalog.map((t) => {
        const s = inScope.get(`${t.schema}\u0000${t.name}`);
        const key: TableEntry['key'] = t.primaryKey
          ? { kind: 'primary key', columns: t.primaryKey }
          : t.uniqueKey
            ? { kind: 'unique', columns: t.uniqueKey }
            : { kind: 'none', columns: [] };
        return {
          schema: t.schema,
          name: t.name,
          kind: t.relkind === 'p' ? 'partitioned' : 'table',
          partitions: t.partitions.length,
          estimatedRows: t.estimatedRows < 0 ? null : Math.round(t.estimatedRows),
          bytes: t.bytes,
          key,
          replicaIdentity: IDENTITY[t.replicaIdentity],
          replicaIdentityColumns: t.replicaIdentityColumns,
          replicaIdentityUsable: hasUsableReplicaIdentity(t),
          timeColumns: t.columns.filter((c) => isDateTimeType(c.type) && !c.generated).map((c) => c.name),
          unlogged: t.unlogged,
          inScope: !!s,
          schemaOnly: s?.schemaOnly ?? false,
          filter: s?.filter ?? null,
          timeFilter: s?.timeFilter ?? null,
          masked: describeMasks(s?.masking),
        };
      });
      return { endpoint: describeConn(dbConn), database, databaseInScope: dbs.includes(database), tables };
    },
    { label: 'source' },
  );
}
