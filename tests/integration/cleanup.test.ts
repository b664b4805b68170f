/**
 * cleanup against a replicating pair: afterwards no pgferry object is left on
 * either side (pg_replication_slots, pg_publication, pg_subscription), its
 * orphaned table-synchronisation slot included, the state files are gone,
 * objects pgferry did not create survive, and a second run finds nothing.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import { ExitCode, type PgferryError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCleanup } from '../../src/pipeline/cleanup/index.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runSync } from '../../src/pipeline/sync/index.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, writerSchemaSql } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let dir: string;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'cleanup-src' }), clusters.start({ name: 'cleanup-tgt' })]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-cleanup-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function pgferryObjects(db: string): Promise<string[]> {
  const [slots, pubs, subs] = await Promise.all([
    src.query<{ n: string }>("SELECT slot_name AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' OR slot_name ~ '^pg_[0-9]+_sync_'"),
    src.query<{ n: string }>("SELECT 'publication ' || pubname AS n FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db),
    tgt.query<{ n: string }>("SELECT 'subscription ' || subname AS n FROM pg_subscription WHERE subname LIKE 'pgferry%'"),
  ]);
  return [...slots, ...pubs, ...subs].map((r) => r.n);
}

describe('cleanup', () => {
  it('drops everything pgferry made on both sides and nothing else; twice is fine', async () => {
    const db = await createDatabase(src, uniqueDbName('cleanup'), writerSchemaSql(1000));
    // Objects that are not pgferry's, on both sides.
    await src.query('CREATE PUBLICATION other_pub FOR TABLE w_items', [], db);
    await src.query("SELECT pg_create_logical_replication_slot('other_slot', 'pgoutput')", [], db);
    await tgt.query(
      `CREATE SUBSCRIPTION other_sub CONNECTION '${src.url(db).replace(/'/g, "''")}' PUBLICATION other_pub WITH (connect = false, slot_name = NONE, enabled = false)`,
    );
    const writer = startWriter(src.conn(db), { pauseMs: 5 });
    await runInit({
      source: src.conn(db), target: tgt.conn(db), scope: emptyScope(), stateDir: dir, jobs: 2, noSync: false, noOwner: false, noPrivileges: false,
      noRoles: true, fkNotValid: false, dropExisting: false, restart: false, dryRun: false, signal: new AbortController().signal,
    });
    await runSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, waitTimeoutSeconds: 120, pollMs: 250 });
    await writer.stop();
    // A table-synchronisation slot of pgferry's subscription left behind.
    const subOid = (await tgt.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_subscription WHERE subname LIKE 'pgferry%'"))[0]!.oid;
    const sysid = (await tgt.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id;
    await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [`pg_${subOid}_sync_99999_${sysid}`], db);
    // …and one of a subscription of another server: not ours.
    await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [`pg_${subOid}_sync_99999_1234567890`], db);
    expect((await pgferryObjects(db)).length).toBe(5);

    const opts = { source: src.conn(db), target: tgt.conn(db), stateDir: dir };
    // Declining drops nothing.
    const declined = await runCleanup({ ...opts, confirm: async () => false }).catch((e: unknown) => e);
    expect((declined as PgferryError).exitCode).toBe(ExitCode.usage);
    expect((await pgferryObjects(db)).length).toBe(5);

    let asked: string[] = [];
    const r = await runCleanup({ ...opts, confirm: async (items) => ((asked = items.map((i) => `${i.kind} ${i.name}`)), true) });
    expect(asked.filter((a) => !a.startsWith('state '))).toHaveLength(4);
    expect(asked).toContain(`tablesync-slot pg_${subOid}_sync_99999_${sysid}`);
    expect(r.items.filter((i) => i.kind === 'state').length).toBeGreaterThan(0);
    expect(await pgferryObjects(db)).toEqual([`pg_${subOid}_sync_99999_1234567890`]);
    expect(existsSync(path.join(dir, 'state.json'))).toBe(false);
    expect(existsSync(path.join(dir, 'sync.json'))).toBe(false);
    // What pgferry did not create is still there.
    expect(await src.query("SELECT 1 FROM pg_publication WHERE pubname = 'other_pub'", [], db)).toHaveLength(1);
    expect(await src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'other_slot'")).toHaveLength(1);
    expect(await tgt.query("SELECT 1 FROM pg_subscription WHERE subname = 'other_sub'")).toHaveLength(1);
    await tgt.query('DROP SUBSCRIPTION other_sub');
    // Rows stay on the target: cleanup removes replication, not data.
    expect((await tgt.query<{ n: number }>('SELECT count(*)::int AS n FROM w_items', [], db))[0]!.n).toBeGreaterThan(1000);

    const again = await runCleanup({ ...opts, scope: { ...emptyScope() }, confirm: async () => true });
    expect(again.items).toEqual([]);
    await src.query("SELECT pg_drop_replication_slot($1)", [`pg_${subOid}_sync_99999_1234567890`]);
  });
});
