/**
 * State of the timestamp method, kept in the TARGET database (schema
 * `pgferry`), so that any machine can run the next round: per table the mark
 * the next round reads from and the last round's counts, and one row per
 * round. init --method timestamp writes the first marks; sync rounds advance
 * them; status reads them; cleanup drops the schema; verify ignores it.
 */
import type pg from 'pg';
import { qualifiedName, quoteIdent } from '../../postgres/identifiers.js';

export const STATE_SCHEMA = 'pgferry';
const TABLES = qualifiedName(STATE_SCHEMA, 'timestamp_tables');
const ROUNDS = qualifiedName(STATE_SCHEMA, 'timestamp_rounds');
const STATE_TABLE_NAMES = ['timestamp_tables', 'timestamp_rounds'];

/** A table pgferry keeps its own state in (verify and list leave these out). */
export function isStateTable(schema: string, name: string): boolean {
  return schema === STATE_SCHEMA && STATE_TABLE_NAMES.includes(name);
}

const CREATE_SQL = [
  `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(STATE_SCHEMA)}`,
  `CREATE TABLE IF NOT EXISTS ${TABLES} (
     schema_name text NOT NULL,
     table_name text NOT NULL,
     mark timestamptz NOT NULL,
     mode text NOT NULL DEFAULT 'init',
     timestamp_column text,
     round bigint NOT NULL DEFAULT 0,
     round_finished_at timestamptz,
     upserted bigint NOT NULL DEFAULT 0,
     deleted bigint NOT NULL DEFAULT 0,
     PRIMARY KEY (schema_name, table_name))`,
  // The oldest transaction ID still running when the mark was read (see InitMark.xmin); added after the first release.
  `ALTER TABLE ${TABLES} ADD COLUMN IF NOT EXISTS snapshot_xmin bigint`,
  `ALTER TABLE ${TABLES} ADD COLUMN IF NOT EXISTS read_on_standby boolean NOT NULL DEFAULT false`,
  `CREATE TABLE IF NOT EXISTS ${ROUNDS} (
     round bigint PRIMARY KEY,
     started_at timestamptz NOT NULL DEFAULT now(),
     finished_at timestamptz,
     next_mark timestamptz NOT NULL,
     detect_deletes boolean NOT NULL,
     upserted bigint NOT NULL DEFAULT 0,
     deleted bigint NOT NULL DEFAULT 0)`,
];

export async function ensureStateSchema(c: pg.Client): Promise<void> {
  for (const sql of CREATE_SQL) await c.query(sql);
}

export interface TableMark {
  schema: string;
  name: string;
  /** Text (UTC, microseconds kept). */
  mark: string;
  mode: string;
  timestampColumn: string | null;
  round: number;
  roundFinishedAt: string | null;
  upserted: number;
  deleted: number;
  /** Seconds between the mark and now() on the target. */
  ageSeconds: number;
  /** InitMark.xmin of the read that gave the mark, or null (state written before it was recorded). */
  xmin: string | null;
  /** The mark was read on a standby: its timestamp does not cover the primary's open transactions, its xmin does. */
  standby: boolean;
}

/** Where the next read of a table starts. */
export interface InitMark {
  /** The safe lower bound by timestamp (shared/timestamp-bound.ts). */
  mark: string;
  /**
   * The oldest transaction ID (64-bit, as text) still running on the primary when the bound was read: every row a
   * later snapshot sees and this one did not was written by a transaction at or above it (what a standby uses).
   */
  xmin: string;
  /** Read on a standby (see TableMark.standby). */
  standby: boolean;
}

/** init: the first mark of tables copied under one snapshot (a resume overwrites the marks of the tables it copies again). */
export async function writeInitMarks(c: pg.Client, tables: readonly { schema: string; name: string }[], mark: InitMark): Promise<void> {
  await ensureStateSchema(c);
  await c.query(
    `INSERT INTO ${TABLES} (schema_name, table_name, mark, mode, snapshot_xmin, read_on_standby)
     SELECT s, t, $3::timestamptz, 'init', $4::bigint, $5 FROM unnest($1::text[], $2::text[]) u(s, t)
     ON CONFLICT (schema_name, table_name) DO UPDATE
       SET mark = EXCLUDED.mark, snapshot_xmin = EXCLUDED.snapshot_xmin, read_on_standby = EXCLUDED.read_on_standby, mode = 'init', round = 0, round_finished_at = NULL, upserted = 0, deleted = 0`,
    [tables.map((t) => t.schema), tables.map((t) => t.name), mark.mark, mark.xmin, mark.standby],
  );
}

