/**
 * What the source user may do: open replication connections (REPLICATION,
 * superuser, or rds_replication on Amazon RDS), read every table in scope,
 * and publish them (CREATE on the database, and owning each table unless
 * superuser).
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { fail, ok, type CheckResult } from './types.js';
import { plural } from '../../units.js';

export interface ReplicationPrivilege {
  user: string;
  superuser: boolean;
  replication: boolean;
  rdsReplication: boolean;
  /** The rds_replication role exists (Amazon RDS / Aurora). */
  onRds: boolean;
}

export async function gatherReplicationPrivilege(client: pg.Client): Promise<ReplicationPrivilege> {
  const { rows } = await client.query<ReplicationPrivilege>(
    `SELECT current_user AS "user", r.rolsuper AS superuser, r.rolreplication AS replication,
            EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') AS "onRds",
            CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication')
                 THEN pg_has_role(current_user, 'rds_replication', 'MEMBER') ELSE false END AS "rdsReplication"
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  return rows[0]!;
}

export function checkReplicationPrivilege(p: ReplicationPrivilege): CheckResult {
  const id = 'source.replication_privilege';
  if (p.superuser) return ok(id, 'source', `${p.user} is a superuser: may create replication slots`);
  if (p.replication) return ok(id, 'source', `${p.user} has the REPLICATION attribute`);
  if (p.rdsReplication) return ok(id, 'source', `${p.user} is a member of rds_replication`);
  const role = quoteIdent(p.user);
  return fail(
    id,
    'source',
    `${p.user} may not open replication connections or create replication slots (neither superuser nor REPLICATION${p.onRds ? ' nor rds_replication' : ''})`,
    p.onRds ? `GRANT rds_replication TO ${role};` : `ALTER ROLE ${role} REPLICATION;  -- run as a superuser`,
  );
}

/** Statements shown in a fix before "and so on": the details list every table anyway. */
const MAX_STATEMENTS = 10;

/** Tables whose rows are copied and published (schema-only tables are neither). */
export function publishedTables(tables: ScopeTable[]): ScopeTable[] {
  return tables.filter((t) => !t.schemaOnly);
}

/** One GRANT naming each table, or per schema when the list would be long. */
function grantSelect(tables: ScopeTable[], user: string): string {
  if (tables.length <= MAX_STATEMENTS) {
    return `GRANT SELECT ON TABLE ${tables.map((t) => qualifiedName(t.schema, t.name)).join(', ')} TO ${quoteIdent(user)};`;
  }
  const schemas = [...new Set(tables.map((t) => t.schema))];
  return schemas.map((sc) => `GRANT SELECT ON ALL TABLES IN SCHEMA ${quoteIdent(sc)} TO ${quoteIdent(user)};`).join(' ');
}

/** Schemas the current user may not enter (USAGE): their tables cannot be read, whatever the table grants say. */
export async function gatherSchemasWithoutUsage(client: pg.Client): Promise<Set<string>> {
  const { rows } = await client.query<{ nspname: string }>(
    "SELECT nspname FROM pg_namespace WHERE NOT has_schema_privilege(oid, 'USAGE') AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
  );
  return new Set(rows.map((r) => r.nspname));
}

/** SELECT on every table in scope (and USAGE on its schema): pg_dump locks each one, which needs SELECT, and init copies its rows. */
export function checkSelect(tables: ScopeTable[], user: string, schemasWithoutUsage: Set<string> = new Set()): CheckResult {
  const id = 'tables.select';
  const denied = tables.filter((t) => !t.canSelect || schemasWithoutUsage.has(t.schema));
  if (!denied.length) return ok(id, 'source', `${user} can read ${tables.length === 1 ? 'the' : 'all'} ${plural(tables.length, 'table')} in scope`);
  const noUsage = [...new Set(denied.map((t) => t.schema))].filter((sc) => schemasWithoutUsage.has(sc));
  const noSelect = denied.filter((t) => !t.canSelect);
  const fixes = [
    ...noUsage.map((sc) => `GRANT USAGE ON SCHEMA ${quoteIdent(sc)} TO ${quoteIdent(user)};`),
    ...(noSelect.length ? [grantSelect(noSelect, user)] : []),
  ];
  return fail(
    id,
    'source',
    `${user} cannot SELECT ${plural(denied.length, 'table')} in scope (init must read ${denied.length > 1 ? 'them' : 'it'})${noUsage.length ? `; no USAGE on schema ${noUsage.join(', ')}` : ''}`,
    `${fixes.join(' ')}  -- run as the owner or a superuser`,
    { details: denied.map((t) => displayName(t.schema, t.name)) },
  );
}

/** Tables in scope (and their partitions) whose row-level security would hide rows from the current user. */
export async function gatherRowSecurity(client: pg.Client, tables: ScopeTable[]): Promise<{ schema: string; name: string; forced: boolean }[]> {
  const oids = tables.flatMap((t) => [t.oid, ...t.partitions.map((p) => p.oid)]);
  if (!oids.length) return [];
  // As the server decides (check_enable_rls): not for a superuser or BYPASSRLS, nor for the owner unless FORCE is set.
  const { rows } = await client.query<{ schema: string; name: string; forced: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relforcerowsecurity AS forced
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) AND c.relrowsecurity
        AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user)
        AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
      ORDER BY 1, 2`,
    [oids],
  );
  return rows;
}

