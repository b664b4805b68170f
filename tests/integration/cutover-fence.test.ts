import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { flushWal } from '../../src/pipeline/cutover/catch-up.js';
import { fence, newFenceRecord, planFence, unfence } from '../../src/pipeline/cutover/fence.js';
import { lsnToBigInt, WAL_END_SQL } from '../../src/postgres/lsn.js';
import { useClusters } from '../support/clusters.js';

/** cutover's fence and catch-up on a server that commits asynchronously, their WAL flushed or not. */
describe('cutover: the fence and the flush', () => {
  const { start, startMajor } = useClusters();
  let c: LocalCluster;
  beforeAll(async () => {
    // wal_writer_delay at its maximum: async commits stay unwritten for seconds.
    c = await start({ name: 'fence', settings: { synchronous_commit: 'off', wal_writer_delay: "'10s'" } });
    await c.query('CREATE TABLE t (v int)');
  });

  // cutover's catch-up: the target's apply worker can confirm only what its server has flushed, and the source's
  // walsender wakes on a flush. A transaction that writes no WAL of its own (SELECT txid_current()) commits
  // asynchronously whatever synchronous_commit says; here, with the WAL writer asleep for 10 s, nothing else flushes.
  it('flushWal writes out the WAL at once, asynchronous commits before it included', async () => {
    const client = new pg.Client({ connectionString: c.url() });
    await client.connect();
    try {
      for (let i = 0; i < 5; i++) {
        await client.query('INSERT INTO t VALUES (2)');
        const { rows } = await client.query<{ e: string }>(`SELECT ${WAL_END_SQL}::text AS e`);
        await flushWal(client);
        const { rows: after } = await client.query<{ f: string }>('SELECT pg_current_wal_flush_lsn()::text AS f');
        expect(lsnToBigInt(after[0]!.f)).toBeGreaterThanOrEqual(lsnToBigInt(rows[0]!.e));
      }
    } finally {
      await client.end();
    }
  });

  it("the fence's commit is flushed at once on a server that commits asynchronously", async () => {
    // A database of its own: the fence ends every other session of its database.
    await c.query('CREATE DATABASE fenced');
    await c.query('CREATE TABLE f (v int)', [], 'fenced');
    const client = new pg.Client({ connectionString: c.url('fenced') });
    await client.connect();
    try {
      const { rows } = await client.query<{ oid: number }>("SELECT 'f'::regclass::oid::int AS oid");
      const plan = await planFence(client, 'fenced', { relids: [rows[0]!.oid], what: 'table f' }, null);
      const record = newFenceRecord(plan);
      await client.query('INSERT INTO f VALUES (1)');
      const r = await fence(client, plan, record);
      const { rows: after } = await client.query<{ f: string }>('SELECT pg_current_wal_flush_lsn()::text AS f');
      expect(lsnToBigInt(after[0]!.f)).toBeGreaterThanOrEqual(lsnToBigInt(r.fenceLsn));
      await unfence(client, 'fenced', record);
    } finally {
      await client.end();
    }
  });

  it('a fence statement that fails leaves the session out of its transaction, and unfence undoes the rest', async () => {
    await c.query('CREATE DATABASE fenced2');
    await c.query('CREATE TABLE g (v int)', [], 'fenced2');
    const client = new pg.Client({ connectionString: c.url('fenced2') });
    await client.connect();
    try {
      const { rows } = await client.query<{ oid: number }>("SELECT 'g'::regclass::oid::int AS oid");
      const plan = await planFence(client, 'fenced2', { relids: [rows[0]!.oid], what: 'table g' }, null);
      const record = newFenceRecord(plan);
      // Gone between the plan and the fence: the trigger statements fail after CONNECT was revoked.
      await client.query('DROP TABLE g');
      await expect(fence(client, plan, record)).rejects.toMatchObject({ code: '42P01' });
      // A session left inside the aborted transaction would refuse this query.
      const { rows: state } = await client.query<{ connect: boolean }>("SELECT has_database_privilege('public', 'fenced2', 'CONNECT') AS connect");
      expect(state[0]!.connect).toBe(false);
      await unfence(client, 'fenced2', record);
      const { rows: after } = await client.query<{ connect: boolean; schema: boolean }>(
        `SELECT has_database_privilege('public', 'fenced2', 'CONNECT') AS connect, EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) AS schema`,
        [record.schema],
      );
      expect(after[0]).toEqual({ connect: true, schema: false });
    } finally {
      await client.end();
    }
  });

  // 14+ replaces its triggers (CREATE OR REPLACE TRIGGER), 13 drops and creates them: both on a rerun over a fence
  // that stands, as after a crash between the fence and its record.
  it.each([15, 13])('on %i: other sessions but the spared one are ended, writes refused even to a superuser, a rerun replaces the triggers, unfence lifts it', async (major) => {
    const s = major === 15 ? c : await startMajor(major, { name: `fence${major}` });
    const db = `fenced_${major}`;
    await s.query(`CREATE DATABASE ${db}`);
    await s.query('CREATE TABLE h (v int); CREATE TABLE p (v int) PARTITION BY RANGE (v); CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100)', [], db);
    const client = new pg.Client({ connectionString: s.url(db) });
    const writer = new pg.Client({ connectionString: s.url(db), application_name: 'app' });
    // cutover's catch-up session: spared by the fence.
    const spared = new pg.Client({ connectionString: s.url(db) });
    await client.connect();
    await writer.connect();
    await spared.connect();
    writer.on('error', () => {});
    try {
      await writer.query('BEGIN; INSERT INTO h VALUES (1)');
      const { rows } = await client.query<{ oid: number }>("SELECT oid::int FROM pg_class WHERE relname IN ('h', 'p')");
      const plan = await planFence(client, db, { relids: rows.map((r) => r.oid), what: 'h and p' }, null);
      expect(plan.serverVersion).toBeGreaterThanOrEqual(major * 10000);
      expect(plan.tables.map((t) => t.name).sort()).toEqual(['h', 'p', 'p1']);
      const record = newFenceRecord(plan);
      const sparedPid = (await spared.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const first = await fence(client, plan, record, undefined, [sparedPid]);
      expect(first.sessionsEnded).toBe(1);
      expect(first.sessionsInTransaction).toBe(1);
      await expect(writer.query('COMMIT')).rejects.toThrow();
      await expect(spared.query('SELECT 1')).resolves.toBeTruthy();
      const again = await fence(client, plan, record, undefined, [sparedPid]);
      expect(lsnToBigInt(again.fenceLsn)).toBeGreaterThanOrEqual(lsnToBigInt(first.fenceLsn));
      const { rows: triggers } = await client.query<{ relname: string }>(
        "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE t.tgname = 'pgferry_fence' ORDER BY 1",
      );
      expect(triggers.map((t) => t.relname)).toEqual(['h', 'p', 'p1']);
      expect(again.sessionsEnded).toBe(0);
      await expect(spared.query('SELECT 1')).resolves.toBeTruthy();
      // The fence's own session is a superuser's: the trigger refuses it too.
      for (const sql of ['INSERT INTO h VALUES (2)', 'INSERT INTO p VALUES (2)', 'UPDATE p1 SET v = 3', 'TRUNCATE h']) {
        await expect(client.query(sql)).rejects.toMatchObject({ code: '25006' });
      }
      await unfence(client, db, record);
      await client.query('INSERT INTO h VALUES (4); INSERT INTO p VALUES (4)');
      const { rows: n } = await client.query<{ h: number; p: number }>('SELECT (SELECT count(*)::int FROM h) AS h, (SELECT count(*)::int FROM p) AS p');
      expect(n[0]).toEqual({ h: 1, p: 1 });
    } finally {
      await client.end();
      await writer.end().catch(() => {});
      await spared.end();
    }
  });
});