/** After a table's last batch of a round: its next mark and this round's counts. */
export async function advanceMark(
  c: pg.Client, t: { schema: string; name: string },
  m: InitMark & { mode: string; column: string | null; round: number; upserted: number; deleted: number },
): Promise<void> {
  await c.query(
    `INSERT INTO ${TABLES} AS x (schema_name, table_name, mark, mode, timestamp_column, round, round_finished_at, upserted, deleted, snapshot_xmin, read_on_standby)
     VALUES ($1, $2, $3::timestamptz, $4, $5, $6, now(), $7, $8, $9::bigint, $10)
     ON CONFLICT (schema_name, table_name) DO UPDATE
       SET mark = EXCLUDED.mark, mode = EXCLUDED.mode, timestamp_column = EXCLUDED.timestamp_column, round = EXCLUDED.round,
           round_finished_at = EXCLUDED.round_finished_at, upserted = EXCLUDED.upserted, deleted = EXCLUDED.deleted,
           snapshot_xmin = EXCLUDED.snapshot_xmin, read_on_standby = EXCLUDED.read_on_standby`,
    [t.schema, t.name, m.mark, m.mode, m.column, m.round, m.upserted, m.deleted, m.xmin, m.standby],
  );
}

/** Every table's mark, or [] when this database holds no timestamp state. */
export async function readMarks(c: pg.Client): Promise<TableMark[]> {
  if (!(await hasState(c))) return [];
  const { rows } = await c.query<{
    schema_name: string; table_name: string; mark: string; mode: string; timestamp_column: string | null; round: string;
    round_finished_at: string | null; upserted: string; deleted: string; age: number; xmin: string | null; standby: string | null;
  }>(
    `SELECT schema_name, table_name, mark::text AS mark, mode, timestamp_column, round::text AS round,
            round_finished_at::text AS round_finished_at, upserted::text AS upserted, deleted::text AS deleted,
            EXTRACT(EPOCH FROM (now() - mark))::float8 AS age, to_jsonb(x) ->> 'snapshot_xmin' AS xmin,
            to_jsonb(x) ->> 'read_on_standby' AS standby
       FROM ${TABLES} x ORDER BY schema_name, table_name`,
  );
  return rows.map((r) => ({
    schema: r.schema_name, name: r.table_name, mark: r.mark, mode: r.mode, timestampColumn: r.timestamp_column, round: Number(r.round),
    roundFinishedAt: r.round_finished_at, upserted: Number(r.upserted), deleted: Number(r.deleted), ageSeconds: r.age,
    xmin: r.xmin, standby: r.standby === 'true',
  }));
}

export async function hasState(c: pg.Client): Promise<boolean> {
  const { rows } = await c.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [TABLES]);
  return rows[0]!.ok;
}

export interface RoundRecord {
  round: number;
  startedAt: string;
  finishedAt: string | null;
  nextMark: string;
  detectDeletes: boolean;
  upserted: number;
  deleted: number;
}

/** Start a round: its number is one more than the last one recorded. */
export async function startRound(c: pg.Client, nextMark: string, detectDeletes: boolean): Promise<number> {
  await ensureStateSchema(c);
  const { rows } = await c.query<{ round: string }>(
    `INSERT INTO ${ROUNDS} (round, next_mark, detect_deletes)
     SELECT COALESCE(max(round), 0) + 1, $1::timestamptz, $2 FROM ${ROUNDS}
     RETURNING round::text AS round`,
    [nextMark, detectDeletes],
  );
  return Number(rows[0]!.round);
}

export async function finishRound(c: pg.Client, round: number, upserted: number, deleted: number): Promise<void> {
  await c.query(`UPDATE ${ROUNDS} SET finished_at = now(), upserted = $2, deleted = $3 WHERE round = $1`, [round, upserted, deleted]);
}

/** The last round that finished, or null. */
export async function lastRound(c: pg.Client): Promise<RoundRecord | null> {
  if (!(await hasState(c))) return null;
  const { rows } = await c.query<{ round: string; started_at: string; finished_at: string | null; next_mark: string; detect_deletes: boolean; upserted: string; deleted: string }>(
    `SELECT round::text AS round, started_at::text AS started_at, finished_at::text AS finished_at, next_mark::text AS next_mark,
            detect_deletes, upserted::text AS upserted, deleted::text AS deleted
       FROM ${ROUNDS} WHERE finished_at IS NOT NULL ORDER BY round DESC LIMIT 1`,
  );
  const r = rows[0];
  return r
    ? { round: Number(r.round), startedAt: r.started_at, finishedAt: r.finished_at, nextMark: r.next_mark, detectDeletes: r.detect_deletes, upserted: Number(r.upserted), deleted: Number(r.deleted) }
    : null;
}

/** Drop pgferry's state tables, and the schema once nothing else is in it (a user's own objects there are left alone). */
export async function dropStateSchema(c: pg.Client): Promise<void> {
  await c.query(`DROP TABLE IF EXISTS ${TABLES}, ${ROUNDS}`);
  const { rows } = await c.query<{ empty: boolean }>(
    `SELECT NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_namespace n ON n.oid = d.refobjid
                         WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = $1) AS empty`,
    [STATE_SCHEMA],
  );
  if (rows[0]!.empty) await c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(STATE_SCHEMA)}`);
}
