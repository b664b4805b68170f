/**
 * What `--method timestamp` needs instead of logical replication: to see when
 * every session's transaction started (the safe lower bound of a round), a
 * key on every table (upserts), and per table a timestamp column kept
 * current by a trigger (otherwise the table is compared chunk by chunk every
 * round, which works but reads it whole). The replication checks (wal_level,
 * slots, senders, REPLICATION, publication rights, replica identity, row
 * filters of publications, subscriptions on the target) do not apply.
 */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { displayName, quoteIdent } from '../../postgres/identifiers.js';
import { canReadAllActivity } from '../shared/timestamp-bound.js';
import { fail, ok, warn, type CheckResult } from './types.js';

/** Checks that only logical replication needs, left out with --method timestamp. */
export const LOGICAL_ONLY_CHECKS = new Set([
  'source.wal_level', 'source.replication_slots', 'source.wal_senders', 'source.max_slot_wal_keep_size', 'source.replication_privilege',
  'source.recovery', 'tables.publication', 'tables.publication_database', 'tables.replica_identity', 'tables.row_filter', 'tables.data_rules_stream',
  'tables.unlogged', 'target.create_subscription', 'target.lock_table', 'target.logical_replication_workers', 'target.worker_processes',
]);

/** The source role sees every session's xact_start; on a standby the primary's transactions are not visible at all. */
export async function checkActivity(c: pg.Client, user: string, inRecovery: boolean): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  // On a standby pg_stat_activity shows only its own read-only sessions: rounds do not use it there (below).
  if (!inRecovery) out.push(
    (await canReadAllActivity(c))
      ? ok('timestamp.activity', 'source', `${user} sees when every session's transaction started (pg_stat_activity)`)
      : fail('timestamp.activity', 'source', `${user} cannot see other roles' transactions in pg_stat_activity: a round could not know how far back to read`,
        `GRANT pg_read_all_stats TO ${quoteIdent(user)};`),
  );
  if (inRecovery) {
    // The primary's transactions are invisible in a standby's pg_stat_activity: rounds read by transaction ID
    // instead (every row written since the previous round's oldest running transaction), which scans each table.
    const { rows } = await c.query<{ feedback: string; delay: string }>(
      "SELECT current_setting('hot_standby_feedback') AS feedback, current_setting('max_standby_streaming_delay') AS delay",
    );
    const f = rows[0]!;
    out.push(
      f.feedback === 'on' || f.delay === '-1'
        ? ok('timestamp.standby', 'source', 'the source is a standby: rounds read rows by transaction ID (a full scan of each table per round); cutover must be run against the primary')
        : warn('timestamp.standby', 'source', `the source is a standby with hot_standby_feedback off (max_standby_streaming_delay ${f.delay}): a round's snapshot can be cancelled by replay ("conflict with recovery")`,
          'ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf(); on the standby'),
    );
  }
  return out;
}

interface ColumnFacts {
  table: string;
  column: string | null;
  type: string | null;
  /** No row can hold a NULL here (a validated NOT NULL; PostgreSQL 18 can add one NOT VALID). */
  notNull: boolean;
  trigger: boolean;
}

/** Per table: the timestamp column, its type and NOT NULL, and whether a row trigger fires on UPDATE (the one that should stamp it). */
async function columnFacts(c: pg.Client, tables: readonly ScopeTable[], column: string): Promise<ColumnFacts[]> {
  const { rows } = await c.query<{ oid: number; trigger: boolean }>(
    `SELECT t.oid::int AS oid,
            EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgenabled <> 'D'
                     AND (g.tgtype & 1) = 1 AND (g.tgtype & 2) = 2 AND (g.tgtype & 16) = 16) AS trigger
       FROM unnest($1::oid[]) t(oid)`,
    [tables.map((t) => t.oid)],
  );
  const trig = new Map(rows.map((r) => [r.oid, r.trigger]));
  return tables.map((t) => {
    const col = t.columns.find((x) => x.name === column);
    return { table: displayName(t.schema, t.name), column: col?.name ?? null, type: col?.type ?? null, notNull: !!col?.notNullValid, trigger: !!trig.get(t.oid) };
  });
}

/** Keys, timestamp columns and their triggers, for the tables in scope. */
export async function checkTimestampTables(c: pg.Client, scope: readonly ScopeTable[], column: string): Promise<CheckResult[]> {
  const tables = scope.filter((t) => !t.schemaOnly);
  const out: CheckResult[] = [];
  const keyless = tables.filter((t) => !(t.primaryKey ?? t.uniqueKey)).map((t) => displayName(t.schema, t.name));
  out.push(
    keyless.length
      ? fail('timestamp.keys', 'source', `${keyless.length} table${keyless.length > 1 ? 's have' : ' has'} no primary key or unique NOT NULL key: rows cannot be upserted`,
        'exclude them (--exclude-tables), add a primary key, or use logical replication', { details: keyless })
      : ok('timestamp.keys', 'source', `every table has a key (${tables.length} tables)`),
  );
  const facts = await columnFacts(c, tables, column);
  const missing = facts.filter((f) => !f.column || !/^timestamp/.test(f.type ?? '')).map((f) => f.table);
  out.push(
    missing.length
      ? warn('timestamp.columns', 'source', `${missing.length} table${missing.length > 1 ? 's have' : ' has'} no timestamp column "${column}": compared chunk by chunk every round (reads the whole table)`,
        'add the column with a trigger, or name the table\'s own column in [databases.NAME.timestamp_columns]', { details: missing })
      : ok('timestamp.columns', 'source', `every table has the timestamp column "${column}"`),
  );
  const stamped = facts.filter((f) => f.column && /^timestamp/.test(f.type ?? ''));
  const untriggered = stamped.filter((f) => !f.trigger).map((f) => f.table);
  if (untriggered.length) {
    out.push(warn('timestamp.triggers', 'source', `${untriggered.length} table${untriggered.length > 1 ? 's have' : ' has'} no BEFORE UPDATE row trigger: "${column}" changes only when the application sets it`,
      `CREATE TRIGGER … BEFORE INSERT OR UPDATE … FOR EACH ROW EXECUTE FUNCTION a function setting NEW.${quoteIdent(column)} := now(); or give sync a larger --overlap`, { details: untriggered }));
  }
  // Rounds close each batch over the other unique indexes (sync/timestamp/uniques.ts); exclusion constraints cannot be.
  const { rows: excl } = await c.query<{ oid: number; name: string }>(
    `SELECT i.indrelid::int AS oid, c.relname AS name FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
      WHERE i.indisexclusion AND i.indrelid = ANY($1::oid[]) ORDER BY 2`,
    [tables.map((t) => t.oid)],
  );
  if (excl.length) {
    const byOid = new Map(tables.map((t) => [t.oid, displayName(t.schema, t.name)]));
    out.push(fail('timestamp.exclusion', 'source', `${excl.length} exclusion constraint${excl.length > 1 ? 's' : ''}: a round cannot keep ${excl.length > 1 ? 'them' : 'it'} consistent while rows change`,
      'exclude those tables (--exclude-tables), or use logical replication', { details: excl.map((e) => `${byOid.get(e.oid) ?? '?'} (${e.name})`) }));
  }
  const nullable = stamped.filter((f) => !f.notNull).map((f) => f.table);
  if (nullable.length) {
    out.push(warn('timestamp.nullable', 'source', `"${column}" may be NULL in ${nullable.length} table${nullable.length > 1 ? 's' : ''}: such rows are read again every round`,
      `ALTER TABLE … ALTER COLUMN ${quoteIdent(column)} SET NOT NULL (after filling it)`, { details: nullable }));
  }
  return out;
}
