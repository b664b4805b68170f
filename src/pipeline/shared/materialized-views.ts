/**
 * Materialized views on the copy. Replication carries no REFRESH: the target's views hold what init's restore
 * computed (pg_restore refreshes each one it restores), however old that is at cutover. cutover
 * --refresh-materialized-views refreshes them on the target before the fence, when the target serves no one yet
 * (a plain REFRESH locks the view) and its tables are a moment behind the source; without it cutover names them.
 * Only populated views (WITH NO DATA ones stay so), each after the views it reads, through plain views too.
 */
import type pg from 'pg';
import { notExtensionMemberSql } from '../../postgres/catalog/tables.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';

export interface MaterializedView {
  oid: number;
  schema: string;
  name: string;
}

/** The database's populated materialized views, each after those it reads (directly or through views). */
export async function populatedMaterializedViews(client: pg.Client): Promise<MaterializedView[]> {
  const { rows: views } = await client.query<MaterializedView>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'm' AND c.relispopulated AND ${notExtensionMemberSql('c')}
      ORDER BY 2, 3`,
  );
  if (!views.length) return [];
  // What each view (materialized or plain) reads: the relations its rewrite rule depends on.
  const { rows: edges } = await client.query<{ view: number; reads: number }>(
    `SELECT DISTINCT r.ev_class::int AS view, d.refobjid::int AS reads
       FROM pg_rewrite r
       JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('m', 'v')
       JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
      WHERE d.refobjid <> r.ev_class`,
  );
  return dependencyOrder(views, edges);
}

/** Views ordered so that each comes after the materialized views it reads, through any plain views between. */
export function dependencyOrder(views: readonly MaterializedView[], edges: readonly { view: number; reads: number }[]): MaterializedView[] {
  const reads = new Map<number, number[]>();
  for (const e of edges) reads.set(e.view, [...(reads.get(e.view) ?? []), e.reads]);
  const byOid = new Map(views.map((v) => [v.oid, v]));
  const out: MaterializedView[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (oid: number) => {
    if (state.get(oid)) return; // done, or a cycle (not possible between views): leave it
    state.set(oid, 'visiting');
    for (const r of reads.get(oid) ?? []) visit(r);
    state.set(oid, 'done');
    const v = byOid.get(oid);
    if (v) out.push(v);
  };
  for (const v of views) visit(v.oid);
  return out;
}

/** REFRESH each view in order; the ones that fail are returned with the server's message (nothing else stops). */
export async function refreshMaterializedViews(client: pg.Client, views: readonly MaterializedView[]): Promise<{ refreshed: number; failed: string[] }> {
  const failed: string[] = [];
  let refreshed = 0;
  for (const v of views) {
    try {
      await client.query(`REFRESH MATERIALIZED VIEW ${qualifiedName(v.schema, v.name)}`);
      refreshed++;
    } catch (err) {
      failed.push(`${displayName(v.schema, v.name)}: ${(err as Error).message}`);
    }
  }
  return { refreshed, failed };
}
