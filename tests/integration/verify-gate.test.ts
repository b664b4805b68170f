/**
 * cutover's quick gate (verify's runGate): the tables nobody wrote on the
 * target since init are compared by row count, many tables to a statement,
 * and a count that differs is reported against its own table.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runGate } from '../../src/pipeline/verify/index.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { committedTransactions, createDatabase, useClusters } from '../support/clusters.js';

const TABLES = 40;
const SQL = `${Array.from({ length: TABLES }, (_v, i) => `CREATE TABLE t${i} (id int PRIMARY KEY, v text); INSERT INTO t${i} SELECT g, 'v' || g FROM generate_series(1, 20) g;`).join('\n')}
CREATE TABLE big (id int PRIMARY KEY); INSERT INTO big SELECT generate_series(1, 12000);`;

const commits = (c: LocalCluster, db: string) => committedTransactions(c, db, 'pgferry cutover');

describe('the quick gate', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  const dirs: string[] = [];

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'gtsrc' }), clusters.start({ name: 'gttgt' })]);
  });
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('counts the small tables nobody wrote since init many to a statement and a larger one alone, and reports a count that differs against its table', async () => {
    const [s, t] = await Promise.all([createDatabase(source, undefined, SQL), createDatabase(target, undefined, SQL)]);
    // A row the target lacks, in a table nobody wrote on the target: found by its count.
    await source.query('INSERT INTO t7 VALUES (21, \'late\')', [], s);
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-gate-'));
    dirs.push(stateDir);
    const tables = [...Array.from({ length: TABLES }, (_v, i) => ({ schema: 'public', name: `t${i}` })), { schema: 'public', name: 'big' }];
    // What init recorded: the rows copied into each table.
    const initState = {
      createdAt: new Date(Date.now() - 60_000).toISOString(),
      databases: { [s]: { tables: Object.fromEntries(tables.map((x) => [`public.${x.name}`, { rows: x.name === 'big' ? 12000 : 20 }])) } },
    } as unknown as RunState;
    const before = await commits(source, s);
    const result = await runGate({
      mode: 'quick', source: source.conn(s), target: target.conn(t), stateDir, scope: emptyScope(), initState, jobs: 2,
      pairs: [{ sourceDatabase: s, targetDatabase: t, sourceConn: source.conn(s), targetConn: target.conn(t), tables }],
    });
    const after = await commits(source, s);
    expect(result.databases[0]!.counted).toHaveLength(TABLES + 1);
    expect(result.databases[0]!.counted.find((c) => c.table === 'public.t3')).toEqual({ table: 'public.t3', source: 20, target: 20 });
    expect(result.databases[0]!.counted.find((c) => c.table === 'public.big')).toEqual({ table: 'public.big', source: 12000, target: 12000 });
    expect(result.countDifferences).toEqual([{ table: 'public.t7', source: 21, target: 20 }]);
    expect(result.ok).toBe(false);
    // One statement per table would be TABLES of them.
    expect(after - before).toBeLessThan(TABLES / 4);
  });
});