/**
 * Row-level security must hide no row from pgferry's role: its sessions read with row_security off, as pg_dump's, so
 * init's copy and verify would stop at such a table (rather than copy or compare only what a policy shows).
 */
export function checkRowSecurity(hidden: { schema: string; name: string; forced: boolean }[], user: string): CheckResult | null {
  if (!hidden.length) return null;
  const id = 'tables.row_security';
  return fail(
    id,
    'source',
    `row-level security would hide rows of ${plural(hidden.length, 'table')} from ${user} (${hidden.slice(0, 5).map((t) => displayName(t.schema, t.name)).join(', ')}${hidden.length > 5 ? ', …' : ''}): ` +
      'init copies and verify compares every row, as pg_dump reads them, and would stop there',
    `ALTER ROLE ${quoteIdent(user)} BYPASSRLS;  -- run as a superuser (or connect as a superuser)`,
    { details: hidden.map((t) => `${displayName(t.schema, t.name)}${t.forced ? ' (FORCE ROW LEVEL SECURITY)' : ''}`) },
  );
}

export interface PublicationRights {
  user: string;
  superuser: boolean;
  /** CREATE on the database (needed for CREATE PUBLICATION). */
  canCreateInDatabase: boolean;
}

function ownerStatements(tables: ScopeTable[], user: string): string {
  const list = tables.slice(0, MAX_STATEMENTS).map((t) => `ALTER TABLE ${qualifiedName(t.schema, t.name)} OWNER TO ${quoteIdent(user)};`);
  const rest = tables.length - list.length;
  return list.join(' ') + (rest > 0 ? ` … and the same for the other ${plural(rest, 'table')} listed` : '');
}

/** CREATE PUBLICATION needs CREATE on the database, and FOR TABLE needs ownership of each table. */
export function checkPublicationRights(database: string, tables: ScopeTable[], r: PublicationRights): CheckResult[] {
  const published = publishedTables(tables);
  if (r.superuser) {
    return [ok('tables.publication', 'source', `${r.user} is a superuser: may publish ${plural(published.length, 'table')}`)];
  }
  const out: CheckResult[] = [];
  if (!r.canCreateInDatabase) {
    out.push(
      fail(
        'tables.publication_database',
        'source',
        `${r.user} lacks CREATE on database ${database}, which CREATE PUBLICATION needs`,
        `GRANT CREATE ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(r.user)};`,
      ),
    );
  }
  const notOwned = published.filter((t) => !t.isOwner);
  if (notOwned.length) {
    out.push(
      fail(
        'tables.publication',
        'source',
        `${r.user} does not own ${notOwned.length} table${notOwned.length > 1 ? 's' : ''} in scope and so cannot add ${notOwned.length > 1 ? 'them' : 'it'} to a publication`,
        `connect as a superuser or as the owner (${[...new Set(notOwned.map((t) => t.owner))].join(', ')}), or make ${r.user} the owner: ${ownerStatements(notOwned, r.user)}`,
        { details: notOwned.map((t) => `${displayName(t.schema, t.name)} (owner ${t.owner})`) },
      ),
    );
  } else if (r.canCreateInDatabase) {
    out.push(ok('tables.publication', 'source', `${r.user} owns the ${plural(published.length, 'published table')} and may create publications`));
  }
  return out;
}
