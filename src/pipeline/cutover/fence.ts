/**
 * The fence: from this point no application can change a table in scope on
 * the source. Three layers, none of which a session can SET away:
 *
 * 1. CONNECT on the source database is revoked from PUBLIC and from every
 *    role that holds it, except the role pgferry connects as and the role of
 *    the subscription's walsender (granted explicitly when they relied on
 *    PUBLIC). New sessions of application roles are refused at login.
 * 2. Every other client session of the database is ended (pg_terminate_backend),
 *    and pgferry waits until those backends are gone: sessions in the middle of
 *    a transaction roll back.
 * 3. A statement-level trigger BEFORE INSERT, UPDATE, DELETE and TRUNCATE on
 *    every table of the publication (the scope's tables with the timestamp
 *    method; and every partition of a partitioned one) raises
 *    read_only_sql_transaction. It fires for every role,
 *    superusers included; only the table owner or a superuser can remove it
 *    (ALTER TABLE, not SET). Logical replication's apply workers run with
 *    session_replication_role = replica, where such triggers do not fire.
 *
 * Creating the triggers waits for every transaction that holds a write lock
 * on those tables, so once they are committed no application transaction that
 * could still commit a change is left: the WAL position read afterwards (the
 * fence LSN) is after every application commit.
 *
 * Undone by unfence(): the schema holding the trigger function is dropped
 * with CASCADE (triggers included) and the CONNECT privileges are given back
 * exactly as recorded. Both directions are idempotent.
 */
// The schema of the fence's trigger function; shared, since timestamp rounds refuse a fenced source.
import { FENCE_SCHEMA } from '../shared/final-apply.js';
import { FENCED_SOURCE_SETTINGS } from '../shared/gate.js';
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError, UsageError } from '../../errors.js';
import { withClient, withTransaction } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/identifiers.js';
import { WAL_END_SQL } from '../../postgres/lsn.js';
import type { FenceRecord, RevokedConnect } from './state.js';

export const FENCE_TRIGGER = 'pgferry_fence';
const FENCE_FUNCTION = 'refuse_writes';

/** Our own statements must work on a fenced source, whatever defaults a database carries. */
export const SOURCE_SETTINGS = FENCED_SOURCE_SETTINGS;

export interface FenceTable {
  oid: number;
  schema: string;
  name: string;
  /** r: table, p: partitioned table. */
  kind: 'r' | 'p';
}

export interface SessionInfo {
  pid: number;
  user: string | null;
  application: string;
  state: string | null;
  inTransaction: boolean;
}

export interface FencePlan {
  database: string;
  /** The role pgferry connects as. */
  role: string;
  superuser: boolean;
  /** server_version_num of the source. */
  serverVersion: number;
  /** Roles that keep CONNECT: pgferry's and the walsender's. */
  keep: string[];
  revoke: RevokedConnect[];
  grant: string[];
  tables: FenceTable[];
  sessions: SessionInfo[];
  /** Why pgferry cannot fence this database, if it cannot (missing privileges). */
  refusal: string | null;
}

/**
 * Every other client session of the database but `spare`; `terminate`: ended in the same statement (one round trip
 * inside the fence).
 */
async function sessions(c: pg.Client, terminate = false, spare: number[] = []): Promise<SessionInfo[]> {
  const { rows } = await c.query<{ pid: number; usename: string | null; application_name: string; state: string | null; in_tx: boolean }>(
    `SELECT pid, usename::text, application_name, state, xact_start IS NOT NULL AS in_tx${terminate ? ', pg_terminate_backend(pid) AS terminated' : ''}
       FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> ALL($1::int[]) AND backend_type = 'client backend'
      ORDER BY pid`,
    [spare],
  );
  return rows.map((r) => ({ pid: r.pid, user: r.usename, application: r.application_name, state: r.state, inTransaction: r.in_tx }));
}

/**
 * The tables to fence: the publication's (logical replication), or the scope's
 * own (the timestamp method has no publication). Partitions are added either way.
 */
export type FenceTables = { publication: string } | { relids: number[]; what: string };

