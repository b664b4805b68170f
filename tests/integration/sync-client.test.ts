/**
 * sync --applier client: pgferry streams init's slot and applies to the
 * target itself. Under the writer (inserts, updates, deletes, TOAST updates
 * changed and unchanged, a keyless REPLICA IDENTITY FULL table, a filtered
 * table) every scenario ends in an exact comparison of every writer table:
 * plain streaming, a kill -9 between applying a batch and its COMMIT, the
 * target stopped with pg_ctl -m immediate while it runs, and one source
 * transaction larger than the memory budget. The target never gets a
 * subscription. Also: a column added on the source only stops it (exit 4),
 * and the native applier can take over from it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope, scopeFromFlags } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCleanup } from '../../src/pipeline/cleanup/index.js';
import { runInit } from '../../src/pipeline/init/run.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { runClientSync, runSync, type ClientSyncReport } from '../../src/pipeline/sync/index.js';
import { runCliProcess, startCli } from '../support/cli.js';
import { runVerify, unequal } from './verify-helpers.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, untilCaughtUp as nativeCaughtUp, waitFor, WRITER_FILTER_FLAG, writerSchemaSql, writerTableHashes } from '../support/writer.js';
import { stopImmediately } from '../support/crash.js';
import { loadState, saveState } from '../../src/state/checkpoint.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const dirs: string[] = [];

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'client-src' }), clusters.start({ name: 'client-tgt' })]);
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-sync-client-'));
  dirs.push(d);
  return d;
}

async function init(db: string, dir: string, scope = emptyScope()): Promise<void> {
  await runInit({
    source: src.conn(db), target: tgt.conn(db), scope, stateDir: dir, jobs: 2, noSync: false, noOwner: false,
    noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
    signal: new AbortController().signal,
  });
}

async function subscriptions(): Promise<number> {
  const rows = await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_subscription');
  return rows[0]!.n;
}

/** The client applier in the background until the returned stop() (which resolves with its report). */
function background(db: string, dir: string, events: ProgressEvent[] = []): () => Promise<ClientSyncReport> {
  const ac = new AbortController();
  const run = runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, signal: ac.signal, progress: (e) => events.push(e) });
  run.catch(() => {});
  return async () => {
    ac.abort();
    return run;
  };
}

async function untilCaughtUp(db: string, dir: string, batchBytes?: number): Promise<ClientSyncReport> {
  const r = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, batchBytes, signal: new AbortController().signal });
  expect(r.outcome).toBe('caught-up');
  return r;
}

/** The client applier's committed position for a database (its origin bears the name of the database's slot; origins are per cluster). */
async function appliedPosition(db: string): Promise<string | undefined> {
  const [slot] = await src.query<{ name: string }>('SELECT slot_name AS name FROM pg_replication_slots WHERE database = $1', [db]);
  const rows = await tgt.query<{ lsn: string }>('SELECT remote_lsn::text AS lsn FROM pg_replication_origin_status WHERE external_id = $1', [slot!.name]);
  return rows[0]?.lsn;
}

async function expectEqual(db: string, filtered = false): Promise<void> {
  const { source, target } = await writerTableHashes(src, tgt, db, filtered);
  if (process.env.DEBUG_CLIENT && JSON.stringify(source) !== JSON.stringify(target)) {
    const a = await src.query<{ msg: string }>("SELECT msg FROM w_log WHERE msg LIKE 'step %' ORDER BY 1", undefined, db);
    const b = new Set((await tgt.query<{ msg: string }>("SELECT msg FROM w_log WHERE msg LIKE 'step %'", undefined, db)).map((r) => r.msg));
    console.log('missing on target', a.filter((r) => !b.has(r.msg)).map((r) => r.msg).join(' '));
  }
  expect(target).toEqual(source);
}

