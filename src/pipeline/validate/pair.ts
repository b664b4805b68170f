/**
 * Checks about the two sides together: never copy a database onto itself
 * (however the host is spelled), warn about downgrades, and compare the
 * libraries each server preloads.
 */
import { quoteLiteral } from '../../postgres/identifiers.js';
import { sameServer, type ServerIdentity } from '../../postgres/probe.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export interface DatabasePair {
  source: string;
  target: string;
}

/**
 * Same system identifier and postmaster start time means the same running
 * server, whatever host name, address or socket led to it.
 */
export function checkDistinct(source: ServerIdentity, target: ServerIdentity, pairs: DatabasePair[]): CheckResult {
  const id = 'pair.distinct';
  if (!sameServer(source, target)) {
    return ok(id, 'pair', `different servers (system identifiers ${source.systemIdentifier} and ${target.systemIdentifier})`);
  }
  const same = pairs.filter((p) => p.source === p.target);
  if (same.length) {
    return fail(
      id,
      'pair',
      `source and target are the same database: ${same.map((p) => `"${p.source}"`).join(', ')} on the server with system identifier ${source.systemIdentifier} (${source.endpoint} and ${target.endpoint})`,
      'point --target at another server, or name another database in the target connection',
    );
  }
  return ok(id, 'pair', `same server, different databases (${pairs.map((p) => `${p.source} → ${p.target}`).join(', ')})`);
}

export function checkVersions(source: ServerIdentity, target: ServerIdentity): CheckResult {
  const id = 'pair.versions';
  if (target.major < source.major) {
    return warn(
      id,
      'pair',
      `the target runs PostgreSQL ${target.major}, older than the source's ${source.major}: a downgrade, where schema features of ${source.major} may not restore`,
      `prefer a target running PostgreSQL ${source.major} or later; otherwise test the schema restore first (pg_dump --schema-only of the source into a scratch database on the target)`,
    );
  }
  return ok(id, 'pair', target.major === source.major ? `both run PostgreSQL ${source.major}` : `PostgreSQL ${source.major} → ${target.major} (upgrade)`);
}

/** Extensions whose library must be preloaded to work (the extension name is the library name). */
export const PRELOAD_EXTENSIONS: ReadonlySet<string> = new Set([
  'pg_stat_statements', 'timescaledb', 'pg_cron', 'citus', 'pgaudit', 'pg_squeeze', 'pglogical', 'pg_qualstats',
  'pg_wait_sampling', 'pg_stat_kcache', 'pg_hint_plan', 'pg_partman_bgw', 'pg_stat_monitor', 'pg_show_plans',
]);

export interface PreloadFacts {
  /** null: the setting is not readable there (needs superuser or pg_read_all_settings). */
  source: string[] | null;
  target: string[] | null;
  /** Extensions installed in the source databases in scope. */
  extensions: Set<string>;
}

function preloadFix(target: string[] | null, add: string[]): string {
  const list = [...new Set([...(target ?? []), ...add])].join(',');
  return `on the target: ALTER SYSTEM SET shared_preload_libraries = ${quoteLiteral(list)}; then restart PostgreSQL`;
}

export function checkPreloadLibraries(f: PreloadFacts): CheckResult[] {
  const id = 'pair.shared_preload_libraries';
  const out: CheckResult[] = [];
  const needsPreload = [...f.extensions].filter((e) => PRELOAD_EXTENSIONS.has(e) || (f.source ?? []).includes(e));
  if (f.source === null || f.target === null) {
    const unreadable = [f.source === null ? 'source' : null, f.target === null ? 'target' : null].filter(Boolean).join(' and ');
    const missing = f.target === null ? needsPreload : needsPreload.filter((e) => !f.target!.includes(e));
    if (f.target !== null && missing.length) {
      return [
        fail(
          id,
          'pair',
          `extension${missing.length > 1 ? 's' : ''} ${missing.join(', ')} need${missing.length > 1 ? '' : 's'} shared_preload_libraries, which the target does not preload`,
          preloadFix(f.target, missing),
        ),
      ];
    }
    if (needsPreload.length) {
      return [
        warn(
          id,
          'pair',
          `cannot read shared_preload_libraries on the ${unreadable}; extension${needsPreload.length > 1 ? 's' : ''} ${needsPreload.join(', ')} must be preloaded on the target`,
          `compare SHOW shared_preload_libraries on both servers as a superuser; ${preloadFix(f.target, needsPreload)}`,
        ),
      ];
    }
    return [ok(id, 'pair', `shared_preload_libraries not readable on the ${unreadable}; no extension in scope needs preloading`)];
  }
  const missing = f.source.filter((lib) => !f.target!.includes(lib));
  const missingExt = missing.filter((lib) => f.extensions.has(lib));
  const missingLib = missing.filter((lib) => !f.extensions.has(lib));
  if (missingExt.length) {
    out.push(
      fail(
        id,
        'pair',
        `the source preloads ${missingExt.join(', ')} (installed as extension${missingExt.length > 1 ? 's' : ''} in scope), the target does not`,
        preloadFix(f.target, missingExt),
      ),
    );
  }
  if (missingLib.length) {
    out.push(
      warn(
        'pair.shared_preload_libraries_other',
        'pair',
        `the source preloads ${missingLib.join(', ')}, the target does not (no extension in scope depends on ${missingLib.length > 1 ? 'them' : 'it'}, but applications may)`,
        preloadFix(f.target, missingLib),
      ),
    );
  }
  if (!out.length) {
    out.push(ok(id, 'pair', f.source.length ? `the target preloads everything the source does (${f.source.join(', ')})` : 'the source preloads no libraries'));
  }
  return out;
}
