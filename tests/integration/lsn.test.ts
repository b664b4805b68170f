import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { flushWal } from '../../src/pipeline/cutover/catch-up.js';
import { fence, newFenceRecord, planFence, unfence } from '../../src/pipeline/cutover/fence.js';
import { lsnToBigInt } from '../../src/postgres/lsn.js';
import { WAL_END_SQL } from '../../src/postgres/lsn.js';
import { useClusters } from '../support/clusters.js';

describe('the end of WAL', () => {
  const { start } = useClusters();
  let c: LocalCluster;
  beforeAll(async () => {
    // wal_writer_delay at its maximum: async commits stay unwritten for seconds.
    c = await start({ name: 'lsn', settings: { synchronous_commit: 'off', wal_writer_delay: "'10s'" } });
    await c.query('CREATE TABLE t (v int)');
  });

  it('includes a commit made with synchronous_commit = off before it is written', async () => {
    const [before] = await c.query<{ w: string; e: string }>(`SELECT pg_current_wal_lsn()::text AS w, ${WAL_END_SQL}::text AS e`);
    await c.query('INSERT INTO t VALUES (1)');
    const [after] = await c.query<{ w: string; e: string }>(`SELECT pg_current_wal_lsn()::text AS w, ${WAL_END_SQL}::text AS e`);
    expect(lsnToBigInt(after!.e)).toBeGreaterThan(lsnToBigInt(before!.e));
    expect(lsnToBigInt(after!.e)).toBeGreaterThanOrEqual(lsnToBigInt(after!.w));
  });

  it('never points inside a page header', async () => {
    for (let i = 0; i < 50; i++) {
      await c.query('INSERT INTO t SELECT generate_series(1, 37)');
      const [r] = await c.query<{ e: string; blk: string }>(`SELECT ${WAL_END_SQL}::text AS e, current_setting('wal_block_size') AS blk`);
      const off = lsnToBigInt(r!.e) % BigInt(r!.blk);
      expect([24n, 40n]).not.toContain(off);
    }
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
});
