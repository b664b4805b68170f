/**
 * Old → new major: the rich schema from an embedded PostgreSQL 13 source (no
 * TID range scans, EXPORT_SNAPSHOT syntax) into an embedded 17 target. pg_dump
 * 15 can read 13 but not 17, so the structure is compared through the catalog.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { catalogSummary, largeObjects, sequenceValues, tableHashes } from '../support/compare.js';

const RICH = readFileSync(new URL('../fixtures/rich-schema.sql', import.meta.url), 'utf8');
const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let stateDir: string;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.startMajor(13, { name: 'init13' }), clusters.startMajor(17, { name: 'init17' })]);
  stateDir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
});
afterAll(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

describe('init across majors', () => {
  it('copies the rich schema from PostgreSQL 13 to 17 with a slot', async () => {
    const db = await createDatabase(src, uniqueDbName('rich13'), RICH);
    // The database's own settings, comment and privileges, which pg_dump writes only with --create.
    await src.query(`ALTER DATABASE ${db} SET search_path = "$user", shop, public; COMMENT ON DATABASE ${db} IS 'from 13';
      REVOKE TEMPORARY ON DATABASE ${db} FROM PUBLIC`);
    const report = await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir, jobs: 2, noSync: false, noOwner: false,
      noPrivileges: false, noRoles: false, fkNotValid: false, setReplicaIdentityFull: true, dropExisting: false, restart: false,
      dryRun: false, signal: new AbortController().signal,
      // Small parts, so that 13's integer-key splitting is used for the bigger tables.
      splitThresholdBytes: 256 * 1024, maxParts: 4,
    });
    const d = report.databases[0]!;
    expect(d.phase).toBe('done');
    const state = JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as RunState;
    const docs = state.databases[db]!.tables['shop.documents']!;
    expect(docs.parts.length).toBeGreaterThan(1); // split by integer key: 13 has no TID range scans
    expect(docs.parts.every((p) => p.status === 'done')).toBe(true);
    expect(d.slot?.consistentLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    const [slot] = await src.query<{ plugin: string }>('SELECT plugin FROM pg_replication_slots WHERE slot_name = $1', [d.slot!.name]);
    expect(slot?.plugin).toBe('pgoutput');

    const [srcCat, tgtCat] = await Promise.all([catalogSummary(src.conn(db)), catalogSummary(tgt.conn(db))]);
    expect(srcCat.length).toBeGreaterThan(200);
    // Accepted difference: PostgreSQL 14+ gives every range type a multirange type and its constructors.
    expect(tgtCat.filter((l) => !/^function shop\.float_multirange\(/.test(l))).toEqual(srcCat);
    const [srcRows, tgtRows] = await Promise.all([tableHashes(src.conn(db)), tableHashes(tgt.conn(db))]);
    expect(tgtRows).toEqual(srcRows);
    expect(await largeObjects(tgt.conn(db))).toEqual(await largeObjects(src.conn(db)));
    expect(await sequenceValues(tgt.conn(db))).toEqual(await sequenceValues(src.conn(db)));
    const props = `SELECT shobj_description(d.oid, 'pg_database') AS comment, has_database_privilege('public', d.oid, 'TEMPORARY') AS temp,
                          (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0) AS settings
                     FROM pg_database d WHERE d.datname = $1`;
    expect(await tgt.query(props, [db])).toEqual([{ comment: 'from 13', temp: false, settings: ['search_path="$user", shop, public'] }]);
    await src.query('SELECT pg_drop_replication_slot($1)', [d.slot!.name]);
  });

  it('leaves out a preload setting naming a library the target cannot load (every login to the copy would fail), with a warning', async () => {
    const db = await createDatabase(src, uniqueDbName('preload13'), 'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 50);');
    const role = `pl_${db}`.slice(0, 60);
    await src.query(`CREATE ROLE ${role} NOLOGIN`);
    // adminpack is in PostgreSQL 13's library folder and gone from 17's; auto_explain is in both.
    await src.query(`ALTER DATABASE ${db} SET session_preload_libraries = 'adminpack';
      ALTER ROLE ${role} IN DATABASE ${db} SET session_preload_libraries = 'auto_explain'`);
    const warnings: string[] = [];
    const report = await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: path.join(stateDir, db), jobs: 2, noSync: true, noOwner: false,
      noPrivileges: false, noRoles: false, fkNotValid: false, setReplicaIdentityFull: true, dropExisting: false, restart: false,
      dryRun: false, signal: new AbortController().signal,
      progress: (e) => void (e.kind === 'log' && e.level === 'warn' && warnings.push(e.message)),
    });
    expect(report.databases[0]!.phase).toBe('done');
    expect(warnings.join('\n')).toContain(`database "${db}": session_preload_libraries was not carried over: the target cannot load library "adminpack"`);
    // The copy still takes connections (with the setting, each would fail: could not access file "adminpack").
    expect(await tgt.query('SELECT count(*)::int AS n FROM t', [], db)).toEqual([{ n: 50 }]);
    const settings = `SELECT coalesce(s.setrole::regrole::text, '-') AS role, s.setconfig FROM pg_db_role_setting s
                       WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) ORDER BY 1`;
    expect(await tgt.query(settings, [db])).toEqual([{ role, setconfig: ['session_preload_libraries=auto_explain'] }]);
  });
});
