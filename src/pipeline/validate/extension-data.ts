/**
 * Rows that live in an extension's own tables. An extension's member tables come with CREATE EXTENSION on the
 * target, so pgferry copies neither their definition nor their rows, and does not publish them; but a table the
 * extension marked as configuration (pg_extension_config_dump: pg_cron's jobs, PostGIS's user-added spatial
 * reference systems) holds rows of the user's, which pg_dump copies (those its condition selects). Say which
 * such tables hold rows, so that they are not lost on the way.
 */
import type pg from 'pg';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import { ok, warn, type CheckResult } from './types.js';

export interface ExtensionDataTable {
  extension: string;
  schema: string;
  name: string;
  /** The extension's condition (`WHERE …`, or empty): the rows pg_dump copies. */
  condition: string;
  /** Whether any row meets it; null when it could not be read (no privilege, say). */
  hasRows: boolean | null;
}

/** The configuration tables of the database's extensions, and whether pg_dump would copy rows of them. */
export async function gatherExtensionData(client: pg.Client): Promise<ExtensionDataTable[]> {
  const { rows } = await client.query<Omit<ExtensionDataTable, 'hasRows'>>(
    `SELECT e.extname AS extension, n.nspname AS schema, c.relname AS name, coalesce(u.cond, '') AS condition
       FROM pg_extension e
      CROSS JOIN LATERAL unnest(e.extconfig, e.extcondition) AS u(cfg, cond)
       JOIN pg_class c ON c.oid = u.cfg AND c.relkind = 'r'
       JOIN pg_namespace n ON n.oid = c.relnamespace
      ORDER BY 1, 2, 3`,
  );
  const out: ExtensionDataTable[] = [];
  for (const r of rows) {
    // The condition is the extension script's own SQL, as pg_dump runs it.
    const hasRows = await client
      .query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ONLY ${qualifiedName(r.schema, r.name)} ${r.condition}) AS any`)
      .then((q) => q.rows[0]!.any, () => null);
    out.push({ ...r, hasRows });
  }
  return out;
}

export function checkExtensionData(tables: ExtensionDataTable[]): CheckResult | null {
  const id = 'database.extension_data';
  const held = tables.filter((t) => t.hasRows !== false);
  if (!tables.length) return null;
  if (!held.length) return ok(id, 'source', `the extensions' configuration tables hold no rows of their own (${tables.map((t) => displayName(t.schema, t.name)).join(', ')})`);
  const names = held.map((t) => `${displayName(t.schema, t.name)} (${t.extension}${t.hasRows === null ? ', not readable here' : ''})`);
  const first = held[0]!;
  const select = `SELECT * FROM ONLY ${qualifiedName(first.schema, first.name)}${first.condition ? ` ${first.condition}` : ''}`;
  return warn(
    id,
    'source',
    `${held.length === 1 ? 'an extension keeps rows' : 'extensions keep rows'} in ${names.join(', ')}: pg_dump copies them with the extension, ` +
      'pgferry neither copies nor replicates an extension\'s tables (the target\'s CREATE EXTENSION makes them, with the extension\'s own rows)',
    `copy those rows after init, for each table: \\copy (${select}) TO 'rows.csv' on the source, then \\copy ${qualifiedName(first.schema, first.name)} FROM 'rows.csv' on the target; ` +
      'and again after cutover if they change meanwhile',
    { details: held.map((t) => `${displayName(t.schema, t.name)}: ${t.condition || 'every row'}`) },
  );
}
