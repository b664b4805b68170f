/**
 * What a database carries besides its contents: per-database settings (ALTER DATABASE … SET, ALTER ROLE … IN
 * DATABASE … SET: a search_path, a statement_timeout, a time zone), its privileges (REVOKE CONNECT FROM PUBLIC and
 * the roles that may connect), comment and connection limit. pg_dump writes them only with --create, and pgferry
 * creates the target database itself, so they are carried over here, as pg_restore --create would.
 *
 * Applied at the end of init, after the rows, indexes and ANALYZE: a database's statement_timeout or
 * default_transaction_read_only would otherwise reach init's own sessions on the target. Every statement is
 * idempotent (a rerun applies them again); one the target refuses (a role it lacks, a setting it does not know)
 * is a warning that names it, as pg_restore reports and goes on. The owner's own privileges are left as the
 * target gives them; with --no-privileges no privilege is copied.
 */
import type pg from 'pg';
import { databaseExtras, type DatabaseExtras } from '../../postgres/catalog/databases.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isStatementRefusal } from '../../postgres/errors.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { checkLibraries, type PreloadSetting, preloadSetting } from '../../postgres/libraries.js';
import { LIST_SETTINGS, splitSettingList } from '../../postgres/setting-lists.js';
import { plural } from '../../units.js';
import { withMaintenanceClient } from './target-db.js';

/** PUBLIC's privileges on a database that has none recorded (acldefault('d', owner)). */
const PUBLIC_DEFAULTS = ['CONNECT', 'TEMPORARY'];

/** The statement that sets one `name=value` of pg_db_role_setting on the target database. */
export function settingStatement(database: string, role: string | null, setting: string): string {
  const eq = setting.indexOf('=');
  const name = setting.slice(0, eq);
  const value = setting.slice(eq + 1);
  const values = LIST_SETTINGS.has(name.toLowerCase()) ? splitSettingList(value).map(quoteLiteral).join(', ') : quoteLiteral(value);
  const head = role === null ? `ALTER DATABASE ${quoteIdent(database)}` : `ALTER ROLE ${quoteIdent(role)} IN DATABASE ${quoteIdent(database)}`;
  return `${head} SET ${quoteIdent(name)} TO ${values}`;
}

export interface PropertyStatement {
  sql: string;
  /** For a warning: what it carries. */
  what: string;
  /** A setting that loads libraries at every login: applied only when the target can load them all. */
  preload?: PreloadSetting;
}

/** Everything to run on the target for the source database's extras. */
export function propertyStatements(database: string, e: DatabaseExtras, o: { noPrivileges: boolean }): PropertyStatement[] {
  const db = quoteIdent(database);
  const out: PropertyStatement[] = [];
  if (e.connectionLimit !== -1) out.push({ sql: `ALTER DATABASE ${db} CONNECTION LIMIT ${Math.trunc(e.connectionLimit)}`, what: 'the connection limit' });
  if (e.comment !== null) out.push({ sql: `COMMENT ON DATABASE ${db} IS ${quoteLiteral(e.comment)}`, what: 'the comment' });
  if (!o.noPrivileges && e.privileges) {
    const publicHas = new Set(e.privileges.filter((p) => p.grantee === 'PUBLIC').map((p) => p.privilege));
    for (const p of PUBLIC_DEFAULTS) {
      if (!publicHas.has(p)) out.push({ sql: `REVOKE ${p} ON DATABASE ${db} FROM PUBLIC`, what: `${p} revoked from PUBLIC` });
    }
    for (const p of e.privileges) {
      // The owner's privileges are the target owner's to have; PUBLIC's defaults are there already.
      if (p.grantee === e.owner || (p.grantee === 'PUBLIC' && PUBLIC_DEFAULTS.includes(p.privilege) && !p.grantable)) continue;
      const to = p.grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(p.grantee);
      out.push({ sql: `GRANT ${p.privilege} ON DATABASE ${db} TO ${to}${p.grantable ? ' WITH GRANT OPTION' : ''}`, what: `${p.privilege} for ${p.grantee}` });
    }
  }
  for (const s of e.settings) {
    const preload = preloadSetting(s.setting) ?? undefined;
    out.push({ sql: settingStatement(database, s.role, s.setting), what: `${s.setting.split('=')[0]}${s.role === null ? '' : ` for role ${s.role}`}`, ...(preload && { preload }) });
  }
  return out;
}

export interface DatabasePropertiesOptions {
  target: ResolvedConnInfo;
  targetDatabase: string;
  warn: (message: string) => void;
}

/** Read the source database's extras; undefined when it is gone. */
export function readDatabaseExtras(source: ResolvedConnInfo, name: string): Promise<DatabaseExtras | undefined> {
  return withClient(source, (c) => databaseExtras(c, name), { label: 'the source' });
}

/** Apply propertyStatements' statements to the target database; returns how many were applied and how many refused. */
export async function applyDatabaseProperties(o: DatabasePropertiesOptions, statements: readonly PropertyStatement[]): Promise<{ applied: number; refused: number }> {
  let applied = 0;
  let skipped = 0;
  if (!statements.length) return { applied, refused: skipped };
  // Checked before anything is applied (a CONNECT revoked below could refuse a new session to the database).
  const lacking = await missingLibraries(o.target, statements);
  // Not on the target database itself: a CONNECT revoked there must not lock pgferry out of applying the rest.
  await withMaintenanceClient(o.target, o.targetDatabase, async (c: pg.Client) => {
    for (const s of statements) {
      const missing = lacking.get(s);
      if (missing) {
        skipped++;
        o.warn(
          `database "${o.targetDatabase}": ${s.what} was not carried over: the target cannot load ${missing} (every new connection to the database would fail); ` +
            `install it on the target, then run: ${s.sql}`,
        );
        continue;
      }
      try {
        await c.query(s.sql);
        applied++;
      } catch (err) {
        if (!isStatementRefusal(err)) throw err;
        skipped++;
        o.warn(`database "${o.targetDatabase}": ${s.what} was not carried over: ${(err as Error).message} (${s.sql})`);
      }
    }
  });
  return { applied, refused: skipped };
}

/** The preload settings among the statements whose libraries the target lacks, each with those libraries in words. */
async function missingLibraries(target: ResolvedConnInfo, statements: readonly PropertyStatement[]): Promise<Map<PropertyStatement, string>> {
  const out = new Map<PropertyStatement, string>();
  const preloads = statements.filter((s) => s.preload);
  if (!preloads.length) return out;
  const wanted = preloads.flatMap((s) => s.preload!.libraries.map((library) => ({ library, restricted: s.preload!.restricted })));
  const checks = await checkLibraries(target, wanted, 'the target');
  let i = 0;
  for (const s of preloads) {
    // A LOAD refused for want of privilege proves nothing either way: the statement is tried, as pg_restore would.
    const missing = checks.slice(i, (i += s.preload!.libraries.length)).filter((x) => x.status === 'missing').map((x) => `"${x.library}"`);
    if (missing.length) out.set(s, `${missing.length > 1 ? 'libraries' : 'library'} ${missing.join(', ')}`);
  }
  return out;
}

export function describeProperties(r: { applied: number; refused: number }): string {
  return `${plural(r.applied, 'statement')} applied${r.refused ? `, ${r.refused} refused` : ''}`;
}
