/**
 * The target server: not a standby, the user may create the databases and
 * the subscriptions, and there are enough logical replication workers (one
 * apply worker per database) and background worker processes to run them.
 */
import type pg from 'pg';
import { quoteIdent } from '../../postgres/identifiers.js';
import { databaseLocaleSql, toLocale, type DatabaseLocale } from './database-facts.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export interface TargetDatabase extends DatabaseLocale {
  name: string;
}

export interface TargetServerFacts {
  major: number;
  user: string;
  inRecovery: boolean;
  superuser: boolean;
  createdb: boolean;
  /** Member of pg_create_subscription (PostgreSQL 16+); false before 16. */
  createSubscription: boolean;
  maxLogicalReplicationWorkers: number;
  maxWorkerProcesses: number;
  /** Enabled subscriptions or running logical replication workers, whichever is larger. */
  workersInUse: number;
  /** Lower-cased library names; null when the setting is not readable by this user. */
  sharedPreloadLibraries: string[] | null;
  /** name → versions installable on the target (pg_available_extension_versions). */
  availableExtensions: Map<string, string[]>;
  databases: TargetDatabase[];
  /** Built with ICU (ICU collations exist). */
  icu: boolean;
  /** libc locales known to the server (pg_collation, provider libc), normalised. */
  libcLocales: Set<string>;
  /** transaction_timeout (17+) of this role outside pgferry's own SET (its role's, database's or server's), in ms; null before 17. */
  transactionTimeoutMs: number | null;
}

/** "en_US.UTF-8" and "en_US.utf8" name the same locale. */
export function normaliseLocale(name: string): string {
  return name.toLowerCase().replace(/\.utf-?8$/, '.utf8');
}

/** shared_preload_libraries as a list of library names ('$libdir/x' → 'x', quotes removed). */
export function parseLibraryList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1').replace(/^\$libdir\//, '').trim().toLowerCase())
    .filter(Boolean);
}

export async function readPreloadLibraries(client: pg.Client): Promise<string[] | null> {
  // pg_settings hides superuser-only settings (this one) from users without pg_read_all_settings.
  const { rows } = await client.query<{ setting: string }>("SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'");
  return rows[0] ? parseLibraryList(rows[0].setting) : null;
}

