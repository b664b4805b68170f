/**
 * runValidate: every preflight check, before anything is written. Both sides
 * are reached in parallel; a side that cannot be reached is a failed check
 * (exit 3) and everything that can still be checked is. Same database on
 * both sides ends the run (exit 2).
 */
import type pg from 'pg';
import { ExitCode, PgferryError, errorMessage } from '../../errors.js';
import { resolveDatabases, resolveTables, rulesFor, type DatabaseScope } from '../../config/scope.js';
import { gatherTablespaces } from '../../postgres/catalog/tablespaces.js';
import { NO_SIZES } from '../../postgres/catalog/tables.js';
import { silentProgress, type ProgressSink, type ProgressStatus } from '../shared/progress.js';
import { shutdownSignal, throwIfShuttingDown } from '../../lifecycle.js';
import { describeConn, forDatabase, type ResolvedConnInfo } from '../../postgres/conninfo.js';
import { quoteIdent } from '../../postgres/identifiers.js';
import { objectNames } from '../../state/object-names.js';
import { sourceConnFor, targetDatabaseName } from '../shared/pairs.js';
import { gatherDatabaseFacts, type DatabaseFacts } from './database-facts.js';
import { checkExtensionData, gatherExtensionData } from './extension-data.js';
import { checkDatabasePreloadLibraries } from './database-preload.js';
import { checkEventTriggers } from './event-triggers.js';
import { checkSubscriptions } from './subscriptions.js';
import { gatherSubscriptions } from '../shared/source-subscriptions.js';
import { checkExtensions } from './extensions.js';
import { checkFilterForeignKeys } from './filter-foreign-keys.js';
import { checkFilters } from '../shared/row-filter-checks.js';
import { checkMasking } from './masking.js';
import { checkLocale } from './locale.js';
import { checkLockTable, gatherLockTable, type LockTableFacts } from './lock-table.js';
import { checkLongTransactions, DEFAULT_MAX_TRANSACTION_AGE_SECONDS, gatherLongTransactions } from './long-transactions.js';
import { checkLargeObjects, checkSequences, checkSize, sequencesInScope } from './objects.js';
import { checkDistinct, checkPreloadLibraries, checkVersions, type DatabasePair } from './pair.js';
import { openSession, reachSide, type Session } from './reach.js';
import { checkSourceServer, gatherSourceServer } from './source-server.js';
import {
  checkPublicationRights, checkReplicationPrivilege, checkRowSecurity, checkSelect, gatherReplicationPrivilege, gatherRowSecurity, gatherSchemasWithoutUsage,
  publishedTables,
} from './source-privileges.js';
import { checkReplicaIdentity, checkScopeNotEmpty, checkUnlogged, gatherLeafIdentities } from './tables.js';
import { checkTablespaces } from './tablespaces.js';
import { checkTargetDatabase, gatherTargetDatabase } from './target-database.js';
import { checkTargetServer, gatherTargetServer, readPreloadLibraries, type TargetServerFacts } from './target-server.js';
import { checkTools } from './tools.js';
import { checkActivity, checkTimestampTables, LOGICAL_ONLY_CHECKS } from './timestamp.js';
import {
  fail, inDatabase, type CheckResult, type DatabaseReport, type ValidateOptions, type ValidateReport, type ValidateSummary,
} from './types.js';

/** The exit code a set of checks maps to. */
export function exitCodeFor(checks: CheckResult[]): number {
  if (checks.some((c) => c.id === 'pair.distinct' && c.status === 'fail')) return ExitCode.usage;
  if (checks.some((c) => c.id.endsWith('.reachable') && c.status === 'fail')) return ExitCode.connect;
  if (checks.some((c) => c.status === 'fail')) return ExitCode.problems;
  return ExitCode.ok;
}

export function summarise(checks: CheckResult[]): ValidateSummary {
  return {
    ok: checks.filter((c) => c.status === 'ok').length,
    warn: checks.filter((c) => c.status === 'warn').length,
    fail: checks.filter((c) => c.status === 'fail').length,
  };
}

function worst(checks: CheckResult[]): ProgressStatus {
  return checks.some((c) => c.status === 'fail') ? 'fail' : checks.some((c) => c.status === 'warn') ? 'warn' : 'ok';
}

/**
 * Run a step under a progress event; its checks are added to `into`. A query
 * that fails unexpectedly fails this step only, so the rest is still reported.
 */
