/**
 * The replication origin of the client applier on the target: the position up
 * to which the target has committed the source's changes, written in the same
 * transaction as the changes (pg_replication_origin_xact_setup). Sync creates
 * it, status reads it, cleanup drops it.
 */
import type pg from 'pg';
import { UsageError } from '../../errors.js';
import { sqlstate } from '../../postgres/errors.js';

/** The origin's committed position, null when the origin does not exist. */
export async function originPosition(client: pg.Client, name: string): Promise<string | null> {
  const { rows } = await client.query<{ lsn: string | null }>(
    `SELECT pg_replication_origin_progress($1, true)::text AS lsn WHERE EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`,
    [name],
  );
  return rows.length ? (rows[0]!.lsn ?? '0/0') : null;
}

/** A permission error explained: replication origins need a superuser or explicit grants. */
export function originRefusal(err: unknown, what: string): unknown {
  if (sqlstate(err) !== '42501') return err;
  return new UsageError(`the target role may not ${what}: ${(err as Error).message}`, {
    hint:
      'the client applier records its position in a replication origin on the target and applies with session_replication_role = replica; ' +
      'connect to the target as a superuser, or have one run: GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_session_setup(text), ' +
      'pg_replication_origin_xact_setup(pg_lsn, timestamptz), pg_replication_origin_progress(text, boolean), pg_replication_origin_drop(text) TO <role>; ' +
      'and on PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO <role>',
    cause: err,
  });
}

export async function ensureOrigin(client: pg.Client, name: string): Promise<{ created: boolean; lsn: string }> {
  try {
    const lsn = await originPosition(client, name);
    if (lsn !== null) return { created: false, lsn };
    await client.query('SELECT pg_replication_origin_create($1)', [name]);
    return { created: true, lsn: '0/0' };
  } catch (err) {
    throw originRefusal(err, 'use replication origins');
  }
}

/** Drop the origin if it exists; true when it did. */
export async function dropOrigin(client: pg.Client, name: string): Promise<boolean> {
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_origin WHERE roname = $1', [name]);
  if (!rows[0]!.n) return false;
  await client.query('SELECT pg_replication_origin_drop($1)', [name]);
  return true;
}
