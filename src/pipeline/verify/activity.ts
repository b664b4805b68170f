/**
 * Which tables are being written to right now, from the source's statistics:
 * the sum of n_tup_ins + n_tup_upd + n_tup_del over a table (and its
 * partitions: pg_partition_tree gives no rows for a table outside any
 * partition tree, hence the table itself then), read twice. A table whose counters did not move between the
 * two readings is hashed whole first (one plain aggregate per side, split
 * only where it differs); a table with live writes would differ as a whole
 * while replication catches up, so it goes straight to the chunk plan.
 *
 * Only a choice of method: a table that was written to after all differs as a
 * whole and is then compared chunk by chunk, with the usual rechecks.
 * A backend reports its counters at most once a second (and an idle one after
 * up to 10 s), hence the window between the readings.
 */
import type { SideSession } from './sessions.js';

/** Time between the two readings. */
export const QUIET_WINDOW_MS = 1_100;

export interface TableRefLike {
  schema: string;
  name: string;
}

/** "schema.name" → write counter total (text), for the tables given. */
export async function writeCounters(source: SideSession, tables: readonly TableRefLike[]): Promise<Map<string, string>> {
  if (!tables.length) return new Map();
  const rows = await source.query<{ schema: string; name: string; w: string }>({
    text: `SELECT u.s AS schema, u.n AS name, coalesce(sum(st.n_tup_ins + st.n_tup_upd + st.n_tup_del), 0)::text AS w
             FROM unnest($1::text[], $2::text[]) AS u(s, n)
             JOIN pg_namespace ns ON ns.nspname = u.s
             JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = u.n
             LEFT JOIN LATERAL pg_partition_tree(c.oid) pt ON true
             LEFT JOIN pg_stat_all_tables st ON st.relid = coalesce(pt.relid, c.oid)
            GROUP BY u.s, u.n`,
    values: [tables.map((t) => t.schema), tables.map((t) => t.name)],
  });
  return new Map(rows.map((r) => [`${r.schema}.${r.name}`, r.w]));
}

/** The tables whose counters are the same in both readings. */
export function quietTables(before: Map<string, string>, after: Map<string, string>): Set<string> {
  const out = new Set<string>();
  for (const [k, v] of after) if (before.get(k) === v) out.add(k);
  return out;
}
