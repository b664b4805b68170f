/** The lock-table check's arithmetic and wording (validate's integration test runs it against a real server). */
import { describe, expect, it } from 'vitest';
import { checkLockTable, lockTableSize, suggestedMaxLocks } from '../../src/pipeline/validate/lock-table.js';

const defaults = { maxLocksPerTransaction: 64, processes: 122 }; // 100 connections, 3 autovacuum workers, launcher, 8 workers, 10 WAL senders

describe('validate: lock table', () => {
  it('sizes the table as PostgreSQL does and passes what fits', () => {
    expect(lockTableSize(defaults)).toBe(7808);
    const r = checkLockTable('source', defaults, 7808, 'pg_dump', 'init');
    expect(r).toMatchObject({ id: 'source.lock_table', status: 'ok' });
    expect(r.message).toBe('pg_dump (init) locks 7808 tables on the source in one transaction; the lock table holds about 7808 (max_locks_per_transaction = 64 × 122 processes and prepared transactions)');
  });

  it('warns past it, with a setting that leaves a quarter to spare, in steps of 64', () => {
    const r = checkLockTable('target', defaults, 20_000, 'CREATE SUBSCRIPTION', 'sync');
    expect(r.status).toBe('warn');
    expect(r.message).toContain('if it runs out, CREATE SUBSCRIPTION stops with "out of shared memory"');
    // 20 000 × 1.25 / 122 = 205 → 256.
    expect(r.fix).toBe('ALTER SYSTEM SET max_locks_per_transaction = 256;  -- then restart the target server');
    expect(suggestedMaxLocks(200, { maxLocksPerTransaction: 64, processes: 2 })).toBe(128);
    // Never less than twice the current setting.
    expect(suggestedMaxLocks(8000, defaults)).toBe(128);
    expect(suggestedMaxLocks(200, { maxLocksPerTransaction: 200, processes: 2 })).toBe(400);
  });
});
