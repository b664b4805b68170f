/** verify across majors: PostgreSQL 13 → 17 (embedded builds) with equal data compares equal, schema included. */
import { describe, expect, it } from 'vitest';
import { useClusters } from '../support/clusters.js';
import { richDatabase, runVerify, table, unequal } from './verify-helpers.js';

describe('verify across majors', () => {
  const clusters = useClusters();

  it('finds the rich schema loaded on 13 and on 17 equal, and still sees a one-microsecond change', async () => {
    const [old, neu] = await Promise.all([clusters.startMajor(13), clusters.startMajor(17)]);
    const [srcDb, tgtDb] = await Promise.all([richDatabase(old), richDatabase(neu)]);
    const report = await runVerify(old, srcDb, neu, tgtDb);
    expect(unequal(report)).toEqual({});
    expect(report.status).toBe('equal');
    expect(report.summary.rowsCompared).toBe(18278);

    await neu.query(`UPDATE shop.orders SET placed_at = placed_at + interval '1 microsecond' WHERE id = 1234`, [], tgtDb);
    const after = await runVerify(old, srcDb, neu, tgtDb, { tables: ['shop.orders'] });
    expect(table(after, 'shop', 'orders').diffs).toEqual([{ kind: 'different', key: { id: '1234' } }]);
  });
});
