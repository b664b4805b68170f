/**
 * --method timestamp reading a hot standby (pg_basebackup of a primary with
 * wal_level = replica): validate, init and rounds read the standby while a
 * writer works on the primary. A long transaction on the primary takes its
 * start time (now()) before a round, writes only after it and commits after
 * it: the standby's pg_stat_activity never shows it, so a bound by timestamp
 * would lose its rows; rounds on a standby read by transaction ID instead.
 * After the writer stops and the standby has replayed everything, a
 * --detect-deletes round makes the target exactly equal to the primary.
 * cutover against the standby is refused, naming the primary.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runTimestampSync, type TimestampSyncOptions } from '../../src/pipeline/sync/timestamp/index.js';
import { runValidate } from '../../src/pipeline/validate/run.js';
import { WAL_END_SQL } from '../../src/postgres/lsn.js';
import { runCliProcess } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { startLoad, waitFor } from '../support/writer.js';

const clusters = useClusters();
let primary: LocalCluster;
let standby: LocalCluster;
let tgt: LocalCluster;
let dir: string;

beforeAll(async () => {
  [primary, tgt] = await Promise.all([clusters.start({ name: 'ts-primary', settings: { wal_level: 'replica' } }), clusters.start({ name: 'ts-tgt' })]);
  standby = await clusters.start({ name: 'ts-standby', standbyOf: primary, settings: { hot_standby_feedback: 'on' } });
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-ts-standby-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SCHEMA = `
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
  CREATE TABLE sb_items (id int PRIMARY KEY, qty int NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON sb_items FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO sb_items SELECT g, g % 10, md5(g::text) FROM generate_series(1, 2000) g;
  CREATE TABLE sb_orders (id bigserial PRIMARY KEY, item int NOT NULL REFERENCES sb_items, total numeric(12,2) NOT NULL,
                          updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON sb_orders FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO sb_orders (item, total) SELECT 1 + g % 2000, g FROM generate_series(1, 1000) g;
`;
const TABLES = ['sb_items', 'sb_orders'].map((name) => ({ schema: 'public', name }));

/**
 * Until the standby has replayed everything the primary had written when called. The end of inserted WAL, not
 * pg_current_wal_lsn(): with synchronous_commit = off (the test clusters) the last commits can still sit in WAL
 * buffers, past the written position, and a round would then run without them.
 */
async function caughtUp(): Promise<void> {
  const lsn = (await primary.query<{ lsn: string }>(`SELECT ${WAL_END_SQL}::text AS lsn`))[0]!.lsn;
  await waitFor('the standby to replay', async () =>
    (await standby.query<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0]!.ok);
}

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

describe('sync --method timestamp from a hot standby', () => {
  it('validate, init and rounds read the standby; a long primary transaction across a round is not lost; cutover is refused', async () => {
    const db = await createDatabase(primary, undefined, SCHEMA);
    await caughtUp();
    const round = (extra: Partial<TimestampSyncOptions> = {}) => runTimestampSync({
      source: standby.conn(db), target: tgt.conn(db), stateDir: dir, columns: { fallback: 'updated_at', perTable: {} }, batchSize: 50,
      detectDeletes: false, overlapSeconds: 0, intervalSeconds: 0, signal: new AbortController().signal, ...extra,
    });

    const v = await runValidate({ source: standby.conn(db), target: tgt.conn(db), scope: emptyScope(), method: 'timestamp' });
    expect(v.checks.filter((c) => c.status === 'fail'), JSON.stringify(v.checks.filter((c) => c.status === 'fail'))).toEqual([]);
    expect(v.checks.find((c) => c.id === 'timestamp.standby')?.status).toBe('ok');

    await runInit({
      source: standby.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: true, method: 'timestamp',
      noOwner: false, noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
      signal: new AbortController().signal,
    });

    const writer = startLoad(primary.conn(db), async (c) => {
      await c.query('UPDATE sb_items SET qty = qty + 1 WHERE id = $1', [101 + rnd(1900)]);
      await c.query('INSERT INTO sb_orders (item, total) VALUES ($1, $2)', [1 + rnd(2000), rnd(1000)]);
      await c.query('DELETE FROM sb_orders WHERE id = (SELECT min(id) + $1 FROM sb_orders)', [rnd(30)]);
    }, { pauseMs: 5 });

    /** A transaction that takes its start time (the stamp of its rows) now, writes after `during` and commits after it. */
    const longTransaction = async (note: string, during: () => Promise<unknown>) => {
      const c = primary.conn(db);
      const long = new pg.Client({ host: c.host, port: c.port, user: c.user, password: c.password ?? '', database: db });
      await long.connect();
      try {
        await long.query('BEGIN');
        await long.query('SELECT now()');
        await new Promise((r) => setTimeout(r, 300));
        await during();
        await long.query('UPDATE sb_items SET qty = qty + 1000, note = $1 WHERE id <= 50', [note]);
        await long.query('COMMIT');
      } finally {
        await long.end();
      }
    };
    const noted = async (note: string) => (await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM sb_items WHERE note = $1', [note], db))[0]!.n;

    // The long transaction takes its start time (the stamp of its rows) now, writes after the standby's round
    // has read its bound and snapshot, and commits after the round.
    await longTransaction('long transaction', () => round());
    await new Promise((r) => setTimeout(r, 300));
    await caughtUp();
    await round();
    expect(await writer.stop()).toBeGreaterThan(10);
    await caughtUp();
    // sb_items has no deletes: a plain round makes it equal; then one with delete detection, everything.
    await round();
    expect(await noted('long transaction')).toBe(50);
    await round({ detectDeletes: true });
    const [s, t] = [await tableHashes(primary.conn(db), TABLES), await tableHashes(tgt.conn(db), TABLES)];
    expect(t).toEqual(s);

    // The primary after a round on the standby: that round's mark by timestamp does not cover the primary's open
    // transactions, its transaction ID does.
    await longTransaction('long, then the primary', () => round());
    await round({ source: primary.conn(db) });
    expect(await noted('long, then the primary')).toBe(50);

    // cutover must fence the primary: refused against the standby before anything changes.
    const env = { PGFERRY_SOURCE: standby.url(db), PGFERRY_TARGET: tgt.url(db) };
    const cut = await runCliProcess(['cutover', '--yes', '--no-interactive', '--state-dir', dir], { env });
    expect(cut.exitCode, cut.stderr).toBe(2);
    expect(cut.stderr).toMatch(/standby.*primary/s);
    expect(cut.stderr).toContain(String(primary.port));
    expect((await standby.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'pgferry_fence'", [], db))[0]!.n).toBe(0);
  });
});
