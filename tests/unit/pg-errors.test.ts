/** SQLSTATEs and system error codes are told apart: a dropped connection (EPIPE) is a retryable network error, not an SQLSTATE. */
import { describe, expect, it } from 'vitest';
import { isConnectFailure, isRetryable, isStatementRefusal, sqlstate } from '../../src/postgres/errors.js';

function systemError(code: string, syscall = 'write'): Error {
  return Object.assign(new Error(`${syscall} ${code}`), { code, errno: -32, syscall });
}

describe('sqlstate and retries', () => {
  it('reads a server error\'s SQLSTATE', () => {
    const e = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' });
    expect(sqlstate(e)).toBe('57P01');
    expect(isRetryable(e)).toBe(true);
  });

  it('does not take a five-letter system error code (EPIPE) for an SQLSTATE', () => {
    const e = systemError('EPIPE');
    expect(sqlstate(e)).toBeUndefined();
    expect(isRetryable(e)).toBe(true);
    expect(isConnectFailure(e)).toBe(true);
    expect(isRetryable(systemError('ECONNRESET', 'read'))).toBe(true);
  });

  it('tells a refused statement from a lost session', () => {
    const pgErr = (code: string) => Object.assign(new Error(code), { code, severity: 'ERROR' });
    for (const code of ['42704', '23503', '42501', '22023']) expect(isStatementRefusal(pgErr(code)), code).toBe(true);
    for (const code of ['08006', '57P01', '53100', '58030', 'XX000']) expect(isStatementRefusal(pgErr(code)), code).toBe(false);
    expect(isStatementRefusal(systemError('ECONNRESET', 'read'))).toBe(false);
  });
});