/** What the fence will do in the connected source database (reads only). `slot`: its walsender's role keeps CONNECT. */
export async function planFence(c: pg.Client, database: string, which: FenceTables, slot: string | null): Promise<FencePlan> {
  const publication = 'publication' in which ? which.publication : null;
  const relids = 'relids' in which ? which.relids : [];
  const me = (
    await c.query<{ role: string; superuser: boolean; owner: boolean; version: number }>(
      `SELECT current_user::text AS role, r.rolsuper AS superuser, current_setting('server_version_num')::int AS version,
              (SELECT datdba FROM pg_database WHERE datname = current_database()) = r.oid AS owner
         FROM pg_roles r WHERE r.rolname = current_user`,
    )
  ).rows[0]!;
  const walsenders = (
    await c.query<{ usename: string; superuser: boolean }>(
      `SELECT DISTINCT r.usename::text AS usename, coalesce(a.rolsuper, false) AS superuser
         FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
         LEFT JOIN pg_roles a ON a.rolname = r.usename
        WHERE s.slot_name = $1`,
      [slot],
    )
  ).rows;
  const grants = (
    await c.query<{ grantee: string | null; grantable: boolean }>(
      `SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE (SELECT rolname::text FROM pg_roles WHERE oid = a.grantee) END AS grantee,
              a.is_grantable AS grantable
         FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
        WHERE d.datname = current_database() AND a.privilege_type = 'CONNECT'`,
    )
  ).rows;
  const tables = (
    await c.query<{ oid: number; schema: string; name: string; kind: 'r' | 'p'; can_trigger: boolean }>(
      `SELECT DISTINCT c.oid::int AS oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
              has_table_privilege(c.oid, 'TRIGGER') AS can_trigger
         FROM (SELECT pr.prrelid AS root FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid WHERE p.pubname = $1
               UNION SELECT unnest($2::oid[])) r
         CROSS JOIN LATERAL (SELECT r.root AS relid UNION SELECT pt.relid FROM pg_partition_tree(r.root) pt) m
         JOIN pg_class c ON c.oid = m.relid
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
        ORDER BY 2, 3`,
      [publication, relids],
    )
  ).rows;
  const keep = [me.role, ...walsenders.map((w) => w.usename)].filter((r, i, a) => a.indexOf(r) === i);
  const superusers = new Set([...(me.superuser ? [me.role] : []), ...walsenders.filter((w) => w.superuser).map((w) => w.usename)]);
  const explicit = new Set(grants.map((g) => g.grantee).filter((g): g is string => g !== null));
  const revoke = grants.filter((g) => g.grantee === null || !keep.includes(g.grantee));
  const grant = keep.filter((r) => !superusers.has(r) && !explicit.has(r));
  const problems: string[] = [];
  if (!me.superuser && !me.owner) problems.push(`role ${me.role} is neither a superuser nor the owner of database "${database}", so it cannot revoke CONNECT on it`);
  const noTrigger = tables.filter((t) => !t.can_trigger);
  if (noTrigger.length) {
    problems.push(`role ${me.role} may not create triggers on ${noTrigger.slice(0, 3).map((t) => displayName(t.schema, t.name)).join(', ')}${noTrigger.length > 3 ? ', …' : ''}`);
  }
  if (!tables.length) problems.push(`${publication !== null ? `publication ${publication}` : (which as { what: string }).what} has no tables in source database "${database}"`);
  return {
    database,
    role: me.role,
    superuser: me.superuser,
    serverVersion: me.version,
    keep,
    revoke,
    grant,
    tables: tables.map((t) => ({ oid: t.oid, schema: t.schema, name: t.name, kind: t.kind })),
    sessions: await sessions(c),
    refusal: problems.length ? problems.join('; ') : null,
  };
}

export function newFenceRecord(plan: FencePlan): FenceRecord {
  return {
    status: 'fencing',
    schema: FENCE_SCHEMA,
    revoked: plan.revoke,
    granted: plan.grant,
    tables: plan.tables.map((t) => `${t.schema}.${t.name}`),
    startedAt: new Date().toISOString(),
    fencedAt: null,
    sessionsEnded: 0,
    sessionsInTransaction: 0,
  };
}

function grantee(g: string | null): string {
  return g === null ? 'PUBLIC' : quoteIdent(g);
}

/** End every other client session of the database but `spare` (pgferry's own) and wait until they are gone. */
async function endSessions(c: pg.Client, timeoutMs: number, spare: number[]): Promise<{ ended: number; inTransaction: number }> {
  const list = await sessions(c, true, spare);
  if (!list.length) return { ended: 0, inTransaction: 0 };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ANY($1::int[])', [list.map((s) => s.pid)]);
    if (rows[0]!.n === 0) break;
    if (Date.now() > deadline) throw new OperationError(`${rows[0]!.n} sessions of the source did not end within ${Math.round(timeoutMs / 1000)} s of pg_terminate_backend`);
    // A backend exits within milliseconds of the signal (longer while it rolls back): a short sleep, since the wait is inside the fence.
    await sleep(2);
  }
  return { ended: list.length, inTransaction: list.filter((s) => s.inTransaction).length };
}

export interface FenceResult {
  sessionsEnded: number;
  sessionsInTransaction: number;
  /** Source WAL position read once the fence stands. */
  fenceLsn: string;
}

/**
 * Put the fence up in the connected source database. The caller has recorded
 * `newFenceRecord(plan)` (status fencing) before calling this. `spare`: backend pids of
 * pgferry's own other sessions, left open (the catch-up's).
 */
