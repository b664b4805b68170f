/**
 * The lock table's size as validate reads it, on the majors whose formula differs: up to 17 PostgreSQL counts
 * autovacuum_max_workers and one launcher, 18 autovacuum_worker_slots and two special workers.
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../../src/postgres/connect.js';
import { gatherLockTable } from '../../src/pipeline/validate/lock-table.js';
import { useClusters } from '../support/clusters.js';

const clusters = useClusters();

describe('validate: the lock table', () => {
  it('counts the processes PostgreSQL sizes it by, on 17 and on 18', async () => {
    const settings = { max_connections: 20, max_worker_processes: 4, max_wal_senders: 3, max_prepared_transactions: 2, max_locks_per_transaction: 32, autovacuum_max_workers: 5 };
    const [c17, c18] = await Promise.all([
      clusters.startMajor(17, { name: 'locks17', settings }),
      clusters.startMajor(18, { name: 'locks18', settings: { ...settings, autovacuum_worker_slots: 9 } }),
    ]);
    const read = async (c: typeof c17) => {
      const client = await connect(c.conn('postgres'));
      try {
        return await gatherLockTable(client);
      } finally {
        await client.end();
      }
    };
    // 20 connections + 5 autovacuum workers + 1 launcher + 4 workers + 3 WAL senders, + 2 prepared transactions.
    expect(await read(c17)).toEqual({ maxLocksPerTransaction: 32, processes: 35 });
    // 20 + 9 autovacuum worker slots + 2 special workers + 4 + 3, + 2.
    expect(await read(c18)).toEqual({ maxLocksPerTransaction: 32, processes: 40 });
  });
});