async function step(
  progress: ProgressSink,
  side: 'source' | 'target',
  id: string,
  title: string,
  into: CheckResult[],
  fn: () => Promise<CheckResult[]>,
): Promise<void> {
  progress({ kind: 'start', id, title });
  let found: CheckResult[];
  try {
    found = await fn();
  } catch (err) {
    if (err instanceof PgferryError) throw err;
    found = [
      fail(`${side}.check_error`, side, `could not finish ${title}: ${errorMessage(err)}`, 'fix the cause named above (often a missing privilege on a catalog view) and run validate again'),
    ];
  }
  into.push(...found);
  progress({ kind: 'end', id, status: worst(found) });
}

function emptyDatabaseReport(name: string, target: string, targetExists: boolean | null): DatabaseReport {
  return {
    name, target, targetExists, sizeBytes: null, encoding: null, collate: null, ctype: null, localeProvider: null, locale: null,
    tables: 0, schemaOnlyTables: 0, excludedTables: 0,
  };
}

function finish(all: CheckResult[], source: Session | null, target: Session | null, databases: DatabaseReport[], method?: string): ValidateReport {
  const checks = method === 'timestamp' ? all.filter((c) => !LOGICAL_ONLY_CHECKS.has(c.id)) : all;
  const exitCode = exitCodeFor(checks);
  return {
    ok: exitCode === ExitCode.ok,
    exitCode,
    source: source?.identity ?? null,
    target: target?.identity ?? null,
    databases,
    checks,
    summary: summarise(checks),
  };
}

