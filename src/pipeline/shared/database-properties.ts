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
import { checkPreloadSettings, type PreloadSetting, preloadSetting } from '../../postgres/libraries.js';
import { LIST_SETTINGS, splitSettingList } from '../../postgres/setting-lists.js';
import { plural } from '../../units.js';
import { withMaintenanceClient } from '../../postgres/maintenance.js';

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

/** Everything to run on a new target database (no settings, comment or limit; PUBLIC's default privileges) for the source's extras. */
export function propertyStatements(database: string, e: DatabaseExtras, o: { noPrivileges: boolean }): PropertyStatement[] {
  const fresh: DatabaseExtras = { owner: e.owner, connectionLimit: -1, comment: null, privileges: null, settings: [] };
  return propertyChanges(database, e, fresh, { privileges: !o.noPrivileges }).statements;
}

/** A database's privileges as `grantee privilege grantable` lines, the owner's left out; null (no ACL) is PUBLIC's defaults. */
function aclLines(e: DatabaseExtras): Map<string, { grantee: string; privilege: string; grantable: boolean }> {
  const list = e.privileges ?? PUBLIC_DEFAULTS.map((privilege) => ({ grantee: 'PUBLIC', privilege, grantable: false }));
  return new Map(list.filter((p) => p.grantee !== e.owner).map((p) => [`${p.grantee}\u0000${p.privilege}\u0000${p.grantable}`, p]));
}

export interface PropertyChanges {
  statements: PropertyStatement[];
  /** Settings only the target has: the target's own (a DBA's tuning of the new server), left as they are. */
  leftAlone: string[];
}

/**
 * What brings the target database's properties to the source's again (cutover: what changed on the source since init):
 * settings the source has and the target lacks or holds otherwise, the connection limit, the comment, and — with
 * `privileges` — grants and revokes until the ACLs match (owners aside). Settings only the target has are left alone.
 */
export function propertyChanges(database: string, source: DatabaseExtras, target: DatabaseExtras, o: { privileges: boolean }): PropertyChanges {
  const db = quoteIdent(database);
  const statements: PropertyStatement[] = [];
  if (source.connectionLimit !== target.connectionLimit) {
    statements.push({ sql: `ALTER DATABASE ${db} CONNECTION LIMIT ${Math.trunc(source.connectionLimit)}`, what: 'the connection limit' });
  }
  if (source.comment !== target.comment) {
    statements.push({ sql: `COMMENT ON DATABASE ${db} IS ${source.comment === null ? 'NULL' : quoteLiteral(source.comment)}`, what: 'the comment' });
  }
  if (o.privileges) {
    const [want, have] = [aclLines(source), aclLines(target)];
    for (const [k, p] of have) {
      if (want.has(k)) continue;
      const from = p.grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(p.grantee);
      statements.push({ sql: `REVOKE ${p.privilege} ON DATABASE ${db} FROM ${from}`, what: `${p.privilege} revoked from ${p.grantee}` });
    }
    for (const [k, p] of want) {
      if (have.has(k)) continue;
      const to = p.grantee === 'PUBLIC' ? 'PUBLIC' : quoteIdent(p.grantee);
      statements.push({ sql: `GRANT ${p.privilege} ON DATABASE ${db} TO ${to}${p.grantable ? ' WITH GRANT OPTION' : ''}`, what: `${p.privilege} for ${p.grantee}` });
    }
  }
  const key = (x: { role: string | null; setting: string }) => `${x.role ?? ''}\u0000${x.setting.slice(0, x.setting.indexOf('=')).toLowerCase()}`;
  const theirs = new Map(target.settings.map((x) => [key(x), x.setting]));
  const ours = new Set(source.settings.map(key));
  for (const x of source.settings) {
    if (theirs.get(key(x)) === x.setting) continue;
    const preload = preloadSetting(x.setting) ?? undefined;
    statements.push({ sql: settingStatement(database, x.role, x.setting), what: `${x.setting.split('=')[0]}${x.role === null ? '' : ` for role ${x.role}`}`, ...(preload && { preload }) });
  }
  const leftAlone = target.settings
    .filter((x) => !ours.has(key(x)))
    .map((x) => `${x.setting.split('=')[0]}${x.role === null ? '' : ` for role ${x.role}`}`);
  return { statements, leftAlone };
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
  const checks = await checkPreloadSettings(target, preloads.map((s) => s.preload!), 'the target');
  for (const [i, s] of preloads.entries()) {
    // A LOAD refused for want of privilege proves nothing either way: the statement is tried, as pg_restore would.
    const missing = checks[i]!.filter((x) => x.status === 'missing').map((x) => `"${x.library}"`);
    if (missing.length) out.set(s, `${missing.length > 1 ? 'libraries' : 'library'} ${missing.join(', ')}`);
  }
  return out;
}

export function describeProperties(r: { applied: number; refused: number }): string {
  return `${plural(r.applied, 'statement')} applied${r.refused ? `, ${r.refused} refused` : ''}`;
}
