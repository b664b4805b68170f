/**
 * status against a real replicating pair, with the writer running: healthy
 * (exit 0, "in sync"), broken while the subscription is disabled (exit 2),
 * lagging while the apply worker is held up on a lock (exit 1), an orphaned
 * table-synchronisation slot reported, the JSON document matching the
 * documented schema (docs/json/status.md), status without a state directory,
 * and broken once the slot is dropped.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { scopeFromFlags } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runInit } from '../../src/pipeline/init/run.js';
import { runStatus, type StatusReport } from '../../src/pipeline/status/index.js';
import { runSync } from '../../src/pipeline/sync/index.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { startWriter, untilCaughtUp, waitFor, WRITER_FILTER_FLAG, writerSchemaSql, type Writer } from '../support/writer.js';

/** The schema of `pgferry status --json`, as docs/json/status.md documents it. */
const lsn = z.string().regex(/^[0-9A-F]+\/[0-9A-F]+$/);
const StatusSchema = z.strictObject({
  command: z.literal('status'),
  checkedAt: z.string(),
  health: z.enum(['healthy', 'lagging', 'broken']),
  exitCode: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  verdict: z.string(),
  maxLag: z.strictObject({ bytes: z.number().nullable(), seconds: z.number().nullable() }),
  fromState: z.boolean(),
  source: z.strictObject({ endpoint: z.string(), major: z.number(), systemIdentifier: z.string() }),
  target: z.strictObject({ endpoint: z.string(), major: z.number(), systemIdentifier: z.string() }),
  databases: z.array(
    z.strictObject({
      sourceDatabase: z.string(),
      targetDatabase: z.string(),
      health: z.enum(['healthy', 'lagging', 'broken']),
      problems: z.array(z.strictObject({ level: z.enum(['broken', 'lagging', 'warning']), message: z.string(), fix: z.string().nullable() })),
      sourceLsn: lsn,
      publication: z.strictObject({
        name: z.string(), exists: z.boolean(), tables: z.number(),
        masked: z.array(z.strictObject({ schema: z.string(), name: z.string(), columns: z.array(z.string()) })),
      }),
      slot: z.strictObject({
        name: z.string(), exists: z.boolean(), active: z.boolean(), walStatus: z.string().nullable(), retainedBytes: z.number().nullable(),
        confirmedFlushLsn: lsn.nullable(),
      }),
      lag: z.strictObject({ bytes: z.number().nullable(), seconds: z.number().nullable() }),
      applier: z.enum(['native', 'client']),
      client: z.strictObject({ running: z.boolean(), pid: z.number().nullable(), heartbeatAt: z.string().nullable(), appliedLsn: z.string().nullable() }).nullable(),
      subscription: z.strictObject({
        name: z.string(), exists: z.boolean(), enabled: z.boolean(), workerRunning: z.boolean(), workerPid: z.number().nullable(),
        receivedLsn: lsn.nullable(), appliedLsn: lsn.nullable(), lastMessageAt: z.string().nullable(), syncWorkers: z.number(),
        applyErrors: z.number().nullable(), syncErrors: z.number().nullable(),
      }),
      tables: z.strictObject({
        total: z.number(), replicating: z.number(), synchronising: z.number(),
        list: z.array(z.strictObject({ schema: z.string(), name: z.string(), state: z.enum(['i', 'd', 'f', 's', 'r']), stateName: z.string() })),
      }),
      leftovers: z.array(z.strictObject({ side: z.enum(['source', 'target']), kind: z.enum(['slot', 'tablesync-slot', 'publication']), name: z.string(), detail: z.string() })),
    }),
  ),
  seconds: z.number(),
});

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let db: string;
let dir: string;
let writer: Writer;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'status-src' }), clusters.start({ name: 'status-tgt' })]);
  db = await createDatabase(src, uniqueDbName('status'), writerSchemaSql(2000));
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-status-'));
  writer = startWriter(src.conn(db), { pauseMs: 5 });
  const scope = scopeFromFlags({ tableFilter: [WRITER_FILTER_FLAG] });
  await runInit({
    source: src.conn(db), target: tgt.conn(db), scope, stateDir: dir, jobs: 2, noSync: false, noOwner: false, noPrivileges: false, noRoles: true,
    fkNotValid: false, dropExisting: false, restart: false, dryRun: false, signal: new AbortController().signal,
  });
  await runSync({ source: src.conn(db), target: tgt.conn(db), stateDir: dir, waitTimeoutSeconds: 120, pollMs: 250 });
});
afterAll(async () => {
  await writer?.stop().catch(() => {});
  if (dir) await rm(dir, { recursive: true, force: true });
});

function status(maxLag?: { bytes: number | null; seconds: number | null }, withState = true): Promise<StatusReport> {
  return runStatus({ source: src.conn(db), target: tgt.conn(db), stateDir: withState ? dir : path.join(dir, 'none'), ...(maxLag ? { maxLag } : {}) });
}

