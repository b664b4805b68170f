/**
 * Rows that live in an extension's own tables. An extension's member tables come with CREATE EXTENSION on the
 * target, so pgferry copies no definition of them and does not publish them; but a table the extension marked as
 * configuration (pg_extension_config_dump: pg_cron's jobs, pg_partman's part_config) holds rows of the user's.
 * init copies those (the ones the extension's condition selects) under its snapshot, as pg_dump does, and cutover
 * again once writers are fenced (replication does not carry them). Say which such tables hold rows, and warn about
 * those that cannot be read.
 */
import type pg from 'pg';
import { extensionConfigRelations } from '../../postgres/catalog/extensions.js';
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
  const out: ExtensionDataTable[] = [];
  for (const r of (await extensionConfigRelations(client)).filter((x) => x.relkind === 'r')) {
    // The condition is the extension script's own SQL, as pg_dump runs it.
    const hasRows = await client
      .query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM ONLY ${qualifiedName(r.schema, r.name)} ${r.condition}) AS any`)
      .then((q) => q.rows[0]!.any, () => null);
    out.push({ extension: r.extension, schema: r.schema, name: r.name, condition: r.condition, hasRows });
  }
  return out;
}

export function checkExtensionData(tables: ExtensionDataTable[]): CheckResult | null {
  const id = 'database.extension_data';
  if (!tables.length) return null;
  const held = tables.filter((t) => t.hasRows);
  const unreadable = tables.filter((t) => t.hasRows === null);
  const details = [...held, ...unreadable].map((t) => `${displayName(t.schema, t.name)}: ${t.condition || 'every row'}`);
  if (unreadable.length) {
    const first = unreadable[0]!;
    return warn(
      id,
      'source',
      `the extensions' configuration table${unreadable.length > 1 ? 's' : ''} ${unreadable.map((t) => `${displayName(t.schema, t.name)} (${t.extension})`).join(', ')} ` +
        'cannot be read here: init and cutover copy the rows the extension\'s condition selects, as pg_dump does, and would leave these behind',
      `GRANT SELECT ON ${qualifiedName(first.schema, first.name)} TO the role pgferry connects as (or connect as the extension's owner)`,
      { details },
    );
  }
  if (!held.length) return ok(id, 'source', `the extensions' configuration tables hold no rows of their own (${tables.map((t) => displayName(t.schema, t.name)).join(', ')})`);
  return ok(
    id,
    'source',
    `${held.length === 1 ? 'an extension keeps rows' : 'extensions keep rows'} in ${held.map((t) => `${displayName(t.schema, t.name)} (${t.extension})`).join(', ')}: ` +
      'init copies them under its snapshot, as pg_dump does, and cutover again once writers are fenced (replication does not carry an extension\'s tables)',
    { details },
  );
}
