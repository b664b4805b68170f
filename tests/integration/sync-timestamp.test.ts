/**
 * sync --method timestamp against a source with wal_level = replica: init
 * --method timestamp, then rounds under a writer (inserts, updates stamped by
 * a trigger with now(), deletes) and a long transaction that updates rows,
 * stays open past a round and commits after it: its rows carry a timestamp
 * older than that round, which a naive "newer than the last maximum" would
 * lose. After the writer stops, one plain round makes the tables without
 * deletes exactly equal; a --detect-deletes round makes all tables equal.
 * Also: rows sharing a timestamp across a batch boundary, a table without the
 * column, keyless tables refused, and a round killed with kill -9 mid-round.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import { InterruptedError, PgferryError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit, type InitOptions } from '../../src/pipeline/init/run.js';
import { runTimestampSync, type TimestampSyncOptions } from '../../src/pipeline/sync/timestamp/index.js';
import { runValidate } from '../../src/pipeline/validate/run.js';
import { readMarks } from '../../src/pipeline/shared/timestamp-state.js';
import { withClient } from '../../src/postgres/connect.js';
import { runCliProcess } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { startLoad, waitFor } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'ts-src', settings: { wal_level: 'replica' } }), clusters.start({ name: 'ts-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-ts-'));
  tmpDirs.push(d);
  return d;
}

const STAMP = `
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
`;

/** ts_items: updates only; ts_orders: inserts, updates, deletes, child of ts_customers; ts_plain: no timestamp column. */
const SCHEMA = `${STAMP}
  CREATE TABLE ts_customers (id int PRIMARY KEY, name text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_customers FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO ts_customers SELECT g, 'c' || g FROM generate_series(1, 200) g;
  CREATE TABLE ts_items (id int PRIMARY KEY, qty int NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_items FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO ts_items SELECT g, g % 10, md5(g::text) FROM generate_series(1, 3000) g;
  CREATE TABLE ts_orders (id bigserial PRIMARY KEY, customer int NOT NULL REFERENCES ts_customers, total numeric(12,2) NOT NULL,
                          "Mixed Case" text, updated_at timestamptz NOT NULL DEFAULT now());
  CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_orders FOR EACH ROW EXECUTE FUNCTION stamp();
  INSERT INTO ts_orders (customer, total) SELECT 1 + g % 200, g * 1.5 FROM generate_series(1, 2000) g;
  CREATE TABLE ts_plain (id int PRIMARY KEY, v int NOT NULL);
  INSERT INTO ts_plain SELECT g, 0 FROM generate_series(1, 500) g;
`;

function initOptions(db: string, dir: string): InitOptions {
  return {
    source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: true, method: 'timestamp',
    noOwner: false, noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
    signal: new AbortController().signal,
  };
}

function roundOptions(db: string, dir: string, extra: Partial<TimestampSyncOptions> = {}): TimestampSyncOptions {
  return {
    source: src.conn(db), target: tgt.conn(db), stateDir: dir, columns: { fallback: 'updated_at', perTable: {} }, batchSize: 100,
    detectDeletes: false, overlapSeconds: 0, intervalSeconds: 0, signal: new AbortController().signal, ...extra,
  };
}

function rnd(n: number): number {
  return Math.floor(Math.random() * n);
}

async function hashes(db: string, names: string[]) {
  const only = names.map((name) => ({ schema: 'public', name }));
  return [await tableHashes(src.conn(db), only), await tableHashes(tgt.conn(db), only)] as const;
}

