import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
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
});
