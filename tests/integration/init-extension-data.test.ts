/**
 * The user's rows in an extension's configuration tables, and its
 * configuration sequences, copied by init under its snapshot (as pg_dump does).
 * No extension shipped here marks a table for pg_extension_config_dump, so the
 * tests make one by hand: a table and a sequence added to pg_trgm and named in
 * pg_extension.extconfig, with the condition `WHERE id > 1` (row 1 is "the
 * extension's own", which CREATE EXTENSION would have made).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAULT_ENV } from '../../src/fault.js';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { connect } from '../../src/postgres/connect.js';
import { copyExtensionData } from '../../src/pipeline/shared/extension-data.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runCliProcess, startCli } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const dirs: string[] = [];

/** pg_trgm with a configuration table `cfg` (the extension's own row 1) and sequence `cfg_seq`. */
const CONFIG = `
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE TABLE cfg (id int PRIMARY KEY, note text NOT NULL);
  CREATE TABLE cfg_child (id int PRIMARY KEY, cfg_id int NOT NULL REFERENCES cfg);
  CREATE SEQUENCE cfg_seq;
  INSERT INTO cfg VALUES (1, 'the extension''s');
  ALTER EXTENSION pg_trgm ADD TABLE cfg;
  ALTER EXTENSION pg_trgm ADD TABLE cfg_child;
  ALTER EXTENSION pg_trgm ADD SEQUENCE cfg_seq;
  UPDATE pg_extension SET extconfig = ARRAY['cfg'::regclass::oid, 'cfg_seq'::regclass::oid, 'cfg_child'::regclass::oid],
                          extcondition = ARRAY['WHERE id > 1', '', ''] WHERE extname = 'pg_trgm';`;
/** cfg_child's row references cfg's: written after it, and on the target deleted before it. */
const USER_ROWS = `INSERT INTO cfg VALUES (2, 'job a'), (3, 'job b'); INSERT INTO cfg_child VALUES (1, 3); SELECT setval('cfg_seq', 42);`;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'extdata-src' }), clusters.start({ name: 'extdata-tgt' })]);
});
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function stateDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-extdata-'));
  dirs.push(d);
  return d;
}

const cfgRows = (c: LocalCluster, db: string) => c.query<{ id: number; note: string }>('SELECT id, note FROM cfg ORDER BY id', [], db);
const seqValue = async (c: LocalCluster, db: string) => (await c.query<{ v: string }>('SELECT last_value::text AS v FROM cfg_seq', [], db))[0]!.v;

