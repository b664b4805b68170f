/**
 * Foreign keys on the target, created by pgferry after every other post-data
 * item (pass 2, see schema.ts), from the source's own definitions
 * (pg_get_constraintdef with an empty search_path, so references are
 * schema-qualified). Keys that are NOT VALID on the source stay NOT VALID.
 * A key is created NOT VALID on purpose when
 * - --fk-not-valid was given and the scope's filters leave it violated, or
 * - rows were copied under more than one snapshot (a resumed run) and the
 *   target, which mixes two points in time until sync has caught up, does not
 *   satisfy it yet. Both are recorded in the state for sync and verify.
 * Keys that already exist (a resumed post-data phase) are left alone.
 */
import type pg from 'pg';
import type { ForeignKey } from '../../postgres/catalog/foreign-keys.js';
import { connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isRetryable, operationError, sqlstate } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import type { NotValidForeignKey } from '../../state/checkpoint.js';
import { runPool } from './pool.js';

export function addForeignKeySql(fk: ForeignKey, notValid: boolean): string {
  const only = fk.partitioned ? '' : 'ONLY ';
  const def = notValid && !/\bNOT VALID\s*$/.test(fk.definition) ? `${fk.definition} NOT VALID` : fk.definition;
  return `ALTER TABLE ${only}${qualifiedName(fk.schema, fk.table)} ADD CONSTRAINT ${quoteIdent(fk.name)} ${def}`;
}

async function existingForeignKeys(client: pg.Client): Promise<Set<string>> {
  const { rows } = await client.query<{ k: string }>(
    `SELECT json_build_array(n.nspname, t.relname, c.conname)::text AS k
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE c.contype = 'f'`,
  );
  return new Set(rows.map((r) => r.k));
}

export interface CreateForeignKeysOptions {
  target: ResolvedConnInfo;
  fks: ForeignKey[];
  /** Keys to create NOT VALID because the scope's filters leave them violated ("schema.table.name"). */
  notValidByScope: Set<string>;
  /** The target holds rows from more than one snapshot: fall back to NOT VALID when validation fails. */
  mixedSnapshots: boolean;
  jobs: number;
  signal?: AbortSignal;
  warn: (message: string) => void;
}

export function fkKey(fk: { schema: string; table: string; name: string }): string {
  return JSON.stringify([fk.schema, fk.table, fk.name]);
}

/** Create the keys; returns the ones created NOT VALID on purpose. */
export async function createForeignKeys(o: CreateForeignKeysOptions): Promise<NotValidForeignKey[]> {
  if (!o.fks.length) return [];
  const clients: (pg.Client | undefined)[] = [];
  const made: NotValidForeignKey[] = [];
  try {
    const first = await connect(o.target, { label: 'the target' });
    clients[0] = first;
    const existing = await existingForeignKeys(first);
    const todo = o.fks.filter((fk) => !existing.has(fkKey(fk)));
    await runPool(
      todo,
      Math.max(1, Math.min(o.jobs, todo.length)),
      async (fk, slot) => {
        const client = (clients[slot] ??= await connect(o.target, { label: 'the target' }));
        const byScope = o.notValidByScope.has(fkKey(fk));
        const name = `foreign key ${quoteIdent(fk.name)} on ${displayName(fk.schema, fk.table)}`;
        for (let attempt = 0; ; attempt++) {
          try {
            await client.query(addForeignKeySql(fk, byScope));
            if (byScope && fk.validated) made.push({ schema: fk.schema, table: fk.table, name: fk.name, reason: 'filter' });
            return;
          } catch (err) {
            const code = sqlstate(err);
            // Two keys between the same pair of tables may deadlock when added at once: try again.
            if (isRetryable(err) && attempt < 3) continue;
            if (code === '23503' && o.mixedSnapshots && !byScope) {
              await client.query(addForeignKeySql(fk, true));
              made.push({ schema: fk.schema, table: fk.table, name: fk.name, reason: 'resume' });
              o.warn(
                `${name} is created NOT VALID: after the resume its tables hold rows from two points in time; ` +
                  'it holds again once sync has caught up (then run ALTER TABLE … VALIDATE CONSTRAINT)',
              );
              return;
            }
            throw operationError(err, `creating ${name} on the target${code === '23503' ? ' (the copied rows violate it)' : ''}`);
          }
        }
      },
      o.signal,
    );
  } finally {
    await Promise.all(clients.map((c) => c?.end().catch(() => {})));
  }
  return made;
}
