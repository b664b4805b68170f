/**
 * Statistics of a partitioned table after init: every partition analysed
 * exactly once, on its own, and the root and a sub-partitioned table in
 * between given their own (inherited) statistics — the root's ANALYZE, which
 * would analyse every partition again, passes over the leaves that a second
 * session holds locked (analyze.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { analyzeTables } from '../../src/pipeline/init/analyze.js';
import { earlyAnalyzer, tablesWithPostDataStatistics } from '../../src/pipeline/init/early-analyze.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { withClient } from '../../src/postgres/connect.js';
import type { ProgressEvent } from '../../src/pipeline/shared/progress.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';
import { waitFor } from '../support/wait.js';

const clusters = useClusters();
let src: LocalCluster;
const targets: Record<number, LocalCluster> = {};
const dirs: string[] = [];

beforeAll(async () => {
  // No autovacuum on the targets: every ANALYZE counted is init's.
  const quiet = { settings: { autovacuum: 'off' } };
  let t12: LocalCluster;
  let t17: LocalCluster;
  let t18: LocalCluster;
  [src, t12, t17, t18] = await Promise.all([
    clusters.start({ name: 'ansrc' }), clusters.startMajor(12, { ...quiet, name: 'an12' }), clusters.startMajor(17, { ...quiet, name: 'an17' }),
    clusters.startMajor(18, { ...quiet, name: 'an18' }),
  ]);
  targets[12] = t12;
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
  CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (40000) TO (MAXVALUE) PARTITION BY RANGE (id);
  CREATE TABLE ev_3a PARTITION OF ev_3 FOR VALUES FROM (40000) TO (50000);
  CREATE TABLE ev_3b PARTITION OF ev_3 FOR VALUES FROM (50000) TO (MAXVALUE);
  INSERT INTO ev SELECT g, g % 97, md5(g::text) FROM generate_series(0, 59999) g;
  CREATE TABLE plain (id int PRIMARY KEY, v int);
  INSERT INTO plain SELECT g, g FROM generate_series(1, 1000) g;
  ANALYZE;`;

describe('ANALYZE of a partitioned table', () => {
  for (const major of [17, 18]) {
    it(`analyses every partition once and gives the root and a sub-partitioned table their inherited statistics (target ${major})`, async () => {
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
      expect(counts).toEqual(['ev', 'ev_1', 'ev_2', 'ev_3', 'ev_3a', 'ev_3b', 'plain'].map((relname) => ({ relname, n: 1 })));
      const inherited = await tgt.query<{ tablename: string; attname: string }>(
        `SELECT tablename, attname FROM pg_stats WHERE schemaname = 'public' AND tablename LIKE 'ev%' AND inherited ORDER BY 1, 2`, [], db);
      expect(inherited.map((r) => `${r.tablename}.${r.attname}`)).toEqual(['ev.id', 'ev.note', 'ev.v', 'ev_3.id', 'ev_3.note', 'ev_3.v']);
      const leafStats = await tgt.query<{ tablename: string }>(
        `SELECT DISTINCT tablename FROM pg_stats WHERE schemaname = 'public' AND tablename LIKE 'ev\\_%' AND NOT inherited ORDER BY 1`, [], db);
      expect(leafStats.map((r) => r.tablename)).toEqual(['ev_1', 'ev_2', 'ev_3a', 'ev_3b']);
      const valid = await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_index WHERE NOT (indisvalid AND indisready)`, [], db);
      expect(valid[0]!.n).toBe(0);
      const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
      expect(tgtRows).toEqual(srcRows);
    });
  }
  it('gives the root and a sub-partitioned table their statistics without analysing a leaf, on PostgreSQL 12 (the first with SKIP_LOCKED)', async () => {
    const tgt = targets[12]!;
    const db = await createDatabase(tgt, uniqueDbName('an12'), SCHEMA.replace('ANALYZE;', ''));
    const leaves = ['ev_1', 'ev_2', 'ev_3a', 'ev_3b'].map((name) => ({ schema: 'public', name }));
    await analyzeTables(tgt.conn(db), [{ schema: 'public', name: 'ev', leaves }], 2);
    // Statistics are committed with the ANALYZE: only the two partitioned tables have any, and those are inherited.
    const stats = await tgt.query<{ tablename: string; inherited: boolean; n: number }>(
      `SELECT tablename, inherited, count(*)::int AS n FROM pg_stats WHERE tablename LIKE 'ev%' GROUP BY 1, 2 ORDER BY 1`, [], db);
    expect(stats).toEqual([{ tablename: 'ev', inherited: true, n: 3 }, { tablename: 'ev_3', inherited: true, n: 3 }]);
  });

  it('waits for the root when another session holds it, instead of leaving it without statistics', async () => {
    const tgt = targets[17]!;
    const db = await createDatabase(tgt, uniqueDbName('anrl'), SCHEMA.replace('ANALYZE;', ''));
    const leaves = ['ev_1', 'ev_2', 'ev_3a', 'ev_3b'].map((name) => ({ schema: 'public', name }));
    await withClient(tgt.conn(db), async (holder) => {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE ONLY ev IN SHARE UPDATE EXCLUSIVE MODE');
      let done = false;
      const analysing = analyzeTables(tgt.conn(db), [{ schema: 'public', name: 'ev', leaves }], 1).finally(() => (done = true));
      await new Promise((r) => setTimeout(r, 500));
      expect(done).toBe(false);
      await holder.query('COMMIT');
      await analysing;
    });
    const stats = await tgt.query<{ tablename: string }>(`SELECT DISTINCT tablename FROM pg_stats WHERE tablename LIKE 'ev%' AND inherited ORDER BY 1`, [], db);
    expect(stats.map((r) => r.tablename)).toEqual(['ev', 'ev_3']);
  });

  it('analyses the partitions again with the root where they cannot be held locked (here: one does not exist), rather than leave the root without statistics', async () => {
    const tgt = targets[17]!;
    const db = await createDatabase(tgt, uniqueDbName('anfb'), SCHEMA.replace('ANALYZE;', ''));
    const leaves = ['ev_1', 'ev_2', 'no_such_partition'].map((name) => ({ schema: 'public', name }));
    await analyzeTables(tgt.conn(db), [{ schema: 'public', name: 'ev', leaves }], 2);
    // Counters reach pg_stat when the sessions end: wait for the root's.
    const counts = await waitFor('the ANALYZE counters', async () => {
      const rows = await tgt.query<{ relname: string; n: number }>(
        `SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables WHERE relname LIKE 'ev%' ORDER BY 1`, [], db);
      return rows.find((r) => r.relname === 'ev')?.n ? rows : undefined;
    }, 10_000);
    expect(counts).toEqual(['ev', 'ev_1', 'ev_2', 'ev_3', 'ev_3a', 'ev_3b'].map((relname) => ({ relname, n: 1 })));
    const inherited = await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stats WHERE tablename = 'ev' AND inherited`, [], db);
    expect(inherited[0]!.n).toBe(3);
  });
});

const SMALL = `
  CREATE TABLE s1 (id int PRIMARY KEY, v int);
  CREATE TABLE s2 (id int PRIMARY KEY, v text);
  CREATE TABLE ex (id int PRIMARY KEY, v text);
  CREATE INDEX ex_lower ON ex (lower(v));
  CREATE TABLE xs (a int, b int);
  CREATE STATISTICS xs_ab (dependencies, ndistinct) ON a, b FROM xs;
  INSERT INTO s1 SELECT g, g FROM generate_series(1, 2000) g;
  INSERT INTO s2 SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
  INSERT INTO ex SELECT g, 'V' || (g % 50) FROM generate_series(1, 2000) g;
  INSERT INTO xs SELECT g % 10, g % 10 FROM generate_series(1, 2000) g;`;

describe('ANALYZE of small tables as their copy finishes', () => {
  it('leaves tables with expression indexes or extended statistics to the ANALYZE phase, and analyses the others as they come', async () => {
    const db = await createDatabase(src, uniqueDbName('ean'), SMALL);
    const tgt = targets[17]!;
    await tgt.query(`CREATE DATABASE ${db}`);
    await tgt.query('CREATE TABLE s1 (id int, v int); CREATE TABLE s2 (id int, v text); INSERT INTO s1 VALUES (1, 1)', [], db);
    const oids = await src.query<{ relname: string; oid: number }>(`SELECT relname, oid::int FROM pg_class WHERE relname IN ('s1', 's2', 'ex', 'xs')`, [], db);
    const oid = (n: string) => oids.find((r) => r.relname === n)!.oid;
    const withStats = await withClient(src.conn(db), (c) => tablesWithPostDataStatistics(c, oids.map((r) => r.oid)));
    expect([...withStats].sort()).toEqual([oid('ex'), oid('xs')].sort());
    const analyzed = new Set<string>();
    const a = earlyAnalyzer(tgt.conn(db), [{ key: 'k1', schema: 'public', name: 's1', bytes: 1 }, { key: 'k2', schema: 'public', name: 's2', bytes: 1 }], analyzed);
    a.tableDone('k1');
    a.tableDone('unknown'); // not a candidate: ignored
    await new Promise((r) => setTimeout(r, 500));
    await a.finish();
    a.tableDone('k2'); // after finish: left to the ANALYZE phase
    expect([...analyzed]).toEqual(['k1']);
    const counts = await tgt.query<{ relname: string; n: number }>(`SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables ORDER BY 1`, [], db);
    expect(counts).toEqual([{ relname: 's1', n: 1 }, { relname: 's2', n: 0 }]);
  });

  it('analyses the small tables that finished meanwhile in one statement, a larger one alone', async () => {
    const db = await createDatabase(src, uniqueDbName('ean'), SMALL);
    const tgt = targets[17]!;
    await tgt.query(`CREATE DATABASE ${db}`);
    await tgt.query('CREATE TABLE s1 (id int, v int); CREATE TABLE s2 (id int, v text); CREATE TABLE big (id int); INSERT INTO s1 VALUES (1, 1)', [], db);
    // The statements the analyzer sends (the servers' own counters below say what they did).
    const sent: string[] = [];
    const realQuery = pg.Client.prototype.query;
    const watch = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      if (typeof args[0] === 'string' && args[0].startsWith('ANALYZE')) sent.push(args[0]);
      return (realQuery as (...a: unknown[]) => unknown).apply(this, args) as never;
    });
    try {
      const analyzed = new Set<string>();
      const a = earlyAnalyzer(tgt.conn(db), [
        { key: 'k1', schema: 'public', name: 's1', bytes: 8192 },
        { key: 'k3', schema: 'public', name: 'big', bytes: 64 * 1024 ** 2 },
        { key: 'k2', schema: 'public', name: 's2', bytes: 8192 },
      ], analyzed);
      // Finished before the analyzer's session is open: all three wait together.
      a.tableDone('k1');
      a.tableDone('k3');
      a.tableDone('k2');
      await waitFor('the three tables analysed', () => analyzed.size === 3, 10_000, 20);
      await a.finish();
    } finally {
      watch.mockRestore();
    }
    expect(sent).toEqual(['ANALYZE "public"."s1", "public"."s2"', 'ANALYZE "public"."big"']);
    const counts = await tgt.query<{ relname: string; n: number }>(`SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables ORDER BY 1`, [], db);
    expect(counts).toEqual(['big', 's1', 's2'].map((relname) => ({ relname, n: 1 })));
  });

  it('names the table whose ANALYZE failed when it went in one statement with others', async () => {
    const tgt = targets[17]!;
    const db = await createDatabase(tgt, uniqueDbName('ean'), 'CREATE TABLE s1 (id int); CREATE TABLE s2 (id int)');
    const err = await analyzeTables(tgt.conn(db), [{ schema: 'public', name: 's1', with: [{ schema: 'public', name: 'gone' }, { schema: 'public', name: 's2' }] }], 1)
      .catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^ANALYZE of public\.gone on the target: .*"public\.gone" does not exist/);
    const counts = await tgt.query<{ relname: string; n: number }>(`SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables ORDER BY 1`, [], db);
    expect(counts).toEqual([{ relname: 's1', n: 1 }, { relname: 's2', n: 0 }]);
  });

  it('init: every table analysed exactly once, with the statistics of its expression index and its extended statistics', async () => {
    const tgt = targets[17]!;
    const db = await createDatabase(src, uniqueDbName('ean'), SMALL);
    const stateDir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
    dirs.push(stateDir);
    const events: ProgressEvent[] = [];
    const report = await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir, jobs: 2, noSync: true, noOwner: false,
      noPrivileges: false, noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false,
      signal: new AbortController().signal, progress: (e) => events.push(e),
    });
    expect(report.databases[0]!.phase).toBe('done');
    const counts = await tgt.query<{ relname: string; n: number }>(`SELECT relname, analyze_count::int AS n FROM pg_stat_user_tables ORDER BY 1`, [], db);
    expect(counts).toEqual(['ex', 's1', 's2', 'xs'].map((relname) => ({ relname, n: 1 })));
    const expr = await tgt.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stats WHERE tablename = 'ex_lower'`, [], db);
    expect(expr[0]!.n).toBe(1);
    const ext = await tgt.query<{ ok: boolean }>(`SELECT n_distinct IS NOT NULL AND dependencies IS NOT NULL AS ok FROM pg_stats_ext WHERE statistics_name = 'xs_ab'`, [], db);
    expect(ext).toEqual([{ ok: true }]);
    const done = events.find((e) => e.kind === 'end' && e.id.endsWith('/analyze'));
    expect(done && 'detail' in done ? done.detail : '').toMatch(/^\d+ tables/);
  });
});