export async function fence(c: pg.Client, plan: FencePlan, record: FenceRecord, signal?: AbortSignal, spare: number[] = []): Promise<FenceResult> {
  const db = quoteIdent(plan.database);
  // 1. No new sessions for application roles.
  await oneTransaction(c, [
    ...record.granted.map((r) => `GRANT CONNECT ON DATABASE ${db} TO ${quoteIdent(r)}`),
    ...record.revoked.map((r) => `REVOKE CONNECT ON DATABASE ${db} FROM ${grantee(r.grantee)}`),
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(record.schema)}`,
    `CREATE OR REPLACE FUNCTION ${qualifiedName(record.schema, FENCE_FUNCTION)}() RETURNS trigger LANGUAGE plpgsql AS $fence$
       BEGIN
         RAISE EXCEPTION 'database "%" is fenced by pgferry cutover: it no longer takes writes', current_database()
           USING ERRCODE = 'read_only_sql_transaction', HINT = 'write to the new primary; pgferry cutover --abort lifts the fence';
       END $fence$`,
  ]);
  // 2 and 3. End sessions, then take the tables' locks for the triggers; a session that slipped in is ended again.
  let ended = 0;
  let inTransaction = 0;
  let lsn: string | undefined;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    const e = await endSessions(c, 10_000, spare);
    ended += e.ended;
    inTransaction += e.inTransaction;
    try {
      lsn = await oneTransaction(c, [
        "SET LOCAL lock_timeout = '2s'",
        // The fence's commit is flushed at once even where the server commits asynchronously: the walsender
        // sends only flushed WAL, and the catch-up waits for the position read right after.
        "SELECT set_config('synchronous_commit', 'local', true) WHERE current_setting('synchronous_commit') = 'off'",
        ...plan.tables.flatMap((t) => {
          const table = qualifiedName(t.schema, t.name);
          const events = t.kind === 'r' ? 'INSERT OR UPDATE OR DELETE OR TRUNCATE' : 'INSERT OR UPDATE OR DELETE';
          const create = `TRIGGER ${quoteIdent(FENCE_TRIGGER)} BEFORE ${events} ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ${qualifiedName(record.schema, FENCE_FUNCTION)}()`;
          // A rerun meets its own triggers. OR REPLACE (14+) is one catalog change where the drop and create are two.
          return plan.serverVersion >= 140000 ? [`CREATE OR REPLACE ${create}`] : [`DROP TRIGGER IF EXISTS ${quoteIdent(FENCE_TRIGGER)} ON ${table}`, `CREATE ${create}`];
        }),
      ], `SELECT ${WAL_END_SQL}::text AS lsn`);
      break;
    } catch (err) {
      if (sqlstate(err) !== '55P03' || attempt >= 10) throw err;
    }
  }
  return { sessionsEnded: ended, sessionsInTransaction: inTransaction, fenceLsn: lsn! };
}

/**
 * Statements (no parameters: every name quoted by identifiers.ts) as one transaction in one round trip:
 * every round trip of the fence lengthens the time writes are refused. An error skips the rest of the
 * string, COMMIT included, and leaves the block aborted: it is rolled back here. `after`: one query run
 * once COMMIT has returned, in the same round trip; the first column of its one row is returned.
 */
async function oneTransaction(c: pg.Client, statements: string[], after?: string): Promise<string | undefined> {
  try {
    const res = (await c.query(['BEGIN', ...statements, 'COMMIT', ...(after ? [after] : [])].join(';\n'))) as unknown as pg.QueryResult | pg.QueryResult[];
    if (!after) return undefined;
    const last = Array.isArray(res) ? res[res.length - 1]! : res;
    return Object.values(last.rows[0] as Record<string, string>)[0];
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** Take the fence down as recorded (idempotent: what is already gone is skipped). */
export async function unfence(c: pg.Client, database: string, record: FenceRecord): Promise<void> {
  const db = quoteIdent(database);
  for (let attempt = 1; ; attempt++) {
    try {
      await withTransaction(c, async () => {
        await c.query("SET LOCAL lock_timeout = '5s'");
        await c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(record.schema)} CASCADE`);
        for (const r of record.revoked) {
          await c.query(`GRANT CONNECT ON DATABASE ${db} TO ${grantee(r.grantee)}${r.grantable ? ' WITH GRANT OPTION' : ''}`);
        }
        for (const r of record.granted) {
          const { rows } = await c.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [r]);
          if (rows.length) await c.query(`REVOKE CONNECT ON DATABASE ${db} FROM ${quoteIdent(r)}`);
        }
      });
      return;
    } catch (err) {
      if (sqlstate(err) !== '55P03' || attempt >= 5) throw err;
    }
  }
}

/** Is any part of the fence in place in this database? (The trigger function's schema.) */
export async function fenceInPlace(c: pg.Client, schema = FENCE_SCHEMA): Promise<boolean> {
  const { rows } = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
  return rows.length > 0;
}

export function withSource<T>(conn: ResolvedConnInfo, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  return withClient(conn, fn, { label: 'the source', applicationName: 'pgferry cutover', settings: { ...SOURCE_SETTINGS }, quietDdl: true });
}

export function refuseUnfenceable(plans: FencePlan[]): void {
  const bad = plans.filter((p) => p.refusal);
  if (!bad.length) return;
  throw new UsageError(`cannot fence the source: ${bad.map((p) => p.refusal).join('; ')}`, {
    hint: 'run cutover as a superuser of the source (or the database owner with TRIGGER on the published tables); nothing was changed',
  });
}
