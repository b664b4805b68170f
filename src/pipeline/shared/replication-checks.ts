/**
 * What sync checks before it creates anything on either side:
 *
 * - every published table (for a partitioned table: every leaf partition,
 *   where UPDATE and DELETE actually happen) has a row identity, or UPDATE and
 *   DELETE on the source start failing the moment it is published;
 * - every row filter is one a publication accepts (immutable, this table's
 *   columns only) and uses only replica-identity columns (the check validate
 *   runs, src/pipeline/validate/filters.ts).
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { checkFilters } from './row-filter-checks.js';

export interface IdentityProblem {
  oid: number;
  schema: string;
  name: string;
  /** The published table it belongs to (itself, or the partitioned root). */
  table: string;
  rootOid: number;
  replicaIdentity: 'd' | 'n' | 'i';
}

/** Leaf tables among these whose UPDATE/DELETE would fail once published (no key, identity DEFAULT without key, or NOTHING). */
export async function identityProblems(client: pg.Client, tables: ScopeTable[]): Promise<IdentityProblem[]> {
  const leaves: { oid: number; table: string; rootOid: number }[] = [];
  for (const t of tables) {
    const label = displayName(t.schema, t.name);
    if (t.relkind === 'p') for (const p of t.partitions) leaves.push({ oid: p.oid, table: label, rootOid: t.oid });
    else leaves.push({ oid: t.oid, table: label, rootOid: t.oid });
  }
  if (!leaves.length) return [];
  const { rows } = await client.query<{ oid: number; schema: string; name: string; ident: 'd' | 'n' | 'i' | 'f'; usable: boolean }>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, c.relreplident::text AS ident,
            CASE c.relreplident
              WHEN 'f' THEN true
              WHEN 'n' THEN false
              WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
              ELSE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) END AS usable
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[]) ORDER BY n.nspname, c.relname`,
    [leaves.map((l) => l.oid)],
  );
  return rows
    .filter((r) => !r.usable)
    .map((r) => {
      const leaf = leaves.find((l) => l.oid === r.oid)!;
      return { oid: r.oid, schema: r.schema, name: r.name, table: leaf.table, rootOid: leaf.rootOid, replicaIdentity: r.ident as 'd' | 'n' | 'i' };
    });
}

export function identityRefusal(problems: IdentityProblem[]): UsageError {
  const names = problems.map((p) => `${displayName(p.schema, p.name)}${p.table !== displayName(p.schema, p.name) ? ` (partition of ${p.table})` : ''}`);
  return new UsageError(
    `${problems.length === 1 ? 'this table has' : `${problems.length} tables have`} no row identity, so UPDATE and DELETE on ${problems.length === 1 ? 'it' : 'them'} ` +
      `would fail on the source once published: ${names.join(', ')}`,
    {
      hint:
        'add a primary key, or pass --set-replica-identity-full to run ALTER TABLE … REPLICA IDENTITY FULL on them (source and target), ' +
        'or leave them out with --exclude-tables',
    },
  );
}

/** ALTER TABLE … REPLICA IDENTITY FULL on the given tables (one transaction). */
export async function setReplicaIdentityFull(client: pg.Client, tables: { schema: string; name: string }[]): Promise<void> {
  if (!tables.length) return;
  await client.query('BEGIN');
  try {
    await client.query("SET LOCAL lock_timeout = '10s'");
    for (const t of tables) await client.query(`ALTER TABLE ${qualifiedName(t.schema, t.name)} REPLICA IDENTITY FULL`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/**
 * Row filters a publication would refuse, or that would make UPDATE/DELETE
 * fail on the source. `fullIdentity` names tables that will be REPLICA
 * IDENTITY FULL by the time they are published (--set-replica-identity-full).
 */
export async function checkRowFilters(
  client: pg.Client,
  tables: ScopeTable[],
  opts: { major: number; canPublish: boolean; fullIdentity: Set<number> },
): Promise<void> {
  const projected = tables.map((t) => (opts.fullIdentity.has(t.oid) ? { ...t, replicaIdentity: 'f' as const } : t));
  const results = await checkFilters(client, projected, { major: opts.major, canPublish: opts.canPublish });
  const failed = results.filter((r) => r.status === 'fail');
  if (!failed.length) return;
  throw new UsageError(`row filter${failed.length > 1 ? 's' : ''} cannot be published:\n  ${failed.map((f) => f.message).join('\n  ')}`, {
    hint: failed.map((f) => f.fix).filter(Boolean).join('\n'),
  });
}
