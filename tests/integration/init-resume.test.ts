/**
 * Resume after `kill -9` of the built CLI in the middle of the copy.
 *
 * One table is slow to load on purpose: its generated column calls a function
 * that sleeps on the target only (a role setting there, switched on for the
 * run that is killed), so the copy can be killed while that table is in
 * flight and the others are done.
 *
 * - Some tables finished under the slot's snapshot: they are kept, the slow
 *   one is copied again under a new snapshot and marked
 *   consistentWithSlot = false. Then the hand-over sync performs (the slot for
 *   the consistent tables, PostgreSQL's table synchronisation for the other)
 *   brings the target to exactly the source's rows while a writer runs.
 * - Nothing finished yet: the old slot is dropped and a new one taken.
 * - A changed scope is refused (exit 2); --restart starts over.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { runCliProcess, startCli } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';
import { waitFor as poll } from '../support/wait.js';
import { startLoad, type Writer } from '../support/writer.js';
/** Kill points are short windows: look often. */
const waitFor = <T>(what: string, check: () => Promise<T>) => poll(what, check, 60_000, 50);

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmpDirs: string[] = [];

const SCHEMA = `
CREATE FUNCTION slow_gate(i bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('pgferry_test.slow', true) = 'on' THEN PERFORM pg_sleep(0.002); END IF;
  RETURN i;
END $$;
CREATE TABLE a (id bigserial PRIMARY KEY, v int NOT NULL);
CREATE TABLE b (id int PRIMARY KEY, v text);
CREATE TABLE c (id int PRIMARY KEY, a_id bigint REFERENCES a);
CREATE TABLE slow (id bigserial PRIMARY KEY, a_id bigint NOT NULL REFERENCES a, g bigint GENERATED ALWAYS AS (slow_gate(id)) STORED, pad text NOT NULL);
INSERT INTO a (v) SELECT g FROM generate_series(1, 500) g;
INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 200) g;
INSERT INTO c SELECT g, 1 + g % 500 FROM generate_series(1, 300) g;
INSERT INTO slow (a_id, pad) SELECT 1 + g % 500, repeat('p', 400) FROM generate_series(1, 1000) g;
ANALYZE;`;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'resume-src' }), clusters.start({ name: 'resume-tgt' })]);
});
afterAll(async () => {
  await Promise.all(tmpDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Loading "slow" takes ~2 ms a row on the target while this is on (a role setting: new sessions only). */
async function slowTarget(on: boolean): Promise<void> {
  await tgt.query(on ? "ALTER ROLE postgres SET pgferry_test.slow = 'on'" : 'ALTER ROLE postgres RESET pgferry_test.slow');
}

async function newStateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
  tmpDirs.push(d);
  return d;
}

async function readState(dir: string): Promise<RunState | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, 'state.json'), 'utf8')) as RunState;
  } catch {
    return undefined;
  }
}

