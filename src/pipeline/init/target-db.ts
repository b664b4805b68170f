/**
 * The target database of one source database: created when missing, like the
 * source (encoding, collation, ctype, locale provider; TEMPLATE template0). An
 * existing database that holds anything is refused unless --drop-existing,
 * which (after confirmation) terminates its sessions and drops it first.
 * Nothing is ever dropped without that flag.
 */
import { UsageError } from '../../errors.js';
import { databaseProperties, describeObjectCounts, userObjectCounts, type DatabaseProperties } from '../../postgres/catalog/databases.js';
import { withClient } from '../../postgres/connect.js';
import { withMaintenanceClient } from '../../postgres/maintenance.js';
import { sessionKeeper } from '../../postgres/session-keeper.js';
import { forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isConnectFailure, operationError, sqlstate } from '../../postgres/errors.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';

export interface TargetDatabaseStatus {
  exists: boolean;
  /** Counts of user objects when it exists. */
  objects: Record<string, number>;
  empty: boolean;
  properties?: DatabaseProperties;
}

export async function inspectTargetDatabase(target: ResolvedConnInfo, name: string, targetMajor: number): Promise<TargetDatabaseStatus> {
  const props = await withMaintenanceClient(target, name, (c) => databaseProperties(c, name, targetMajor));
  if (!props) return { exists: false, objects: {}, empty: true };
  const objects = await withClient(forDatabase(target, name), (c) => userObjectCounts(c), { label: 'the target' });
  const empty = Object.values(objects).every((n) => n === 0);
  return { exists: true, objects, empty, properties: props };
}

export interface PrepareTargetOptions {
  target: ResolvedConnInfo;
  targetMajor: number;
  name: string;
  source: DatabaseProperties;
  dropExisting: boolean;
  noOwner: boolean;
  /** Ask before dropping; false stops with exit 2. */
  confirmDrop: (database: string, contents: string) => Promise<boolean>;
  warn: (message: string) => void;
}

export function createDatabaseSql(name: string, src: DatabaseProperties, targetMajor: number, owner: string | null, warn: (m: string) => void): string {
  const parts = [`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`, `ENCODING ${quoteLiteral(src.encoding)}`];
  parts.push(`LC_COLLATE ${quoteLiteral(src.collate)}`, `LC_CTYPE ${quoteLiteral(src.ctype)}`);
  if (src.localeProvider === 'i') {
    if (targetMajor >= 15) {
      parts.push('LOCALE_PROVIDER icu', `ICU_LOCALE ${quoteLiteral(src.locale ?? 'und')}`);
      if (src.icuRules && targetMajor >= 16) parts.push(`ICU_RULES ${quoteLiteral(src.icuRules)}`);
    } else {
      warn(`the source database "${src.name}" uses ICU collation; PostgreSQL ${targetMajor} cannot use ICU per database, so "${name}" uses libc collation ${src.collate} (text sort order may differ)`);
    }
  } else if (src.localeProvider === 'b') {
    if (targetMajor >= 17) parts.push('LOCALE_PROVIDER builtin', `BUILTIN_LOCALE ${quoteLiteral(src.locale ?? 'C')}`);
    else warn(`the source database "${src.name}" uses the builtin locale provider, which PostgreSQL ${targetMajor} lacks; "${name}" uses libc collation ${src.collate}`);
  }
  if (owner) parts.push(`OWNER ${quoteIdent(owner)}`);
  return parts.join(' ');
}

/** Make sure the target database exists and is empty. Returns what was done. */
export async function prepareTargetDatabase(o: PrepareTargetOptions): Promise<'created' | 'recreated' | 'reused-empty'> {
  const status = await inspectTargetDatabase(o.target, o.name, o.targetMajor);
  let action: 'created' | 'recreated' | 'reused-empty' = 'created';
  if (status.exists) {
    if (status.empty) {
      const p = status.properties!;
      if (p.encoding !== o.source.encoding) {
        throw new UsageError(
          `the target database "${o.name}" exists with encoding ${p.encoding}, but the source uses ${o.source.encoding}`,
          { hint: 'drop it, or pass --drop-existing to have pgferry re-create it like the source' },
        );
      }
      if (p.collate !== o.source.collate || p.ctype !== o.source.ctype) {
        o.warn(`the target database "${o.name}" exists with collation ${p.collate}/${p.ctype}; the source uses ${o.source.collate}/${o.source.ctype} (sort order of text may differ)`);
      }
      return 'reused-empty';
    }
    const contents = describeObjectCounts(status.objects);
    if (!o.dropExisting) {
      throw new UsageError(`the target database "${o.name}" already exists and is not empty (${contents})`, {
        hint: 'point --target at another database, or pass --drop-existing to drop and re-create it (asks first; --yes skips the question)',
      });
    }
    if (!(await o.confirmDrop(o.name, contents))) {
      throw new UsageError(`not dropping the target database "${o.name}"`);
    }
    // Sessions this run keeps open on that database would hold the DROP up (before PostgreSQL 13) or be cut by it.
    await sessionKeeper()?.closeIdle();
    await withMaintenanceClient(o.target, o.name, async (c) => {
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [o.name]);
      try {
        await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(o.name)}${o.targetMajor >= 13 ? ' WITH (FORCE)' : ''}`);
      } catch (err) {
        throw operationError(err, `dropping the target database "${o.name}"`);
      }
    });
    action = 'recreated';
  }
  await withMaintenanceClient(o.target, o.name, async (c) => {
    let owner: string | null = null;
    if (!o.noOwner) {
      const r = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [o.source.owner]);
      if (r.rowCount) owner = o.source.owner;
      else o.warn(`the source database owner ${o.source.owner} does not exist on the target; "${o.name}" is owned by the connecting user`);
    }
    try {
      try {
        await c.query(createDatabaseSql(o.name, o.source, o.targetMajor, owner, o.warn));
      } catch (err) {
        // A non-superuser may create databases only for roles it belongs to.
        if (!owner || sqlstate(err) !== '42501') throw err;
        o.warn(`cannot make ${owner} the owner of "${o.name}" (${(err as Error).message}); it is owned by the connecting user`);
        await c.query(createDatabaseSql(o.name, o.source, o.targetMajor, null, () => {}));
      }
    } catch (err) {
      if (isConnectFailure(err)) throw err;
      throw operationError(err, `creating the target database "${o.name}"`);
    }
  });
  return action;
}
