/**
 * The publication, created by init before the slot.
 *
 * pgoutput reads the publication with the catalog as of each change: a slot
 * created before its publication cannot be decoded past the first change in
 * between ("publication … does not exist"), and a table added to the
 * publication later misses the changes committed before it was added. So the
 * publication must carry every streamed table, with its row filter, from
 * before the slot's consistent point. init therefore creates it (with sync's
 * own ensurePublication, so both agree on its shape), after checking what
 * publishing would break on the source: tables without a row identity
 * (UPDATE/DELETE would fail there) and row filters that cannot be published.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { UsageError, errorMessage } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import type { ServerIdentity } from '../../postgres/probe.js';
import { checkRowFilters, identityProblems, identityRefusal, setReplicaIdentityFull } from '../shared/replication-checks.js';
import { ensurePublication, publishedTables, type PublicationChange } from '../shared/publication.js';
import { streamingRefusal } from '../../config/data-rules-catalog.js';

export interface ReplicationCheck {
  /** Refusals, each a sentence naming the table. */
  problems: string[];
  hints: string[];
  /** Unlogged tables: copied once, never streamed. */
  unlogged: ScopeTable[];
}

function streamed(tables: ScopeTable[], filters: Record<string, string>): ScopeTable[] {
  const { published } = publishedTables(tables, filters);
  const byOid = new Map(tables.map((t) => [t.oid, t]));
  return published.map((p) => byOid.get(p.oid)!);
}

/** What publishing the scope would break, found before anything is written. */
export async function checkReplication(
  client: pg.Client,
  tables: ScopeTable[],
  filters: Record<string, string>,
  source: ServerIdentity,
  setFullIdentity: boolean,
): Promise<ReplicationCheck> {
  const { unlogged } = publishedTables(tables, filters);
  const pubScope = streamed(tables, filters);
  const problems: string[] = [];
  const hints: string[] = [];
  const masking = streamingRefusal(source.major, pubScope);
  if (masking) {
    problems.push(masking.message);
    if (masking.hint) hints.push(masking.hint);
  }
  const ids = await identityProblems(client, pubScope);
  if (ids.length && !setFullIdentity) {
    const refusal = identityRefusal(ids);
    problems.push(refusal.message);
    if (refusal.hint) hints.push(refusal.hint);
  }
  try {
    await checkRowFilters(client, pubScope, {
      major: source.major,
      canPublish: source.superuser || pubScope.every((t) => t.isOwner),
      fullIdentity: new Set(setFullIdentity ? ids.map((p) => p.rootOid) : []),
    });
  } catch (err) {
    problems.push(errorMessage(err));
    if (err instanceof UsageError && err.hint) hints.push(err.hint);
  }
  return { problems, hints, unlogged };
}

/**
 * Create the publication (or bring it to the scope), setting REPLICA IDENTITY
 * FULL first where asked. Run it right before the slot is created.
 */
export async function preparePublication(
  client: pg.Client,
  name: string,
  tables: ScopeTable[],
  filters: Record<string, string>,
  major: number,
  setFullIdentity: boolean,
): Promise<{ change: PublicationChange; fullIdentity: string[] }> {
  const pubScope = streamed(tables, filters);
  const ids = await identityProblems(client, pubScope);
  if (ids.length && !setFullIdentity) throw identityRefusal(ids);
  await setReplicaIdentityFull(client, ids);
  const { published } = publishedTables(tables, filters);
  const change = await ensurePublication(client, name, published, major);
  return { change, fullIdentity: ids.map((p) => displayName(p.schema, p.name)) };
}