describe('copyExtensionData', () => {
  it('replaces the rows the condition selects with the source\'s of the snapshot, sets the sequences, and says what it could not copy', async () => {
    const db = uniqueDbName('extcopy');
    await createDatabase(src, db, `${CONFIG} ${USER_ROWS}
      CREATE TABLE only_here (id int PRIMARY KEY);
      INSERT INTO only_here VALUES (7);
      ALTER EXTENSION pg_trgm ADD TABLE only_here;
      UPDATE pg_extension SET extconfig = extconfig || 'only_here'::regclass::oid, extcondition = extcondition || ''::text WHERE extname = 'pg_trgm';`);
    // The target as CREATE EXTENSION would leave it, plus rows an interrupted earlier copy left behind.
    await createDatabase(tgt, db, `${CONFIG} INSERT INTO cfg VALUES (2, 'stale'); INSERT INTO cfg_child VALUES (9, 2);`);

    const holder = await connect(src.conn(db));
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const snapshot = (await holder.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      // Written after the snapshot: not copied. A sequence is read outside any snapshot (as pg_dump reads it): its latest value.
      await src.query(`INSERT INTO cfg VALUES (4, 'later'); SELECT setval('cfg_seq', 99);`, [], db);
      const warnings: string[] = [];
      const opts = { source: src.conn(db), target: tgt.conn(db), snapshot, rules: emptyScope().rules, warn: (m: string) => warnings.push(m) };

      const r = await copyExtensionData(opts);
      expect(r).toEqual({ tables: 2, rows: 3, sequences: 1, skipped: ['public.only_here'] });
      expect(await cfgRows(tgt, db)).toEqual([{ id: 1, note: 'the extension\'s' }, { id: 2, note: 'job a' }, { id: 3, note: 'job b' }]);
      expect(await tgt.query('SELECT id, cfg_id FROM cfg_child', [], db)).toEqual([{ id: 1, cfg_id: 3 }]);
      expect(await seqValue(tgt, db)).toBe('99');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/^public\.only_here \(configuration of extension pg_trgm\) was not copied: the table does not exist on the target/);
      expect(warnings[0]).toContain(`\\copy (SELECT "id" FROM ONLY "public"."only_here") TO 'rows.csv' on the source`);

      // Again (a rerun of init's data phase): the same rows, not twice as many.
      expect(await copyExtensionData(opts)).toMatchObject({ tables: 2, rows: 3 });
      expect(await cfgRows(tgt, db)).toHaveLength(3);

      // Left out of the scope by a pattern, or under a data rule: not copied.
      const none = await copyExtensionData({ ...opts, rules: { ...emptyScope().rules, exclude: ['public.cfg*', 'public.only_here'] } });
      expect(none).toEqual({ tables: 0, rows: 0, sequences: 0, skipped: [] });
      warnings.length = 0;
      const masked = await copyExtensionData({
        ...opts, rules: { ...emptyScope().rules, exclude: ['public.only_here', 'public.cfg_child'], dataRules: [{ key: 'cfg.note', rule: { kind: 'null' } }] },
      });
      expect(masked).toMatchObject({ tables: 0, sequences: 1, skipped: ['public.cfg'] });
      expect(warnings[0]).toMatch(/^public\.cfg .* not copied: a data rule names its column note/);
    } finally {
      await holder.end();
    }
  });

  it('a table the target refuses is left as it was, with a warning, and the others are still copied', async () => {
    const db = uniqueDbName('extrefuse');
    await createDatabase(src, db, `${CONFIG} ${USER_ROWS}
      CREATE TABLE later_cfg (id int PRIMARY KEY);
      INSERT INTO later_cfg VALUES (1), (2);
      ALTER EXTENSION pg_trgm ADD TABLE later_cfg;
      UPDATE pg_extension SET extconfig = extconfig || 'later_cfg'::regclass::oid, extcondition = extcondition || ''::text WHERE extname = 'pg_trgm';`);
    // On the target, cfg takes no note longer than 4 characters: its COPY fails half-way.
    // It holds a row of an earlier copy: left as it is when the new rows are refused.
    await createDatabase(tgt, db, `${CONFIG} ALTER TABLE cfg ADD CHECK (length(note) <= 4 OR id = 1); INSERT INTO cfg VALUES (2, 'old');
      CREATE TABLE later_cfg (id int PRIMARY KEY); ALTER EXTENSION pg_trgm ADD TABLE later_cfg;`);
    const holder = await connect(src.conn(db));
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const snapshot = (await holder.query<{ s: string }>('SELECT pg_export_snapshot() AS s')).rows[0]!.s;
      const warnings: string[] = [];
      const r = await copyExtensionData({ source: src.conn(db), target: tgt.conn(db), snapshot, rules: emptyScope().rules, warn: (m) => warnings.push(m) });
      // cfg_child's row references a row of cfg that is not there: refused too.
      expect(r).toEqual({ tables: 1, rows: 2, sequences: 1, skipped: ['public.cfg', 'public.cfg_child'] });
      expect(warnings[0]).toMatch(/^public\.cfg .* not copied: the target refused it: .*check constraint/);
      expect(warnings[1]).toMatch(/^public\.cfg_child .* not copied: the target refused it: .*foreign key constraint/);
      expect(await cfgRows(tgt, db)).toEqual([{ id: 1, note: 'the extension\'s' }, { id: 2, note: 'old' }]);
      expect(await tgt.query('SELECT id FROM later_cfg ORDER BY id', [], db)).toEqual([{ id: 1 }, { id: 2 }]);
    } finally {
      await holder.end();
    }
  });
});