describe('sync --method timestamp', () => {
  it('loses no row of a long transaction that commits after a round; deletes with --detect-deletes; all tables equal', async () => {
    const db = await createDatabase(src, undefined, SCHEMA);
    const dir = await stateDir();
    const init = await runInit(initOptions(db, dir));
    expect(init.databases[0]!.slot).toBeNull();
    const marks = await withClient(tgt.conn(db), readMarks);
    expect(marks.map((m) => m.name).sort()).toEqual(['ts_customers', 'ts_items', 'ts_orders', 'ts_plain']);

    const writer = startLoad(src.conn(db), async (c, i) => {
      await c.query('UPDATE ts_items SET qty = qty + 1 WHERE id = $1', [101 + rnd(2900)]);
      await c.query('INSERT INTO ts_orders (customer, total, "Mixed Case") VALUES ($1, $2, $3)', [1 + rnd(200), rnd(1000), `o${i}`]);
      await c.query('UPDATE ts_orders SET total = total + 1 WHERE id = (SELECT max(id) - $1 FROM ts_orders)', [rnd(40)]);
      if (i % 3 === 0) await c.query('DELETE FROM ts_orders WHERE id = (SELECT min(id) + $1 FROM ts_orders)', [rnd(30)]);
      if (i % 5 === 0) await c.query('UPDATE ts_customers SET name = name || $1 WHERE id = $2', ['+', 1 + rnd(200)]);
      await c.query('UPDATE ts_plain SET v = v + 1 WHERE id = $1', [1 + rnd(500)]);
      if (i % 4 === 0) await c.query('INSERT INTO ts_plain VALUES ((SELECT max(id) + 1 FROM ts_plain), 0)');
      if (i % 6 === 0) await c.query('DELETE FROM ts_plain WHERE id = (SELECT max(id) - $1 FROM ts_plain)', [rnd(10)]);
    }, { pauseMs: 5 });

    // The long transaction: its rows are stamped with its start, before the next round begins.
    const c = src.conn(db);
    const long = new pg.Client({ host: c.host, port: c.port, user: c.user, password: c.password ?? '', database: db });
    await long.connect();
    try {
      await long.query('BEGIN');
      await long.query('UPDATE ts_items SET qty = qty + 1000, note = $1 WHERE id <= 50', ['long transaction']);
      const started = (await long.query<{ t: string }>('SELECT now()::text AS t')).rows[0]!.t;
      await new Promise((r) => setTimeout(r, 300));
      const during = await runTimestampSync(roundOptions(db, dir));
      const d1 = during.databases[0]!;
      expect(d1.oldestOpenTransaction).not.toBeNull();
      // The bound does not move past the start of the transaction still open.
      const cmp = await src.query<{ ok: boolean }>('SELECT $1::timestamptz <= $2::timestamptz AS ok', [d1.nextMark, started]);
      expect(cmp[0]!.ok).toBe(true);
      await long.query('COMMIT');
    } finally {
      await long.end();
    }
    await new Promise((r) => setTimeout(r, 500));
    await runTimestampSync(roundOptions(db, dir));
    await new Promise((r) => setTimeout(r, 300));
    const commits = await writer.stop();
    expect(commits).toBeGreaterThan(10);

    const plain = await runTimestampSync(roundOptions(db, dir));
    expect(plain.notes.join(' ')).toMatch(/deletes are not tracked/);
    const plainTable = plain.databases[0]!.tables.find((t) => t.name === 'ts_plain')!;
    expect(plainTable.mode).toBe('compared');
    // Tables without deletes (and the compared one) are exactly equal after a plain round.
    const [s1, t1] = await hashes(db, ['ts_items', 'ts_customers', 'ts_plain']);
    expect(t1).toEqual(s1);
    const longRows = await tgt.query<{ n: number }>("SELECT count(*)::int AS n FROM ts_items WHERE note = 'long transaction'", [], db);
    expect(longRows[0]!.n).toBe(50);

    const withDeletes = await runTimestampSync(roundOptions(db, dir, { detectDeletes: true }));
    expect(withDeletes.databases[0]!.tables.find((t) => t.name === 'ts_orders')!.deleted).toBeGreaterThan(0);
    const [s2, t2] = await hashes(db, ['ts_items', 'ts_customers', 'ts_orders', 'ts_plain']);
    expect(t2).toEqual(s2);

    // The state is in the target: the last round's counts per table.
    const after = await withClient(tgt.conn(db), readMarks);
    expect(after.find((m) => m.name === 'ts_orders')!.round).toBe(withDeletes.databases[0]!.round);
  });

  it('unique values that swap or change hands between rows across rounds converge (with the writer), partial and expression indexes too', async () => {
    // ts_users: e-mails unique, handles unique case-insensitively where set; ts_tags (compared): codes unique.
    const db = await createDatabase(src, undefined, `${STAMP}
      CREATE TABLE ts_users (id int PRIMARY KEY, email text NOT NULL UNIQUE, handle text, updated_at timestamptz NOT NULL DEFAULT now());
      CREATE UNIQUE INDEX ts_users_handle ON ts_users (lower(handle)) WHERE handle IS NOT NULL;
      CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON ts_users FOR EACH ROW EXECUTE FUNCTION stamp();
      INSERT INTO ts_users SELECT g, 'u' || g || '@x', CASE WHEN g % 4 <> 0 THEN 'H' || g END FROM generate_series(1, 300) g;
      CREATE TABLE ts_tags (id int PRIMARY KEY, code text NOT NULL UNIQUE);
      INSERT INTO ts_tags SELECT g, 'code' || g FROM generate_series(1, 100) g;
    `);
    const dir = await stateDir();
    await runInit(initOptions(db, dir));
    /** Swap the unique values of two rows (through a temporary value: a unique index checks each row). */
    const swap = async (c: pg.Client, table: string, col: string, a: number, b: number) => {
      if (a === b) return;
      const value = async (id: number) => (await c.query<{ v: string }>(`SELECT ${col} AS v FROM ${table} WHERE id = $1`, [id])).rows[0]!.v;
      const [va, vb] = [await value(a), await value(b)];
      await c.query(`UPDATE ${table} SET ${col} = 'swap-tmp' WHERE id = $1`, [a]);
      await c.query(`UPDATE ${table} SET ${col} = $1 WHERE id = $2`, [va, b]);
      await c.query(`UPDATE ${table} SET ${col} = $1 WHERE id = $2`, [vb, a]);
    };
    // First, certain collisions: a swap (in one batch and across batches), a hand-over to a row in a later batch, a
    // case-changing hand-over of a handle, and a hand-over whose giver is deleted.
    await src.query(`
      BEGIN;
      UPDATE ts_users SET email = 'tmp' WHERE id = 1; UPDATE ts_users SET email = 'u1@x' WHERE id = 2; UPDATE ts_users SET email = 'u2@x' WHERE id = 1;
      UPDATE ts_users SET email = 'tmp' WHERE id = 3; UPDATE ts_users SET email = 'u3@x' WHERE id = 250; UPDATE ts_users SET email = 'u250@x' WHERE id = 3;
      UPDATE ts_users SET email = 'gone@x' WHERE id = 200; UPDATE ts_users SET email = 'u200@x' WHERE id = 10;
      UPDATE ts_users SET handle = 'other' WHERE id = 5; UPDATE ts_users SET handle = 'h5' WHERE id = 250;
      DELETE FROM ts_users WHERE id = 7; UPDATE ts_users SET email = 'u7@x' WHERE id = 299;
      UPDATE ts_tags SET code = 'tmp' WHERE id = 1; UPDATE ts_tags SET code = 'code1' WHERE id = 90; UPDATE ts_tags SET code = 'code90' WHERE id = 1;
      COMMIT;`, [], db);
    await runTimestampSync(roundOptions(db, dir, { batchSize: 7 }));
    const [s0, t0] = await hashes(db, ['ts_tags']);
    expect(t0).toEqual(s0);

    let next = 1000;
    const writer = startLoad(src.conn(db), async (c, i) => {
      const q = (text: string, values: unknown[]) => c.query(text, values);
      const n = next++;
      const ids = (await c.query<{ id: number }>('SELECT id FROM ts_users ORDER BY random() LIMIT 2')).rows.map((r) => r.id);
      const [a, b] = [ids[0]!, ids[1]!];
      switch (i % 5) {
        case 0: await swap(c, 'ts_users', 'email', a, b); break;
        case 1: { // a hands its e-mail to b; b's old one is abandoned
          const given = (await c.query<{ e: string }>('SELECT email AS e FROM ts_users WHERE id = $1', [a])).rows[0]!.e;
          await q("UPDATE ts_users SET email = 'n' || $2::int || '@x' WHERE id = $1", [a, n]);
          await q('UPDATE ts_users SET email = $1 WHERE id = $2', [given, b]);
          break;
        }
        case 2: // a new row takes a deleted row's e-mail and (differently cased) handle
          await q('WITH d AS (DELETE FROM ts_users WHERE id = $1 RETURNING email, handle) INSERT INTO ts_users (id, email, handle) SELECT $2, email, upper(handle) FROM d', [a, n]);
          break;
        case 3: // b takes a's handle in another case, a takes a new one
          {
            const h = (await c.query<{ h: string | null }>('SELECT handle AS h FROM ts_users WHERE id = $1', [a])).rows[0]!.h;
            await q("UPDATE ts_users SET handle = 'h-' || $2::int WHERE id = $1", [a, n]);
            await q('UPDATE ts_users SET handle = upper($1) WHERE id = $2', [h, b]);
          }
          break;
        default: await swap(c, 'ts_tags', 'code', 1 + rnd(100), 1 + rnd(100));
      }
    }, { pauseMs: 2 });
    for (let r = 0; r < 3; r++) {
      await new Promise((res) => setTimeout(res, 250));
      await runTimestampSync(roundOptions(db, dir, { batchSize: 7, detectDeletes: r === 1 }));
    }
    expect(await writer.stop()).toBeGreaterThan(20);
    await runTimestampSync(roundOptions(db, dir, { batchSize: 7, detectDeletes: true }));
    const [s, t] = await hashes(db, ['ts_users', 'ts_tags']);
    expect(t).toEqual(s);
  });

  it('rows sharing one timestamp across batch boundaries all arrive', async () => {
    const db = await createDatabase(src, undefined, SCHEMA);
    const dir = await stateDir();
    await runInit(initOptions(db, dir));
    // One transaction: 333 rows with the same updated_at, read in batches of 7.
    await src.query("UPDATE ts_items SET note = 'same stamp' WHERE id % 9 = 0", [], db);
    const r = await runTimestampSync(roundOptions(db, dir, { batchSize: 7 }));
    expect(r.databases[0]!.tables.find((t) => t.name === 'ts_items')!.upserted).toBeGreaterThanOrEqual(333);
    const [s, t] = await hashes(db, ['ts_items']);
    expect(t).toEqual(s);
  });

  it('--interval runs rounds until interrupted, each recorded in the target', async () => {
    const db = await createDatabase(src, undefined, SCHEMA);
    const dir = await stateDir();
    await runInit(initOptions(db, dir));
    const ac = new AbortController();
    const running = runTimestampSync(roundOptions(db, dir, { intervalSeconds: 0.5, signal: ac.signal }));
    await src.query('UPDATE ts_items SET qty = qty + 1 WHERE id <= 5', [], db);
    const updated = new Date().toISOString();
    // Two finished rounds, the last one begun after the update committed.
    await waitFor('two rounds', async () => {
      const [r] = await tgt.query<{ n: number; after: number }>(
        'SELECT count(*)::int AS n, count(*) FILTER (WHERE started_at > $1::timestamptz)::int AS after FROM pgferry.timestamp_rounds WHERE finished_at IS NOT NULL', [updated], db);
      return r!.n >= 2 && r!.after >= 1;
    });
    ac.abort(new InterruptedError());
    await expect(running).rejects.toMatchObject({ exitCode: 130 });
    const [s, t] = await hashes(db, ['ts_items']);
    expect(t).toEqual(s);
  });

  it('refuses tables without a key by name, with the choices', async () => {
    const db = await createDatabase(src, undefined, `${SCHEMA} CREATE TABLE ts_nokey (v int, updated_at timestamptz);`);
    const dir = await stateDir();
    await runInit(initOptions(db, dir));
    const err = await runTimestampSync(roundOptions(db, dir)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgferryError);
    expect((err as PgferryError).exitCode).toBe(2);
    expect((err as Error).message).toMatch(/ts_nokey/);
    expect((err as PgferryError).hint).toMatch(/exclude.*primary key.*logical replication/);

    // An exclusion constraint cannot be closed over like a unique index: refused by name too.
    const db2 = await createDatabase(src, undefined, `${SCHEMA} CREATE TABLE ts_slots (id int PRIMARY KEY, during int4range, EXCLUDE USING gist (during WITH &&));`);
    const v = await runValidate({ source: src.conn(db2), target: tgt.conn(db2), scope: emptyScope(), method: 'timestamp' });
    expect(v.checks.find((c) => c.id === 'timestamp.exclusion')).toMatchObject({ status: 'fail', details: ['public.ts_slots (ts_slots_during_excl)'] });
    const dir2 = await stateDir();
    await runInit(initOptions(db2, dir2));
    const err2 = await runTimestampSync(roundOptions(db2, dir2)).catch((e: unknown) => e);
    expect((err2 as PgferryError).exitCode).toBe(2);
    expect((err2 as Error).message).toMatch(/ts_slots_during_excl \(an exclusion constraint\)/);
  });

  it('a round killed with kill -9 midway is completed by the next round', async () => {
    const db = await createDatabase(src, undefined, SCHEMA);
    const dir = await stateDir();
    await runInit(initOptions(db, dir));
    await src.query('UPDATE ts_items SET qty = qty + 7 WHERE id % 2 = 0', [], db);
    await src.query('DELETE FROM ts_orders WHERE id % 10 = 0', [], db);
    const args = ['sync', '--method', 'timestamp', '--once', '--batch-size', '50', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--no-interactive'];
    const killed = await runCliProcess(args, { env: { PGFERRY_FAULT_POINT: 'sync.timestamp.mid-round' } });
    expect(killed.exitCode, killed.stderr).toBe(-1);
    const [s0, t0] = await hashes(db, ['ts_items']);
    expect(t0).not.toEqual(s0);
    // One batch of the first table was written, its mark was not moved.
    const again = await runCliProcess([...args, '--detect-deletes', '--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    const doc = JSON.parse(again.stdout) as { method: string; databases: { round: number }[] };
    expect(doc.method).toBe('timestamp');
    const [s, t] = await hashes(db, ['ts_items', 'ts_customers', 'ts_orders', 'ts_plain']);
    expect(t).toEqual(s);
  });
});