/** A client for one database of a side, reusing the side's session when it is that database. */
async function withDatabaseClient<T>(
  session: Session,
  conn: ResolvedConnInfo,
  side: 'source' | 'target',
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  if (session.conn.dbname === conn.dbname) return fn(session.client);
  const client = await openSession(conn, side);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** What the per-database checks share once both servers have been checked. */
interface SourceContext {
  options: ValidateOptions;
  source: Session;
  target: Session | null;
  /** The target server's facts; null without a target or when they could not be read. */
  tf: TargetServerFacts | null;
  /** The user the source checks speak of (the replication privilege check may name another). */
  user: string;
  /** Each side's lock table; null when that side is not reached or its settings could not be read. */
  locks: { source: LockTableFacts | null; target: LockTableFacts | null };
}

export async function runValidate(options: ValidateOptions): Promise<ValidateReport> {
  const progress = options.progress ?? silentProgress;
  const signal = options.signal ?? shutdownSignal;
  const sel = options.scope.databases;
  const checks: CheckResult[] = [];
  const databases: DatabaseReport[] = [];
  const singleDatabase = !sel.all && sel.include.length === 0;

  progress({ kind: 'start', id: 'connect', title: 'connecting to source and target' });
  const [src, tgt] = await Promise.all([
    // With several databases the one in the source connection only serves to connect.
    reachSide(options.source, 'source', !singleDatabase),
    reachSide(options.target, 'target', true),
  ]);
  checks.push(...src.checks, ...tgt.checks);
  progress({ kind: 'end', id: 'connect', status: worst(checks) });
  const source = src.session;
  const target = tgt.session;

  try {
    checks.push(...checkTools(options.pgBinDir, source?.identity.major));
    throwIfShuttingDown(signal);

    const pairs = await databasePairs(options, source, singleDatabase);

    if (source && target) {
      const distinct = checkDistinct(source.identity, target.identity, pairs);
      checks.push(distinct);
      if (distinct.status === 'fail') return finish(checks, source, target, databases, options.method);
      checks.push(checkVersions(source.identity, target.identity));
    }

    const tf = target ? await checkTargetSide(progress, target, pairs, checks) : null;

    if (!source) {
      for (const p of pairs) databases.push(emptyDatabaseReport(p.source, p.target, tf ? tf.databases.some((d) => d.name === p.target) : null));
      return finish(checks, source, target, databases, options.method);
    }

    const user = await checkSourceSide(options, progress, source, target, pairs, checks);
    const [sourceLocks, targetLocks] = await Promise.all([
      gatherLockTable(source.client).catch(() => null),
      target ? gatherLockTable(target.client).catch(() => null) : null,
    ]);
    const ctx: SourceContext = { options, source, target, tf, user, locks: { source: sourceLocks, target: targetLocks } };

    const installed = new Set<string>();
    for (const p of pairs) {
      throwIfShuttingDown(signal);
      const report = emptyDatabaseReport(p.source, p.target, tf ? tf.databases.some((d) => d.name === p.target) : null);
      databases.push(report);
      const dbChecks: CheckResult[] = [];
      await step(progress, 'source', `database:${p.source}`, `checking database ${p.source}`, dbChecks, () => checkDatabase(ctx, p, report, installed));
      checks.push(...inDatabase(p.source, dbChecks));
    }

    if (target && tf) {
      const sourceLibs = await readPreloadLibraries(source.client);
      checks.push(...checkPreloadLibraries({ source: sourceLibs, target: tf.sharedPreloadLibraries, extensions: installed }));
    }
    return finish(checks, source, target, databases, options.method);
  } finally {
    await Promise.all([source?.client.end().catch(() => {}), target?.client.end().catch(() => {})]);
  }
}

/** The source and target database of every database in scope. */
async function databasePairs(options: ValidateOptions, source: Session | null, singleDatabase: boolean): Promise<DatabasePair[]> {
  const sel = options.scope.databases;
  let names: string[];
  if (source) {
    names = await resolveDatabases(source.client, sel, options.source.dbname);
  } else {
    // Without the source, the databases named explicitly are the best guess of the scope.
    names = singleDatabase ? [options.source.dbname] : sel.include.filter((d) => !sel.exclude.includes(d));
  }
  return names.map((n) => ({ source: n, target: targetDatabaseName(n, sel, options.target) }));
}

/** The target server's checks; returns its facts, or null when they could not be read. */
async function checkTargetSide(progress: ProgressSink, target: Session, pairs: DatabasePair[], checks: CheckResult[]): Promise<TargetServerFacts | null> {
  let targetFacts: TargetServerFacts | null = null;
  await step(progress, 'target', 'target', `checking target ${describeConn(target.conn)}`, checks, async () => {
    targetFacts = await gatherTargetServer(target.client, target.identity.major, target.identity.inRecovery);
    return checkTargetServer(targetFacts, pairs.map((p) => p.target));
  });
  return targetFacts as TargetServerFacts | null;
}

/** The source server's checks (settings, slots, replication privilege, long transactions); returns the user they speak of. */
async function checkSourceSide(
  options: ValidateOptions,
  progress: ProgressSink,
  source: Session,
  target: Session | null,
  pairs: DatabasePair[],
  checks: CheckResult[],
): Promise<string> {
  const maxAge = options.maxTransactionAgeSeconds ?? DEFAULT_MAX_TRANSACTION_AGE_SECONDS;
  let seesAll = false;
  let user = source.identity.user;
  await step(progress, 'source', 'source', `checking source ${describeConn(source.conn)}`, checks, async () => {
    const facts = await gatherSourceServer(source.client, source.identity.major, source.identity.inRecovery);
    seesAll = facts.seesAllSessions;
    const own = target
      ? pairs
          .map((p) => objectNames({
            sourceSystemIdentifier: source.identity.systemIdentifier,
            sourceDatabase: p.source,
            targetSystemIdentifier: target.identity.systemIdentifier,
            targetDatabase: p.target,
          }).slot)
          .filter((slot) => facts.slots.some((s) => s.name === slot))
      : [];
    const priv = await gatherReplicationPrivilege(source.client);
    user = priv.user;
    const lt = await gatherLongTransactions(source.client, maxAge, seesAll);
    return [
      ...checkSourceServer(facts, { databases: pairs.length, existingOwnSlots: own }),
      checkReplicationPrivilege(priv),
      ...checkLongTransactions(lt),
      ...(options.method === 'timestamp' ? await checkActivity(source.client, source.identity.user, source.identity.inRecovery) : []),
    ];
  });
  return user;
}

/** One database's checks on both sides; fills in its report and adds its extensions to `installed`. */
async function checkDatabase(ctx: SourceContext, p: DatabasePair, report: DatabaseReport, installed: Set<string>): Promise<CheckResult[]> {
  const { user } = ctx;
  const found: CheckResult[] = [];
  let facts: DatabaseFacts;
  let scope: DatabaseScope;
  try {
    ({ facts, scope } = await checkSourceDatabase(ctx, p, found));
  } catch (err) {
    if ((err as { exitCode?: number }).exitCode === ExitCode.connect) {
      found.push(fail('source.reachable', 'source', (err as Error).message, (err as { hint?: string }).hint ?? `check that ${user} may connect to database ${p.source}`));
      return found;
    }
    throw err;
  }
  Object.assign(report, {
    sizeBytes: facts.sizeBytes,
    encoding: facts.encoding,
    collate: facts.collate,
    ctype: facts.ctype,
    localeProvider: facts.provider,
    locale: facts.locale,
    tables: scope.tables.length,
    schemaOnlyTables: scope.tables.filter((t) => t.schemaOnly).length,
    excludedTables: scope.excluded.length,
  } satisfies Partial<DatabaseReport>);
  for (const e of facts.extensions) installed.add(e.name);
  found.push(...checkLockTables(ctx, scope));

  if (ctx.target && ctx.tf) found.push(...(await checkTargetForDatabase(ctx.target, ctx.tf, p, facts, report)));
  return found;
}

/** The tables pg_dump (every table it dumps, and each leaf partition) and CREATE SUBSCRIPTION (each published table) lock at once. */
function checkLockTables(ctx: SourceContext, scope: DatabaseScope): CheckResult[] {
  const out: CheckResult[] = [];
  const dumped = scope.tables.reduce((n, t) => n + 1 + t.partitions.length, 0);
  if (ctx.locks.source) out.push(checkLockTable('source', ctx.locks.source, dumped, 'pg_dump', 'init'));
  if (ctx.target && ctx.locks.target) out.push(checkLockTable('target', ctx.locks.target, publishedTables(scope.tables).length, 'CREATE SUBSCRIPTION', 'sync'));
  return out;
}

/** The checks of one source database (size, scope, privileges, row identities, filters, objects); adds them to `found`. */
async function checkSourceDatabase(ctx: SourceContext, p: DatabasePair, found: CheckResult[]): Promise<{ facts: DatabaseFacts; scope: DatabaseScope }> {
  const { options, source, user } = ctx;
  return withDatabaseClient(source, sourceConnFor(options.source, p.source), 'source', async (client) => {
    const facts = await gatherDatabaseFacts(client, source.identity.major);
    const scope = await resolveTables(client, p.source, rulesFor(options.scope, p.source), NO_SIZES);
    const leaves = await gatherLeafIdentities(client, scope.tables);
    const noUsage = source.identity.superuser ? new Set<string>() : await gatherSchemasWithoutUsage(client);
    const published = publishedTables(scope.tables);
    const canPublish = source.identity.superuser || (facts.canCreate && published.every((t) => t.isOwner));
    const refused = new Set<string>();
    found.push(
      checkSize(facts),
      checkScopeNotEmpty(scope),
      checkSelect(scope.tables, user, noUsage),
      ...checkPublicationRights(p.source, scope.tables, { user, superuser: source.identity.superuser, canCreateInDatabase: facts.canCreate }),
      ...checkReplicaIdentity(scope.tables, leaves),
      ...(await checkFilters(client, scope.tables, { major: source.identity.major, canPublish, refused })),
      ...(await checkFilterForeignKeys(client, scope.tables, undefined, refused)),
      ...checkMasking(scope.tables, source.identity.major),
    );
    const hidden = source.identity.superuser ? null : checkRowSecurity(await gatherRowSecurity(client, scope.tables), user);
    if (hidden) found.push(hidden);
    const unlogged = checkUnlogged(scope.tables);
    if (unlogged) found.push(unlogged);
    const lo = checkLargeObjects(facts);
    if (lo) found.push(lo);
    const subs = checkSubscriptions(await gatherSubscriptions(client));
    if (subs) found.push(subs);
    const extData = checkExtensionData(await gatherExtensionData(client));
    if (extData) found.push(extData);
    const spaces = checkTablespaces(await gatherTablespaces(client, scope.tables));
    if (spaces) found.push(spaces);
    found.push(...checkSequences(sequencesInScope(facts.sequences, scope.tables), user));
    if (options.method === 'timestamp') found.push(...(await checkTimestampTables(client, scope.tables, options.timestampColumn ?? 'updated_at')));
    return { facts, scope };
  });
}

/** What one source database needs of the target: extensions, locale, and the target database's own state. */
async function checkTargetForDatabase(target: Session, tf: TargetServerFacts, p: DatabasePair, facts: DatabaseFacts, report: DatabaseReport): Promise<CheckResult[]> {
  const found: CheckResult[] = [];
  found.push(...checkExtensions(facts.extensions, tf.availableExtensions, tf.major));
  found.push(...checkLocale(p.source, facts, p.target, tf));
  const preload = await checkDatabasePreloadLibraries(target.conn, p.source, facts.preloadSettings);
  if (preload) found.push(preload);
  const triggers = checkEventTriggers(facts.eventTriggers, tf);
  if (triggers) found.push(triggers);
  if (report.targetExists) {
    try {
      const td = await withDatabaseClient(target, forDatabase(target.conn, p.target), 'target', gatherTargetDatabase);
      found.push(...checkTargetDatabase(td));
    } catch (err) {
      if ((err as { exitCode?: number }).exitCode !== ExitCode.connect) throw err;
      found.push(
        fail('database.target_privileges', 'target', (err as Error).message, `GRANT CONNECT ON DATABASE ${quoteIdent(p.target)} TO ${quoteIdent(tf.user)};  -- and check pg_hba.conf on the target`),
      );
    }
  }
  return found;
}