describe('init and the configuration rows', () => {
  it('copies them when the target\'s extension has the table, after a kill -9 before the data phase', async () => {
    const db = uniqueDbName('extinit');
    await createDatabase(src, db, `${CONFIG} ${USER_ROWS}
      CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;`);
    const dir = await stateDir();
    const args = ['init', '--yes', '--no-sync', '--no-roles', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir];
    // Killed once the schema is restored: the target now has pg_trgm, but not its hand-made table, which the test adds
    // as the extension's script would have made it.
    const killed = (await startCli(args, { env: { [FAULT_ENV]: 'init.pre-data' } })) as unknown as { signal?: string };
    expect(killed.signal).toBe('SIGKILL');
    await tgt.query(CONFIG.replace('CREATE EXTENSION IF NOT EXISTS pg_trgm;', ''), [], db);

    const r = await runCliProcess(args);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/extensions' configuration rows: 2 tables, 3 rows, 1 sequence/);
    expect(await cfgRows(tgt, db)).toEqual([{ id: 1, note: 'the extension\'s' }, { id: 2, note: 'job a' }, { id: 3, note: 'job b' }]);
    expect(await seqValue(tgt, db)).toBe('42');
    expect(await tgt.query('SELECT count(*)::int AS n FROM t', [], db)).toEqual([{ n: 100 }]);
  });

  it('cutover copies them again once the source is fenced', async () => {
    const db = uniqueDbName('extcut');
    await createDatabase(src, db, `${CONFIG} ${USER_ROWS}
      CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;`);
    const dir = await stateDir();
    const cli = (...a: string[]) => runCliProcess([...a, '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir]);
    const killed = (await startCli(['init', '--yes', '--no-roles', '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir], {
      env: { [FAULT_ENV]: 'init.pre-data' },
    })) as unknown as { signal?: string };
    expect(killed.signal).toBe('SIGKILL');
    await tgt.query(CONFIG.replace('CREATE EXTENSION IF NOT EXISTS pg_trgm;', ''), [], db);
    for (const step of [['init', '--yes', '--no-roles'], ['sync', '--wait-timeout', '120']]) {
      const r = await cli(...step);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    // Changed after init: replication does not carry them.
    await src.query(`INSERT INTO cfg VALUES (5, 'job c'); DELETE FROM cfg WHERE id = 2; INSERT INTO cfg_child VALUES (2, 5); SELECT setval('cfg_seq', 77); INSERT INTO t VALUES (101, 'new')`, [], db);
    expect(await cfgRows(tgt, db)).toHaveLength(3);

    const r = await cli('cutover', '--yes', '--json');
    expect(r.exitCode, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { phases: { name: string }[] };
    expect(report.phases.map((p) => p.name)).toContain('extension-data');
    expect(await cfgRows(tgt, db)).toEqual([{ id: 1, note: 'the extension\'s' }, { id: 3, note: 'job b' }, { id: 5, note: 'job c' }]);
    expect(await tgt.query('SELECT id, cfg_id FROM cfg_child ORDER BY id', [], db)).toEqual([{ id: 1, cfg_id: 3 }, { id: 2, cfg_id: 5 }]);
    expect(await seqValue(tgt, db)).toBe('77');
    expect(await tgt.query('SELECT count(*)::int AS n FROM t', [], db)).toEqual([{ n: 101 }]);
  });

  it('warns and finishes when the target\'s extension has no such table', async () => {
    const db = uniqueDbName('extmiss');
    await createDatabase(src, db, `${CONFIG} ${USER_ROWS}`);
    const report = await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: await stateDir(), jobs: 2, noSync: true, noOwner: false,
      noPrivileges: false, noRoles: true, fkNotValid: false, setReplicaIdentityFull: false, dropExisting: false, restart: false,
      dryRun: false, signal: new AbortController().signal,
    });
    expect(report.databases[0]!.phase).toBe('done');
    expect(report.warnings.join('\n')).toMatch(/public\.cfg \(configuration of extension pg_trgm\) was not copied: the table does not exist on the target/);
    // The sequence is not there either; its value is named.
    expect(report.warnings.join('\n')).toContain(`SELECT setval('"public"."cfg_seq"', 42, true)`);
  });
});