describe('status', () => {
  it('healthy: exit 0, "in sync", every table replicating, JSON as documented, quickly', async () => {
    await untilCaughtUp(src, tgt, db, dir);
    const r = await status();
    expect(r.exitCode).toBe(0);
    expect(r.verdict).toMatch(/^in sync · lag \d+(\.\d)? (B|kB|MB) \/ \d+\.\d s$/);
    const d = r.databases[0]!;
    expect(d.tables).toMatchObject({ total: 4, replicating: 4, synchronising: 0 });
    expect(d.slot).toMatchObject({ exists: true, active: true, walStatus: 'reserved' });
    expect(d.subscription).toMatchObject({ exists: true, enabled: true, workerRunning: true, applyErrors: 0 });
    expect(d.publication).toMatchObject({ exists: true, tables: 4 });
    StatusSchema.parse(JSON.parse(JSON.stringify(r)));
    // Built for `watch -n 5`: well under a second on a healthy local pair (two probes, two reads, in parallel).
    expect(r.seconds).toBeLessThan(1.5);
    // Without a state directory pgferry finds its objects by name.
    const byName = await status(undefined, false);
    expect(byName.fromState).toBe(false);
    expect(byName.databases[0]!.subscription.name).toBe(d.subscription.name);
    expect(byName.exitCode).toBe(0);
  });

  it('broken while the subscription is disabled, lagging while the apply worker is held up, healthy again after', async () => {
    const sub = (await status()).databases[0]!.subscription.name;
    await tgt.query(`ALTER SUBSCRIPTION ${sub} DISABLE`, [], db);
    await waitFor('the slot to be released', async () => !(await status()).databases[0]!.slot.active);
    const disabled = await status();
    expect(disabled.exitCode).toBe(2);
    expect(disabled.verdict).toMatch(/^BROKEN · subscription \S+ is disabled/);
    expect(disabled.databases[0]!.problems[0]!.fix).toMatch(/pgferry sync|ENABLE/);
    StatusSchema.parse(JSON.parse(JSON.stringify(disabled)));

    // The apply worker waits on a lock the test holds: running and connected, but behind.
    const blocker = new pg.Client({ host: '127.0.0.1', port: tgt.port, user: 'postgres', password: tgt.password, database: db });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE w_items IN ACCESS EXCLUSIVE MODE');
      await tgt.query(`ALTER SUBSCRIPTION ${sub} ENABLE`, [], db);
      await waitFor('lagging', async () => (await status({ bytes: 4096, seconds: null })).exitCode === 1, 30_000);
      const lagging = await status({ bytes: 4096, seconds: null });
      expect(lagging.verdict).toMatch(/^lagging · behind by .* \(limit 4\.0 kB\)/);
      expect(lagging.databases[0]!.subscription.workerRunning).toBe(true);
      expect(lagging.databases[0]!.lag.bytes).toBeGreaterThan(4096);
      // The same lag within a generous limit is healthy.
      expect((await status({ bytes: 1024 ** 3, seconds: null })).exitCode).toBe(0);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      await blocker.end();
    }
    await untilCaughtUp(src, tgt, db, dir);
  });

  it('reports an orphaned table-synchronisation slot of its subscription', async () => {
    const r = await status();
    const subOid = (await tgt.query<{ oid: number }>('SELECT oid::int AS oid FROM pg_subscription WHERE subname = $1', [r.databases[0]!.subscription.name], db))[0]!.oid;
    const relid = (await tgt.query<{ oid: number }>("SELECT 'w_docs'::regclass::oid::int AS oid", [], db))[0]!.oid;
    const name = `pg_${subOid}_sync_${relid}_${r.target.systemIdentifier}`;
    await src.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [name], db);
    const after = await status();
    expect(after.exitCode).toBe(0);
    expect(after.databases[0]!.leftovers).toEqual([expect.objectContaining({ kind: 'tablesync-slot', name })]);
    expect(after.databases[0]!.problems.some((p) => p.level === 'warning' && p.message.includes(name))).toBe(true);
    await src.query('SELECT pg_drop_replication_slot($1)', [name], db);
  });

  it('broken once the slot is gone', async () => {
    const r = await status();
    const { name: sub } = r.databases[0]!.subscription;
    await tgt.query(`ALTER SUBSCRIPTION ${sub} DISABLE`, [], db);
    await waitFor('the slot to be released', async () => !(await status()).databases[0]!.slot.active);
    await src.query('SELECT pg_drop_replication_slot($1)', [r.databases[0]!.slot.name], db);
    await tgt.query(`ALTER SUBSCRIPTION ${sub} ENABLE`, [], db);
    const broken = await status();
    expect(broken.exitCode).toBe(2);
    expect(broken.verdict).toMatch(/^BROKEN · replication slot \S+ is missing on the source/);
    StatusSchema.parse(JSON.parse(JSON.stringify(broken)));
  });
});


