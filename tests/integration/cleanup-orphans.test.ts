/**
 * cleanup and the table-synchronisation slots of other subscriptions: a slot
 * of a subscription that no longer exists on the target (what `status` lists
 * as a leftover) is listed and dropped; the slots of a subscription that
 * exists (not pgferry's) and of another target server are left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCleanup } from '../../src/pipeline/cleanup/run.js';
import { runStatus } from '../../src/pipeline/status/index.js';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'orph-src' }), clusters.start({ name: 'orph-tgt' })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-orphans-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const slotsOf = async (db: string) =>
  (await src.query<{ slot_name: string }>('SELECT slot_name FROM pg_replication_slots WHERE database = $1 ORDER BY 1', [db])).map((r) => r.slot_name);

describe('cleanup and table-synchronisation slots', () => {
  it('drops those of subscriptions gone from the target, and nothing of a subscription that exists', async () => {
    const db = await createDatabase(src, uniqueDbName('orph'), 'CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION other_pub FOR TABLE t;');
    await createDatabase(tgt, db, 'CREATE TABLE t (id int PRIMARY KEY);');
    const sysid = (await tgt.query<{ s: string }>('SELECT system_identifier::text AS s FROM pg_control_system()'))[0]!.s;
    // Someone else's subscription on the target (not connected: it only needs an oid).
    await tgt.query(`CREATE SUBSCRIPTION other_sub CONNECTION '${src.url(db)}' PUBLICATION other_pub WITH (connect = false)`, [], db);
    const otherOid = (await tgt.query<{ oid: number }>("SELECT oid::int FROM pg_subscription WHERE subname = 'other_sub'"))[0]!.oid;
    const gone = (await tgt.query<{ n: number }>('SELECT coalesce(max(oid::int), 0) + 1000 AS n FROM pg_subscription'))[0]!.n;
    const orphan = `pg_${gone}_sync_16400_${sysid}`;
    const foreign = `pg_${otherOid}_sync_16400_${sysid}`;
    const otherServer = `pg_${gone}_sync_16400_1234567890123456789`;
    for (const s of [orphan, foreign, otherServer]) await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [s], db);

    // status calls the orphan a leftover that cleanup removes …
    const status = await runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: dir });
    expect(status.databases[0]!.leftovers.map((l) => l.name)).toEqual([orphan]);

    // … and cleanup lists and drops it, leaving the others.
    const dry = await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, dryRun: true });
    expect(dry.items).toEqual([{ side: 'source', kind: 'tablesync-slot', database: db, name: orphan }]);
    const done = await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, confirm: async () => true });
    expect(done.items.map((i) => i.name)).toEqual([orphan]);
    expect(await slotsOf(db)).toEqual([foreign, otherServer].sort());

    const again = await runCleanup({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, dryRun: true });
    expect(again.items).toEqual([]);
    for (const s of [foreign, otherServer]) await src.query('SELECT pg_drop_replication_slot($1)', [s]);
    await tgt.query('ALTER SUBSCRIPTION other_sub SET (slot_name = NONE)', [], db);
    await tgt.query('DROP SUBSCRIPTION other_sub', [], db);
  });
});
