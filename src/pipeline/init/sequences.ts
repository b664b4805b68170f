/**
 * Sequence values and statistics on the target.
 *
 * Sequences are not transactional, so no snapshot shows their past values:
 * init reads each one's current value after the data phase, which is never
 * behind any value used by the copied rows. Logical replication does not carry
 * sequences; they are set again at cutover.
 */
import type pg from 'pg';
import { connect, withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { runPool } from './pool.js';

async function listSequences(client: pg.Client): Promise<{ schema: string; name: string }[]> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1, 2`,
  );
  return rows;
}

/** Set every target sequence that also exists on the source to the source's value. Returns how many. */
export async function copySequenceValues(source: ResolvedConnInfo, target: ResolvedConnInfo): Promise<number> {
  return withClient(source, async (src) =>
    withClient(
      target,
      async (tgt) => {
        const onSource = new Set((await listSequences(src)).map((s) => JSON.stringify([s.schema, s.name])));
        let n = 0;
        for (const s of await listSequences(tgt)) {
          if (!onSource.has(JSON.stringify([s.schema, s.name]))) continue;
          const name = qualifiedName(s.schema, s.name);
          try {
            const { rows } = await src.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${name}`);
            const r = rows[0]!;
            await tgt.query('SELECT setval($1::regclass, $2::bigint, $3)', [name, r.last_value, r.is_called]);
            n++;
          } catch (err) {
            throw operationError(err, `setting sequence ${displayName(s.schema, s.name)}`);
          }
        }
        return n;
      },
      { label: 'the target' },
    ),
  { label: 'the source' });
}

/** ANALYZE the copied tables on the target, `jobs` at a time. */
export async function analyzeTables(target: ResolvedConnInfo, tables: { schema: string; name: string }[], jobs: number, signal?: AbortSignal): Promise<void> {
  const clients: (pg.Client | undefined)[] = [];
  try {
    await runPool(
      tables,
      Math.max(1, Math.min(jobs, tables.length || 1)),
      async (t, slot) => {
        const c = (clients[slot] ??= await connect(target, { label: 'the target' }));
        try {
          await c.query(`ANALYZE ${qualifiedName(t.schema, t.name)}`);
        } catch (err) {
          throw operationError(err, `ANALYZE of ${displayName(t.schema, t.name)} on the target`);
        }
      },
      signal,
    );
  } finally {
    await Promise.all(clients.map((c) => c?.end().catch(() => {})));
  }
}
