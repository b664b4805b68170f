import { describe, expect, it } from 'vitest';
import { formatLsn, lsnToBigInt } from '../../src/postgres/lsn.js';

describe('WAL positions', () => {
  it('round-trips through bytes', () => {
    for (const l of ['0/0', '0/16B3748', '16/B374D848', 'FFFFFFFF/FFFFFFFF']) expect(formatLsn(lsnToBigInt(l))).toBe(l);
    expect(lsnToBigInt('1/0') - lsnToBigInt('0/FFFFFFFF')).toBe(1n);
  });
  it('rejects what is not a position', () => {
    expect(() => lsnToBigInt('16-B3')).toThrow(/not a WAL position/);
  });
});
