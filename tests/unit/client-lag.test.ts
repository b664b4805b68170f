import { describe, expect, it } from 'vitest';
import { clientLagBytes } from '../../src/pipeline/sync/client/run.js';

describe('clientLagBytes (the client applier progress line)', () => {
  it('measures from the polled source WAL end, not only from what the stream has sent', () => {
    // While behind, the walsender has sent just ahead of what is applied; the source is far ahead.
    expect(clientLagBytes({ acked: 1000n, walEnd: 3000n, sourceEnd: 50_000n })).toBe(49_000);
    // Not polled yet: what the stream has sent.
    expect(clientLagBytes({ acked: 1000n, walEnd: 3000n, sourceEnd: 0n })).toBe(2000);
    // Caught up (a keepalive acknowledged past the last poll): no negative lag.
    expect(clientLagBytes({ acked: 9000n, walEnd: 9000n, sourceEnd: 8000n })).toBe(0);
  });
});
