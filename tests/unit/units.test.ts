import { describe, expect, it } from 'vitest';
import { DrainEstimate, rateAndEta } from '../../src/units.js';

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

describe('DrainEstimate', () => {
  it('says nothing for the first two seconds or once drained', () => {
    const d = new DrainEstimate();
    expect(d.add(0, 100 * 1024 * 1024)).toBe('');
    expect(d.add(1500, 90 * 1024 * 1024)).toBe('');
    expect(d.add(4000, 0)).toBe('');
  });

  it('measures the net rate over the window: 10 MB/s leaves 8s for 80 MB', () => {
    const d = new DrainEstimate();
    const mb = 1024 * 1024;
    d.add(0, 100 * mb);
    d.add(1000, 90 * mb);
    expect(d.add(2000, 80 * mb)).toBe('draining 10.0 MB/s, about 8.0s left');
  });

  it('forgets samples older than the window, and says when the backlog grows', () => {
    const d = new DrainEstimate(3000);
    const mb = 1024 * 1024;
    d.add(0, 500 * mb); // a fast start that no longer holds
    d.add(1000, 100 * mb);
    d.add(5000, 100 * mb);
    expect(d.add(7000, 110 * mb)).toBe('not shrinking');
  });
});
