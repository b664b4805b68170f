import { describe, expect, it } from 'vitest';
import { rateAndEta } from '../../src/units.js';

describe('rateAndEta', () => {
  it('shows no rate in the first two seconds', () => {
    expect(rateAndEta(10 * 1024 * 1024, 100 * 1024 * 1024, 1500)).toBe('10.0 MB of ~100 MB');
  });
  it('derives the time left from the measured rate', () => {
    // 20 MB in 4 s = 5 MB/s; 80 MB left = 16 s.
    expect(rateAndEta(20 * 1024 * 1024, 100 * 1024 * 1024, 4000)).toBe('20.0 MB of ~100 MB, 5.0 MB/s, about 16s left');
  });
  it('stops promising a time once the work passes the estimate', () => {
    expect(rateAndEta(120 * 1024 * 1024, 100 * 1024 * 1024, 10_000)).toBe('120 MB of ~100 MB, 12.0 MB/s');
  });
  it('counts chunks as well as bytes', () => {
    expect(rateAndEta(30, 90, 3000, 'chunks')).toBe('30 chunks of ~90 chunks, 10 chunks/s, about 6.0s left');
  });
});
