import { describe, expect, it } from 'vitest';
import { dependencyOrder } from '../../src/pipeline/shared/materialized-views.js';

describe('materialized views in dependency order', () => {
  it('puts each view after the materialized views it reads, through plain views, and keeps the rest in their order', () => {
    const mv = (oid: number, name: string) => ({ oid, schema: 'app', name });
    // 1 reads view 10, which reads 3; 3 reads the table 20; 2 reads nothing of ours; 4 reads 1 and 3.
    const views = [mv(1, 'a'), mv(2, 'b'), mv(3, 'c'), mv(4, 'd')];
    const edges = [{ view: 1, reads: 10 }, { view: 10, reads: 3 }, { view: 3, reads: 20 }, { view: 4, reads: 1 }, { view: 4, reads: 3 }];
    expect(dependencyOrder(views, edges).map((v) => v.name)).toEqual(['c', 'a', 'b', 'd']);
    expect(dependencyOrder([], edges)).toEqual([]);
  });
});