describe('sync --applier client', () => {
  it('streams under the writer, never creates a subscription, and ends equal; status says client and 0 B', async () => {
    const db = await createDatabase(src, uniqueDbName('client'), writerSchemaSql(2000));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await init(db, dir);
    const events: ProgressEvent[] = [];
    const stop = background(db, dir, events);
    await waitFor('writes while the applier runs', async () => {
      expect(await subscriptions()).toBe(0);
      const applying = events.some((e) => e.kind === 'update' && /^[1-9]\d* changes/.test(e.detail));
      return applying && writer.commits() >= 300;
    });
    const during = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(during.databases[0]!.applier).toBe('client');
    expect(during.databases[0]!.client?.running).toBe(true);
    await writer.stop();
    // Caught up while running: idle keepalives are answered, so the slot confirms the source's end: 0 B.
    await waitFor('status in sync at 0 B', async () => {
      const s = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
      return s.exitCode === 0 && s.databases[0]!.lag.bytes === 0;
    });
    // verify sees the client applier as the replication to wait for (its slot confirms only what the target committed).
    const v = await runVerify(src, db, tgt, db, { chunkRows: 500, sequences: false });
    expect(v.databases[0]!.replication).toMatchObject({ active: true, subscriptions: [{ applier: 'client', enabled: true }] });
    expect(unequal(v)).toEqual({});
    expect(v.status).toBe('equal');
    const stopped = await stop();
    expect(stopped.outcome).toBe('stopped');
    expect(stopped.databases[0]!.missingRows).toBe(0);
    const r = await untilCaughtUp(db, dir);
    expect(r.databases[0]!.missingRows).toBe(0);
    expect(await subscriptions()).toBe(0);
    await expectEqual(db);
    const after = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(after.databases[0]!.applier).toBe('client');
    expect(after.databases[0]!.client?.running).toBe(false);
    // cleanup drops the replication origin with the slot and the publication.
    const cleaned = await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(cleaned.items.filter((i) => i.kind !== 'state').map((i) => i.kind).sort()).toEqual(['origin', 'publication', 'slot']);
    expect(await tgt.query('SELECT roname FROM pg_replication_origin')).toEqual([]);
  });

  it('copies again the tables init copied after a resume, and skips their changes the copy already holds (keyless table included)', async () => {
    const db = await createDatabase(src, uniqueDbName('clientresync'), writerSchemaSql(1000));
    const dir = await stateDir();
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await init(db, dir);
    await waitFor('changes in the slot before the new copy', async () => writer.commits() >= 150);
    // What a resumed init leaves: these two were copied under a later snapshot than the slot's (here: rows
    // that match neither), and marked so. Replaying the slot's older changes onto a copy would duplicate
    // w_log's rows (no key), so the applier must skip exactly those.
    const state = (await loadState(dir))!;
    for (const k of ['public.w_log', 'public.w_items']) state.databases[db]!.tables[k]!.consistentWithSlot = false;
    await saveState(dir, state);
    await tgt.query("DELETE FROM w_log WHERE actor = 0; UPDATE w_items SET qty = -1 WHERE id % 7 = 0; INSERT INTO w_log (actor, msg) VALUES (9, 'stale')", undefined, db);
    const events: ProgressEvent[] = [];
    const first = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal, progress: (e) => events.push(e) });
    expect(first.outcome).toBe('caught-up');
    expect(events.some((e) => e.kind === 'log' && /copying public\.w_items, public\.w_log again under a new snapshot|copying public\.w_log, public\.w_items again/.test(e.message))).toBe(true);
    const recorded = (await loadState(dir))!.databases[db]!.tables;
    expect(recorded['public.w_log']!.resyncedFrom).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(recorded['public.w_items']!.resyncedFrom).toBe(recorded['public.w_log']!.resyncedFrom);
    expect(recorded['public.w_docs']!.resyncedFrom).toBeUndefined();
    const after = writer.commits();
    await waitFor('more writer commits', async () => writer.commits() >= after + 100);
    await writer.stop();
    // A second run copies nothing again and brings the rest.
    const again: ProgressEvent[] = [];
    await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal, progress: (e) => again.push(e) });
    expect(again.some((e) => e.kind === 'log' && /again under a new snapshot/.test(e.message))).toBe(false);
    await expectEqual(db);
    expect(await subscriptions()).toBe(0);
  });

  it('after kill -9 between applying a batch and its COMMIT, a rerun applies nothing twice and loses nothing; SIGTERM stops it cleanly (143)', async () => {
    const db = await createDatabase(src, uniqueDbName('clientkill'), writerSchemaSql(2000));
    const dir = await stateDir();
    await init(db, dir);
    const writer = startWriter(src.conn(db), { pauseMs: 1 });
    await waitFor('a backlog', async () => writer.commits() >= 400);
    const args = ['sync', '--applier', 'client', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--no-interactive', '--batch-bytes', '16kB'];
    const killed = await runCliProcess(args, { env: { PGFERRY_FAULT_POINT: 'sync.client.mid-batch' } });
    // Killed by the fault point (SIGKILL: no exit code), after two batches were committed with their position.
    expect(killed.exitCode, killed.stderr).toBe(-1);
    expect(await appliedPosition(db)).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const status = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(status.databases[0]!.client?.running).toBe(false);
    await writer.stop();
    const again = await runCliProcess([...args, '--until-caught-up']);
    expect(again.exitCode, again.stderr + again.stdout).toBe(0);
    expect(await subscriptions()).toBe(0);
    await expectEqual(db);
    // In the foreground until SIGTERM: a clean stop, the position saved, exit 143.
    const fg = startCli(args);
    let err = '';
    fg.stderr!.on('data', (d: Buffer) => (err += String(d)));
    await waitFor('the applier running', async () => /client applier/.test(err) && (await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir })).databases[0]!.client?.running === true);
    fg.kill('SIGTERM');
    const done = (await fg) as unknown as { exitCode: number; stdout: string };
    expect(done.exitCode).toBe(143);
    expect(String(done.stdout)).toContain('Stopped: the position is saved on the target');
  });

  it('rides out the target stopped with pg_ctl -m immediate while it applies, and ends equal (w_region filtered)', async () => {
    const db = await createDatabase(src, uniqueDbName('clientrestart'), writerSchemaSql(2000));
    const dir = await stateDir();
    // Rows move in and out of the filter: pgoutput sends those updates as inserts and deletes.
    await init(db, dir, scopeFromFlags({ tableFilter: [WRITER_FILTER_FLAG] }));
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    const events: ProgressEvent[] = [];
    const stop = background(db, dir, events);
    await waitFor('the applier applying', async () => events.some((e) => e.kind === 'update' && /^[1-9]\d* changes/.test(e.detail)));
    if (process.env.DEBUG_CLIENT) console.log('stopping target at writer step', writer.commits());
    stopImmediately(tgt);
    await new Promise((r) => setTimeout(r, 2000));
    await tgt.restart();
    const before = writer.commits();
    await waitFor('more writes after the restart', async () => writer.commits() >= before + 200);
    await writer.stop();
    await waitFor('status in sync at 0 B', async () => {
      const s = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
      return s.exitCode === 0 && s.databases[0]!.lag.bytes === 0;
    });
    const r = await stop();
    expect(r.outcome).toBe('stopped');
    if (process.env.DEBUG_CLIENT) console.log(events.filter((e) => e.kind !== 'update' || !/^\d+ changes/.test(e.detail)).map((e) => JSON.stringify(e)).join('\n'));
    expect(events.some((e) => e.kind === 'update' && e.detail.startsWith('reconnecting: '))).toBe(true);
    await untilCaughtUp(db, dir);
    await expectEqual(db, true);
  });

  it('applies a source transaction larger than the memory budget as one target transaction', async () => {
    const db = await createDatabase(src, uniqueDbName('clientbig'), writerSchemaSql(500));
    const dir = await stateDir();
    await init(db, dir);
    // About 4 MB of changes in one transaction against a 64 kB budget: inserts, updates of those rows, deletes, a TOAST update.
    await src.query(`BEGIN;
      INSERT INTO w_items (qty, note) SELECT g % 100, repeat(md5(g::text), 8) FROM generate_series(1, 12000) g;
      UPDATE w_items SET qty = qty + 1, touched = touched + 1 WHERE id % 3 = 0;
      DELETE FROM w_items WHERE id % 7 = 0;
      UPDATE w_docs SET rev = rev + 1;
      INSERT INTO w_log (actor, msg) SELECT g % 5, 'big ' || g FROM generate_series(1, 3000) g;
      DELETE FROM w_log WHERE ctid IN (SELECT ctid FROM w_log WHERE actor = 2 LIMIT 100);
      COMMIT;`, undefined, db);
    const writer = startWriter(src.conn(db), { pauseMs: 2 });
    await waitFor('writes after it', async () => writer.commits() >= 100);
    await writer.stop();
    const r = await untilCaughtUp(db, dir, 64 * 1024);
    expect(r.databases[0]!.changes).toBeGreaterThan(12000);
    expect(r.databases[0]!.missingRows).toBe(0);
    await expectEqual(db);
  });

  it('carries values byte for byte: quotes, backslashes, braces, empty strings, NULLs, non-ASCII, arrays, bytea; two-column and no key', async () => {
    const db = await createDatabase(src, uniqueDbName('clientodd'), `${writerSchemaSql(10)}
      CREATE TABLE odd (a text NOT NULL, b int NOT NULL, t text, arr text[], raw bytea, j jsonb, PRIMARY KEY (a, b));
      CREATE TABLE odd_log (t text, arr int[], n numeric);
      ALTER TABLE odd_log REPLICA IDENTITY FULL;`);
    const dir = await stateDir();
    await init(db, dir);
    const nasty = ['', '"', '\\', '{}', '{"a",b}', 'a,b', 'NULL', 'null', ' lead', 'trail ', 'ünï €𝄞', 'tab\tnl\ncr\r', "it's", '\\.', '.', '\\N'];
    await src.query(`INSERT INTO odd SELECT v, i, v || v, ARRAY[v, NULL, 'x'], convert_to(v, 'UTF8'), jsonb_build_object('k', v)
      FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)`, [nasty], db);
    await src.query(`INSERT INTO odd VALUES ('k', 0, NULL, NULL, NULL, NULL)`, undefined, db);
    await src.query(`INSERT INTO odd_log SELECT v, ARRAY[i, NULL], i / 3.0 FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)`, [nasty], db);
    await src.query(`INSERT INTO odd_log VALUES (NULL, NULL, NULL)`, undefined, db);
    // Updates (also one moving a key), deletes, in several source transactions.
    await src.query(`UPDATE odd SET t = t || '\\"', arr = arr || '{}'::text WHERE b % 2 = 0`, undefined, db);
    await src.query(`UPDATE odd SET a = a || 'ü' WHERE b = 3`, undefined, db);
    await src.query(`DELETE FROM odd WHERE b = 5`, undefined, db);
    await src.query(`UPDATE odd_log SET t = coalesce(t, '') || '\\' WHERE n > 2`, undefined, db);
    await src.query(`DELETE FROM odd_log WHERE t = '"'`, undefined, db);
    await untilCaughtUp(db, dir);
    const dump = async (c: LocalCluster) => [
      ...(await c.query<{ r: string }>('SELECT row_to_json(o)::text AS r FROM odd o ORDER BY a, b', [], db)).map((x) => x.r),
      ...(await c.query<{ r: string }>('SELECT row_to_json(o)::text AS r FROM odd_log o ORDER BY t NULLS FIRST, n', [], db)).map((x) => x.r),
    ];
    const want = await dump(src);
    expect(want.length).toBe(2 * nasty.length); // one row added and one deleted in each table; odd_log's rows go by COPY
    expect(await dump(tgt)).toEqual(want);
  });

  it('applies tables with GENERATED ALWAYS identity columns, set-based, in order and keyless; a changed identity key it cannot write stops it (exit 4)', async () => {
    const db = await createDatabase(src, uniqueDbName('clientident'), `${writerSchemaSql(10)}
      CREATE TABLE ida (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text, len int GENERATED ALWAYS AS (length(v)) STORED);
      CREATE TABLE idb (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text UNIQUE, v text);
      CREATE TABLE idc (n bigint GENERATED ALWAYS AS IDENTITY, v text);
      ALTER TABLE idc REPLICA IDENTITY FULL;
      INSERT INTO ida (v) SELECT 'a' || g FROM generate_series(1, 5) g;`);
    const dir = await stateDir();
    await init(db, dir);
    for (const sql of [
      "INSERT INTO ida (v) SELECT 'b' || g FROM generate_series(1, 20) g",
      "INSERT INTO idb (code, v) SELECT 'c' || g, 'v' || g FROM generate_series(1, 3) g",
      "INSERT INTO idb (code, v) SELECT 'd' || g, 'v' || g FROM generate_series(1, 12) g",
      "INSERT INTO idc (v) SELECT 'e' || g FROM generate_series(1, 10) g",
      "UPDATE ida SET v = v || '!' WHERE id % 3 = 0",
      'UPDATE ida SET id = DEFAULT WHERE id = 2', // a new key for a set-based table: deleted and inserted again
      "UPDATE idb SET v = 'w' WHERE id < 5",
      "UPDATE idc SET v = v || '?' WHERE n % 2 = 0",
      'DELETE FROM ida WHERE id = 7', 'DELETE FROM idb WHERE id = 8', 'DELETE FROM idc WHERE n = 9',
    ]) await src.query(sql, [], db);
    await untilCaughtUp(db, dir);
    const dump = async (c: LocalCluster) =>
      Promise.all(['ida ORDER BY id', 'idb ORDER BY id', 'idc ORDER BY n'].map((t) => c.query<{ r: string }>(`SELECT row_to_json(x)::text AS r FROM ${t.replace(' ', ' x ')}`, [], db)));
    expect(await dump(tgt)).toEqual(await dump(src));
    // In order, an UPDATE cannot give such a column another value: named, not left behind under the old key.
    await src.query('UPDATE idb SET id = DEFAULT WHERE id = 1', [], db);
    await expect(runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal }))
      .rejects.toThrow(/idb: the source gave identity column "id" \(GENERATED ALWAYS\) a new value/);
  });

  it('after kill -9 between COMMIT and the acknowledgement, the native applier takes over without applying anything twice', async () => {
    const db = await createDatabase(src, uniqueDbName('clientswitch'), writerSchemaSql(1000));
    const dir = await stateDir();
    await init(db, dir);
    const writer = startWriter(src.conn(db), { pauseMs: 1 });
    await waitFor('a backlog', async () => writer.commits() >= 300);
    const args = ['sync', '--applier', 'client', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir, '--no-interactive', '--batch-bytes', '16kB'];
    const killed = await runCliProcess(args, { env: { PGFERRY_FAULT_POINT: 'sync.client.after-commit' } });
    expect(killed.exitCode, killed.stderr).toBe(-1);
    // The target committed more than the slot confirmed: the native subscription must start from the origin.
    const origin = await appliedPosition(db);
    const [slot] = await src.query<{ behind: boolean }>('SELECT confirmed_flush_lsn < $1::pg_lsn AS behind FROM pg_replication_slots WHERE database = $2', [origin, db]);
    expect(slot!.behind).toBe(true);
    const report = await runSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, waitTimeoutSeconds: 120, pollMs: 250, signal: new AbortController().signal });
    expect(report.final?.inSync).toBe(true);
    await writer.stop();
    await nativeCaughtUp(src, tgt, db, dir);
    await expectEqual(db);
  });

  it('stops with exit 4 naming table and column when the source sends a column the target lacks, then continues once it is added', async () => {
    const db = await createDatabase(src, uniqueDbName('clientddl'), writerSchemaSql(200));
    const dir = await stateDir();
    await init(db, dir);
    await src.query(`INSERT INTO w_items (qty, note) VALUES (1, 'before'); ALTER TABLE w_items ADD COLUMN "Extra col" int; UPDATE w_items SET "Extra col" = 7 WHERE id <= 3`, undefined, db);
    const err = await runClientSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, untilCaughtUp: true, signal: new AbortController().signal }).then(
      () => null,
      (e: unknown) => e as { exitCode: number; message: string },
    );
    expect(err?.exitCode).toBe(4);
    expect(err?.message).toContain('column "Extra col" of table public.w_items is on the source but not on the target');
    await tgt.query('ALTER TABLE w_items ADD COLUMN "Extra col" int', undefined, db);
    await untilCaughtUp(db, dir);
    await expectEqual(db);
  });
});

