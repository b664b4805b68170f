/**
 * verify across majors: PostgreSQL 13 → 17 (embedded builds) with equal data compares equal, schema included;
 * and on 18, columns whose NOT NULL is NOT VALID (old rows may hold NULLs) are hashed as nullable.
 */
import { describe, expect, it } from 'vitest';
import { createDatabase, useClusters } from '../support/clusters.js';
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

  it('on 18, hashes a NOT NULL … NOT VALID column as nullable and does not take a unique index over one as a key', async () => {
    const [a, b] = await Promise.all([clusters.startMajor(18), clusters.startMajor(18)]);
    const schema = (changed: boolean) => `
      CREATE TABLE nn (id int PRIMARY KEY, b int, c text, d int NOT NULL);
      INSERT INTO nn VALUES (1, NULL, ${changed ? "'changed'" : "'x'"}, 1), (2, 2, 'y', 2), (3, 3, 'z', 3);
      ALTER TABLE nn ADD CONSTRAINT nn_b NOT NULL b NOT VALID;
      CREATE TABLE uk (u int, v text);
      CREATE UNIQUE INDEX uk_u_idx ON uk (u);
      INSERT INTO uk VALUES (NULL, 'a'), (NULL, ${changed ? "'B'" : "'b'"}), (1, 'c');
      ALTER TABLE uk ADD CONSTRAINT uk_u NOT NULL u NOT VALID;`;
    const [srcDb, tgtDb] = await Promise.all([createDatabase(a, undefined, schema(false)), createDatabase(b, undefined, schema(true))]);
    const report = await runVerify(a, srcDb, b, tgtDb, { sequences: false });
    // Row 1's b is NULL: without its coalesce the whole row hash would be NULL, and the changed c unseen.
    expect(table(report, 'public', 'nn')).toMatchObject({ status: 'different', diffs: [{ kind: 'different', key: { id: '1' } }], schemaDifferences: [] });
    expect(table(report, 'public', 'uk')).toMatchObject({ status: 'different', method: 'whole-table', keyColumns: null });
  });
});