export async function gatherTargetServer(client: pg.Client, major: number, inRecovery: boolean): Promise<TargetServerFacts> {
  const subRole = major >= 16 ? "pg_has_role(current_user, 'pg_create_subscription', 'MEMBER')" : 'false';
  const { rows } = await client.query<{
    user: string; superuser: boolean; createdb: boolean; create_subscription: boolean;
    max_lrw: string; max_wp: string; running: number;
  }>(
    `SELECT current_user AS "user", r.rolsuper AS superuser, r.rolcreatedb AS createdb, ${subRole} AS create_subscription,
            current_setting('max_logical_replication_workers') AS max_lrw,
            current_setting('max_worker_processes') AS max_wp,
            (SELECT count(*)::int FROM pg_stat_activity
              WHERE backend_type LIKE 'logical replication%worker') AS running
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const r = rows[0]!;
  let enabledSubscriptions = 0;
  try {
    const { rows: subs } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription WHERE subenabled');
    enabledSubscriptions = subs[0]?.n ?? 0;
  } catch {
    // Older servers restrict pg_subscription to superusers; the running workers are the best we know.
  }
  const { rows: ext } = await client.query<{ name: string; version: string }>(
    'SELECT name, version FROM pg_available_extension_versions ORDER BY name, version',
  );
  const availableExtensions = new Map<string, string[]>();
  for (const e of ext) availableExtensions.set(e.name, [...(availableExtensions.get(e.name) ?? []), e.version]);
  const { rows: dbs } = await client.query<{ name: string; encoding: string; collate: string; ctype: string; provider: string; locale: string | null }>(
    `${databaseLocaleSql(major)} ORDER BY d.datname`,
  );
  const { rows: colls } = await client.query<{ provider: string; name: string; collate: string | null }>(
    // collcollate is NULL for ICU collations on 15+; only libc ones matter here.
    `SELECT collprovider::text AS provider, collname AS name, collcollate AS collate FROM pg_collation`,
  );
  const libcLocales = new Set<string>(['c', 'posix']);
  for (const c of colls) {
    if (c.provider !== 'c') continue;
    libcLocales.add(normaliseLocale(c.name));
    if (c.collate) libcLocales.add(normaliseLocale(c.collate));
  }
  // reset_val: the value before the session's own SET (session-defaults.ts sets 0 after login): the role's, database's or server's.
  const tt = major >= 17 ? (await client.query<{ ms: string }>("SELECT reset_val AS ms FROM pg_settings WHERE name = 'transaction_timeout'")).rows[0] : undefined;
  return {
    transactionTimeoutMs: tt ? Number(tt.ms) : null,
    major,
    user: r.user,
    inRecovery,
    superuser: r.superuser,
    createdb: r.createdb,
    createSubscription: r.create_subscription,
    maxLogicalReplicationWorkers: Number(r.max_lrw),
    maxWorkerProcesses: Number(r.max_wp),
    workersInUse: Math.max(r.running, enabledSubscriptions),
    sharedPreloadLibraries: await readPreloadLibraries(client),
    availableExtensions,
    databases: dbs.map((d) => ({ name: d.name, ...toLocale(d) })),
    icu: colls.some((c) => c.provider === 'i'),
    libcLocales,
  };
}

const restart = 'then restart PostgreSQL (this setting takes effect only at server start)';

/**
 * `targetDatabases`: the databases init will fill. Those that do not exist
 * yet must be created, which needs superuser or CREATEDB.
 */
export function checkTargetServer(f: TargetServerFacts, targetDatabases: string[]): CheckResult[] {
  const out: CheckResult[] = [];
  const role = quoteIdent(f.user);

  out.push(
    f.inRecovery
      ? fail('target.recovery', 'target', 'the target is a standby (in recovery): it accepts no writes', 'point --target at a primary server (or promote this one: SELECT pg_promote();)')
      : ok('target.recovery', 'target', 'the target is a primary (not in recovery)'),
  );

  const missing = targetDatabases.filter((d) => !f.databases.some((x) => x.name === d));
  if (f.superuser || f.createdb) {
    out.push(ok('target.create_database', 'target', `${f.user} may create databases (${f.superuser ? 'superuser' : 'CREATEDB'})`));
  } else if (!missing.length) {
    out.push(ok('target.create_database', 'target', `${f.user} may not create databases, but every target database exists already`));
  } else {
    out.push(
      fail(
        'target.create_database',
        'target',
        `${f.user} may not create databases (neither superuser nor CREATEDB), and ${missing.length > 1 ? 'these target databases do' : 'this target database does'} not exist: ${missing.join(', ')}`,
        `ALTER ROLE ${role} CREATEDB;  -- or, as an administrator: ${missing.map((d) => `CREATE DATABASE ${quoteIdent(d)} OWNER ${role};`).join(' ')}`,
      ),
    );
  }

  if (f.superuser) {
    out.push(ok('target.create_subscription', 'target', `${f.user} is a superuser: may create subscriptions`));
  } else if (f.major >= 16 && f.createSubscription) {
    out.push(ok('target.create_subscription', 'target', `${f.user} is a member of pg_create_subscription (and needs CREATE on each target database)`));
  } else if (f.major >= 16) {
    out.push(
      fail(
        'target.create_subscription',
        'target',
        `${f.user} may not create subscriptions (neither superuser nor a member of pg_create_subscription)`,
        `GRANT pg_create_subscription TO ${role};`,
      ),
    );
  } else {
    out.push(
      fail(
        'target.create_subscription',
        'target',
        `${f.user} may not create subscriptions: on PostgreSQL ${f.major} only superusers can (16+ has pg_create_subscription)`,
        `ALTER ROLE ${role} SUPERUSER;  -- or connect to the target as a superuser`,
      ),
    );
  }

  const need = targetDatabases.length;
  const free = Math.max(0, f.maxLogicalReplicationWorkers - f.workersInUse);
  const workerText = `max_logical_replication_workers = ${f.maxLogicalReplicationWorkers}: ${f.workersInUse} in use, ${free} free, ${need} needed (one apply worker per database)`;
  out.push(
    free >= need
      ? ok('target.logical_replication_workers', 'target', workerText)
      : fail(
          'target.logical_replication_workers',
          'target',
          `not enough logical replication workers: ${workerText}`,
          `ALTER SYSTEM SET max_logical_replication_workers = ${f.workersInUse + need + 2};  -- two spare for table synchronisation; ${restart}`,
        ),
  );

  // The launcher and every replication worker are background workers; parallel query draws on the same pool.
  const wpNeeded = Math.max(f.maxLogicalReplicationWorkers, f.workersInUse + need) + 1;
  out.push(
    f.maxWorkerProcesses >= wpNeeded
      ? ok('target.worker_processes', 'target', `max_worker_processes = ${f.maxWorkerProcesses} (≥ ${wpNeeded}: logical replication workers plus the launcher)`)
      : fail(
          'target.worker_processes',
          'target',
          `max_worker_processes = ${f.maxWorkerProcesses} is too low for max_logical_replication_workers = ${f.maxLogicalReplicationWorkers} plus the launcher`,
          `ALTER SYSTEM SET max_worker_processes = ${wpNeeded + 4};  -- a few more for parallel query; ${restart}`,
        ),
  );
  const tt = f.transactionTimeoutMs;
  if (tt !== null && tt > 0) {
    out.push(
      warn(
        'target.transaction_timeout',
        'target',
        `transaction_timeout is ${tt} ms for ${f.user} on the target (a setting of the role, database or server): the subscription's apply worker runs with its owner's settings, ` +
          'so a source transaction that takes longer to apply would be cut off and retried without end (pgferry\'s own sessions set it to 0)',
        `ALTER ROLE ${role} SET transaction_timeout = 0;  -- the role that owns the subscriptions; keep the limit for the application's roles`,
      ),
    );
  }
  return out;
}