function initArgs(db: string, stateDir: string, extra: string[] = []): string[] {
  return ['init', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', stateDir, ...extra];
}

/** Start init, wait until `ready(state)`, then kill -9 it. */
async function killInit(args: string[], stateDir: string, ready: (s: RunState) => boolean): Promise<RunState> {
  const child = startCli(args);
  try {
    return await waitFor('the copy to reach the kill point', async () => {
      const s = await readState(stateDir);
      return s && ready(s) ? s : undefined;
    });
  } finally {
    child.kill('SIGKILL');
    await child.catch(() => {});
  }
}

function startWriter(db: string): Writer {
  return startLoad(src.conn(db), async (c) => {
    const { rows } = await c.query<{ id: string }>('INSERT INTO a (v) VALUES (0) RETURNING id');
    await c.query("INSERT INTO slow (a_id, pad) VALUES ($1, 'new')", [rows[0]!.id]);
    await c.query('UPDATE a SET v = v + 1 WHERE id = (SELECT id FROM a ORDER BY random() LIMIT 1)');
    await c.query("UPDATE slow SET pad = pad || 'u' WHERE id = (SELECT id FROM slow ORDER BY random() LIMIT 1)");
    await c.query('DELETE FROM c WHERE id = (SELECT id FROM c ORDER BY random() LIMIT 1)');
  }, { pauseMs: 5 });
}

describe('init resume after kill -9', () => {
  it('keeps tables finished under the slot, re-copies the rest under a new snapshot, and hands them to table synchronisation', async () => {
    const db = await createDatabase(src, uniqueDbName('resume'), SCHEMA);
    const stateDir = await newStateDir();
    const writer = startWriter(db);
    let writerStopped = false;
    await slowTarget(true);
    try {
      const killed = await killInit(initArgs(db, stateDir, ['--jobs', '2']), stateDir, (s) => {
        const t = s.databases[db]?.tables;
        return !!t && ['public.a', 'public.b', 'public.c'].every((k) => t[k]?.status === 'done') && t['public.slow']?.status === 'copying';
      });
      await slowTarget(false);
      const slot = killed.databases[db]!.slot!;
      expect(slot.name).toMatch(/^pgferry_/);
      await new Promise((r) => setTimeout(r, 500)); // the writer commits more after the first snapshot

      // A changed scope is refused, naming what changed; nothing is touched.
      const changed = await runCliProcess(initArgs(db, stateDir, ['--jobs', '2', '--exclude-tables', 'c']));
      expect(changed.exitCode).toBe(2);
      expect(changed.stderr).toMatch(/belongs to another migration: the scope \(tables, filters\) changed/);
      expect(changed.stderr).toMatch(/--restart/);

      // Resume: completes; the slot is the same; only "slow" was copied again, under a new snapshot.
      const resumed = await runCliProcess(initArgs(db, stateDir, ['--jobs', '2', '--json']));
      expect(resumed.exitCode, resumed.stderr).toBe(0);
      const doc = JSON.parse(resumed.stdout) as {
        resumed: boolean;
        databases: { slot: { name: string; consistentLsn: string }; snapshotsUsed: number; tables: { name: string; consistentWithSlot: boolean; copiedThisRun: boolean }[]; notValidForeignKeys: { name: string; reason: string }[] }[];
      };
      expect(doc.resumed).toBe(true);
      const d = doc.databases[0]!;
      expect(d.slot).toEqual({ name: slot.name, consistentLsn: slot.consistentLsn });
      expect(d.snapshotsUsed).toBe(2);
      const byName = Object.fromEntries(d.tables.map((t) => [t.name, t]));
      expect(byName.slow).toMatchObject({ consistentWithSlot: false, copiedThisRun: true });
      for (const n of ['a', 'b', 'c']) expect(byName[n]).toMatchObject({ consistentWithSlot: true, copiedThisRun: false });
      // "slow" now holds rows newer than "a": its key to "a" cannot be validated until sync has caught up.
      expect(d.notValidForeignKeys).toContainEqual(expect.objectContaining({ name: 'slow_a_id_fkey', reason: 'resume' }));
      const state = (await readState(stateDir))!;
      expect(state.databases[db]!.tables['public.slow']!.consistentWithSlot).toBe(false);

      // The hand-over sync performs: the slot for the consistent tables, table synchronisation for "slow".
      // init created the publication (named like the slot) with every table, before the slot.
      const pub = slot.name;
      expect(await src.query('SELECT tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1', [pub], db)).toEqual(
        ['a', 'b', 'c', 'slow'].map((tablename) => ({ tablename })),
      );
      await src.query(`ALTER PUBLICATION ${pub} DROP TABLE slow`, [], db);
      await tgt.query('TRUNCATE slow', [], db);
      await tgt.query(
        `CREATE SUBSCRIPTION resume_sub CONNECTION '${src.url(db)}' PUBLICATION ${pub}
           WITH (create_slot = false, slot_name = '${slot.name}', copy_data = false)`,
        [],
        db,
      );
      try {
        await src.query(`ALTER PUBLICATION ${pub} ADD TABLE slow`, [], db);
        await tgt.query('ALTER SUBSCRIPTION resume_sub REFRESH PUBLICATION WITH (copy_data = true)', [], db);
        await new Promise((r) => setTimeout(r, 500));
        expect(await writer.stop()).toBeGreaterThan(20);
        writerStopped = true;
        const want = await tableHashes(src.conn(db));
        await waitFor('the target to equal the source', async () => JSON.stringify(await tableHashes(tgt.conn(db))) === JSON.stringify(want)).catch(
          async (err: Error) => {
            const rel = await tgt.query('SELECT srrelid::regclass::text AS rel, srsubstate FROM pg_subscription_rel', [], db);
            const got = await tableHashes(tgt.conn(db));
            const diff = Object.keys(want).filter((k) => want[k]!.hash !== got[k]?.hash).map((k) => `${k}: ${want[k]!.rows} vs ${got[k]?.rows}`);
            const log = (await readFile(path.join(tgt.rootDir, 'server.log'), 'utf8')).split('\n').slice(-15).join('\n');
            throw new Error(`${err.message}: differing ${diff.join(', ')}; subscription tables ${JSON.stringify(rel)}; target log:\n${log}`);
          },
        );
        // Every key holds again once the stream has caught up.
        await tgt.query('ALTER TABLE slow VALIDATE CONSTRAINT slow_a_id_fkey', [], db);
      } finally {
        await tgt.query('ALTER SUBSCRIPTION resume_sub DISABLE', [], db);
        await tgt.query('ALTER SUBSCRIPTION resume_sub SET (slot_name = NONE)', [], db);
        await tgt.query('DROP SUBSCRIPTION resume_sub', [], db);
        await src.query('SELECT pg_drop_replication_slot($1)', [slot.name]);
      }
    } finally {
      await slowTarget(false);
      if (!writerStopped) await writer.stop();
    }
  });

  it('starts with a new slot when nothing had finished, and --restart starts over', async () => {
    const db = await createDatabase(src, uniqueDbName('fresh'), SCHEMA);
    const stateDir = await newStateDir();
    // One job, largest first: "slow" is copied first, so nothing has finished when it is killed.
    await slowTarget(true);
    const killed = await killInit(initArgs(db, stateDir, ['--jobs', '1']), stateDir, (s) => s.databases[db]?.tables['public.slow']?.status === 'copying').finally(
      () => slowTarget(false),
    );
    expect(Object.values(killed.databases[db]!.tables).some((t) => t.status === 'done' && !t.schemaOnly)).toBe(false);
    const firstLsn = killed.databases[db]!.slot!.consistentLsn;
    await src.query('INSERT INTO b VALUES (1000, $1)', ['after the kill'], db);

    const r = await runCliProcess(initArgs(db, stateDir, ['--jobs', '2']));
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no table had finished under the old snapshot: dropped slot/);
    const s = (await readState(stateDir))!.databases[db]!;
    expect(s.snapshotsUsed).toBe(1);
    expect(s.slot!.consistentLsn).not.toBe(firstLsn);
    expect(Object.values(s.tables).every((t) => t.consistentWithSlot && t.status === 'done')).toBe(true);
    const slots = await src.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots');
    expect(slots.map((x) => x.slot_name)).toEqual([s.slot!.name]);
    expect(await tableHashes(tgt.conn(db))).toEqual(await tableHashes(src.conn(db)));

    // Running it again is a no-op.
    const again = await runCliProcess(initArgs(db, stateDir, ['--json']));
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).databases[0].phases).toEqual({});

    // --restart needs a confirmation to drop the slot: without a terminal, exit 2 naming --yes.
    const noYes = await runCliProcess(initArgs(db, stateDir, ['--restart']));
    expect(noYes.exitCode).toBe(2);
    expect(noYes.stderr).toMatch(/--yes/);
    // With --yes the old state and slot go; the filled target database is still only replaced with --drop-existing.
    const refused = await runCliProcess(initArgs(db, stateDir, ['--restart', '--yes']));
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/already exists and is not empty.*\n.*--drop-existing/);
    const restarted = await runCliProcess(initArgs(db, stateDir, ['--restart', '--yes', '--drop-existing']));
    expect(restarted.exitCode, restarted.stderr).toBe(0);
    const s2 = (await readState(stateDir))!.databases[db]!;
    expect(s2.slot!.consistentLsn).not.toBe(s.slot!.consistentLsn);
    expect(await tableHashes(tgt.conn(db))).toEqual(await tableHashes(src.conn(db)));
    await src.query('SELECT pg_drop_replication_slot($1)', [s2.slot!.name]);
  });
});
