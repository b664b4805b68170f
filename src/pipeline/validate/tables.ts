/**
 * Table checks: every published table needs a row identity (or UPDATE and
 * DELETE on the source fail as soon as it is published), and unlogged tables
 * are copied but never replicated.
 */
import type pg from 'pg';
import type { DatabaseScope, ScopeTable } from '../../config/scope.js';
import { hasUsableReplicaIdentity } from '../../postgres/catalog/tables.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { publishedTables } from './source-privileges.js';
import { fail, ok, warn, type CheckResult } from './types.js';
import { plural } from '../../units.js';

/** Replica identity of a leaf partition: changes are published (and must be identified) per leaf. */
export interface LeafIdentity {
  oid: number;
  schema: string;
  name: string;
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  hasPrimaryKey: boolean;
  hasIdentityIndex: boolean;
}

/** Leaf partitions of the partitioned tables in scope, with their own replica identity. */
export async function gatherLeafIdentities(client: pg.Client, tables: ScopeTable[]): Promise<Map<number, LeafIdentity>> {
  const oids = tables.filter((t) => t.relkind === 'p' && !t.schemaOnly).flatMap((t) => t.partitions.map((p) => p.oid));
  const out = new Map<number, LeafIdentity>();
  if (!oids.length) return out;
  const { rows } = await client.query<LeafIdentity>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relreplident AS "replicaIdentity",
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS "hasPrimaryKey",
            EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident) AS "hasIdentityIndex"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[])`,
    [oids],
  );
  for (const r of rows) out.set(r.oid, r);
  return out;
}

function leafUsable(l: LeafIdentity): boolean {
  if (l.replicaIdentity === 'f') return true;
  if (l.replicaIdentity === 'n') return false;
  if (l.replicaIdentity === 'i') return l.hasIdentityIndex;
  return l.hasPrimaryKey;
}

function identityFailure(schema: string, name: string, identity: 'd' | 'n' | 'f' | 'i', partitionOf?: string): CheckResult {
  const what = identity === 'n' ? 'has REPLICA IDENTITY NOTHING' : 'has no primary key and REPLICA IDENTITY DEFAULT';
  return fail(
    'tables.replica_identity',
    'source',
    `${displayName(schema, name)}${partitionOf ? ` (partition of ${partitionOf})` : ''} ${what}: once it is published, UPDATE and DELETE on it fail on the source`,
    `ALTER TABLE ${qualifiedName(schema, name)} REPLICA IDENTITY FULL;  -- or add a primary key: ALTER TABLE ${qualifiedName(schema, name)} ADD PRIMARY KEY (…);`,
  );
}

export function checkReplicaIdentity(tables: ScopeTable[], leaves: Map<number, LeafIdentity>): CheckResult[] {
  const published = publishedTables(tables);
  const out: CheckResult[] = [];
  for (const t of published) {
    if (t.relkind === 'p') {
      // ALTER TABLE … REPLICA IDENTITY on a partitioned table does not reach its partitions: name each leaf.
      for (const p of t.partitions) {
        const leaf = leaves.get(p.oid);
        if (leaf && !leafUsable(leaf)) out.push(identityFailure(leaf.schema, leaf.name, leaf.replicaIdentity, displayName(t.schema, t.name)));
      }
      continue;
    }
    if (!hasUsableReplicaIdentity(t)) out.push(identityFailure(t.schema, t.name, t.replicaIdentity));
  }
  if (!out.length) {
    const full = published.filter((t) => t.replicaIdentity === 'f').length;
    out.push(
      ok(
        'tables.replica_identity',
        'source',
        `${plural(published.length, 'published table')}, each with a row identity (primary key, identity index${full ? `, or REPLICA IDENTITY FULL on ${full}` : ''})`,
      ),
    );
  }
  return out;
}

export function checkUnlogged(tables: ScopeTable[]): CheckResult | null {
  const unlogged = publishedTables(tables).filter((t) => t.unlogged);
  if (!unlogged.length) return null;
  const names = unlogged.map((t) => displayName(t.schema, t.name));
  return warn(
    'tables.unlogged',
    'source',
    `${unlogged.length} unlogged table${unlogged.length > 1 ? 's' : ''}: init copies ${unlogged.length > 1 ? 'their' : 'its'} rows, but changes to unlogged tables are not replicated`,
    `ALTER TABLE ${qualifiedName(unlogged[0]!.schema, unlogged[0]!.name)} SET LOGGED;  -- for each table whose changes must reach the target; otherwise re-copy it at cutover`,
    { details: names },
  );
}

export function checkScopeNotEmpty(scope: DatabaseScope): CheckResult {
  const n = scope.tables.length;
  const so = scope.tables.filter((t) => t.schemaOnly).length;
  if (n === 0) {
    return warn(
      'tables.scope',
      'source',
      `no table of database ${scope.database} is in scope${scope.excluded.length ? ` (${scope.excluded.length} excluded)` : ''}: only the schema would be copied`,
      'check --include-tables / --exclude-tables (patterns are schema.table; unqualified names mean schema public)',
    );
  }
  return ok(
    'tables.scope',
    'source',
    `${n} table${n > 1 ? 's' : ''} in scope${so ? ` (${so} schema-only)` : ''}${scope.excluded.length ? `, ${scope.excluded.length} excluded` : ''}`,
  );
}
