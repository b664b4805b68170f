import { describe, expect, it } from 'vitest';
import { SESSION_DEFAULTS, setsTransactionTimeout } from '../../src/postgres/session-defaults.js';

describe('session defaults', () => {
  it('free every session of the limits a database or role sets, and read every row', () => {
    expect(SESSION_DEFAULTS).toEqual({
      row_security: 'off', default_transaction_read_only: 'off', statement_timeout: '0', lock_timeout: '0', idle_in_transaction_session_timeout: '0',
    });
  });

  it('leave transaction_timeout to startup options that set it, and only those', () => {
    expect(setsTransactionTimeout('-c transaction_timeout=5s')).toBe(true);
    expect(setsTransactionTimeout('-c jit=off --transaction-timeout=0')).toBe(true);
    expect(setsTransactionTimeout('-ctransaction_timeout=1min')).toBe(true);
    expect(setsTransactionTimeout('-c idle_in_transaction_session_timeout=0 -c statement_timeout=0')).toBe(false);
    expect(setsTransactionTimeout('')).toBe(false);
  });
});
