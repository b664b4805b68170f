/**
 * Statistics of a partitioned table after init: every partition analysed
 * exactly once and the root given its own (inherited) statistics — before
 * PostgreSQL 18 through the root's ANALYZE, which analyses every partition
 * again (so init leaves theirs to it), from 18 through ANALYZE ONLY of the root,
 * the partitions analysed on their own.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';

const clusters = useClusters();
let src: LocalCluster;
const targets: Record<number, LocalCluster> = {};
const dirs: string[] = [];

beforeAll(async () => {
  // No autovacuum on the targets: every ANALYZE counted is init's.
  const quiet = { settings: { autovacuum: 'off' } };
  let t17: LocalCluster;
  let t18: LocalCluster;
  [src, t17, t18] = await Promise.all([clusters.start({ name: 'ansrc' }), clusters.startMajor(17, { ...quiet, name: 'an17' }), clusters.startMajor(18, { ...quiet, name: 'an18' })]);
  targets[17] = t17;
  targets[18] = t18;
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const SCHEMA = `
  CREATE TABLE ev (id bigint PRIMARY KEY, v int, note text) PARTITION BY RANGE (id);
  CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (20000);
  CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (20000) TO (40000);
  CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (40000) TO (MAXVALUE);
  INSERT INTO ev SELECT g, g % 97, md5(g::text) FROM generate_series(0, 59999) g;
  CREATE TABLE plain (id int PRIMARY KEY, v int);
  INSERT INTO plain SELECT g, g FROM generate_series(1, 1000) g;
  ANALYZE;`;

describe('ANALYZE of a partitioned table', () => {
  for (const major of [17, 18]) {
    it(`analyses every partition once and gives the root its inherited statistics (target ${major})`, async () => {
      const tgt = targets[major]!;
      const db = await createDatabase(src, uniqueDbName(`an${major}`), SCHEMA);
      const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
      dirs.push(stateDir);
      const report = await runInit({
        source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir, jobs: 2, noSync: true, noOwner: false,
        noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
        signal: new AbortController().signal,
        // Small parts: the partitions are copied in several parts each.
        splitThresholdBytes: 256 * 1024,
      });
      expect(report.databases[0]!.phase).toBe('done');
      const counts = await tgt.query<{ relname: string; n: number }>(
        `SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables WHERE relname LIKE 'ev%' OR relname = 'plain' ORDER BY 1`, [], db);
      expect(counts).toEqual([{ relname: 'ev', n: 1 }, { relname: 'ev_1', n: 1 }, { relname: 'ev_2', n: 1 }, { relname: 'ev_3', n: 1 }, { relname: 'plain', n: 1 }]);
      const inherited = await tgt.query<{ attname: string }>(
        `SELECT attname FROM pg_stats WHERE schemaname = 'public' AND tablename = 'ev' AND inherited ORDER BY 1`, [], db);
      expect(inherited.map((r) => r.attname)).toEqual(['id', 'note', 'v']);
      const leafStats = await tgt.query<{ n: number }>(
        `SELECT count(DISTINCT tablename)::int AS n FROM pg_stats WHERE schemaname = 'public' AND tablename LIKE 'ev\\_%' AND NOT inherited`, [], db);
      expect(leafStats[0]!.n).toBe(3);
      const valid = await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_index WHERE NOT (indisvalid AND indisready)`, [], db);
      expect(valid[0]!.n).toBe(0);
      const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
      expect(tgtRows).toEqual(srcRows);
    });
  }
});
