import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { flushWal } from '../../src/pipeline/cutover/catch-up.js';
import { fence, newFenceRecord, planFence, unfence } from '../../src/pipeline/cutover/fence.js';
import { lsnToBigInt, WAL_END_SQL } from '../../src/postgres/lsn.js';
import { useClusters } from '../support/clusters.js';

/** cutover's fence and catch-up on a server that commits asynchronously, their WAL flushed or not. */
describe('cutover: the fence and the flush', () => {
  const { start } = useClusters();
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
});
