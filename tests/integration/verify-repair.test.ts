/**
 * verify --repair against real clusters: damage the target (missing, changed
 * and extra rows under odd identifiers, a changed jsonb, rows in partitions,
 * removed and extra duplicates in a table without a key, an identity and a
 * generated column), repair, and check with an independent comparison, a
 * second verify, and the target's own write counters (pg_stat_user_tables)
 * that no more rows were written than differed. Then the same while a writer
 * runs on the source and a subscription applies it: nothing the writer did
 * is undone.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { verifyAndRepair, VERIFY_DEFAULTS, type RepairOptions, type RepairReport, type VerifyOptions } from '../../src/pipeline/verify/index.js';
import { quoteLiteral } from '../../src/postgres/identifiers.js';
import { WAL_END_SQL } from '../../src/postgres/lsn.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { startWriter, waitFor, writerSchemaSql, type Writer } from '../support/writer.js';
import { nextDouble, richDatabase, runVerify, unequal } from './verify-helpers.js';

const ODD = `"Odd ""Schema"""."Order Lines"`;

const SCHEMA = `
CREATE SCHEMA "Odd ""Schema""";
CREATE TABLE ${ODD} ("Line No" int, "select" text, qty numeric, doc jsonb, blob bytea, at timestamptz, note text, PRIMARY KEY ("Line No", "select"));
CREATE TABLE keyless_log (actor int, msg text, amount float8);
ALTER TABLE keyless_log REPLICA IDENTITY FULL;
CREATE TABLE events (id int, region text, happened date, payload jsonb, PRIMARY KEY (id, happened)) PARTITION BY RANGE (happened);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE gen (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int, doubled int GENERATED ALWAYS AS (v * 2) STORED);`;

const DATA = `
INSERT INTO ${ODD} SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'Ö b' END, i / 4.0, jsonb_build_object('i', i, 'tags', jsonb_build_array('x', i % 3)),
  decode(md5(i::text), 'hex'), '2024-01-01'::timestamptz + i * interval '1 minute 0.000001 second', CASE WHEN i % 5 = 0 THEN NULL ELSE 'n' || i END
  FROM generate_series(1, 3000) i;
INSERT INTO keyless_log SELECT i % 50, 'm' || (i % 40), (i % 7) / 3.0 FROM generate_series(1, 2000) i;
INSERT INTO events SELECT i, CASE WHEN i % 3 = 0 THEN 'eu' ELSE 'us' END, DATE '2023-06-01' + (i % 400), jsonb_build_object('n', i) FROM generate_series(1, 2000) i;
INSERT INTO gen (v) SELECT i FROM generate_series(1, 100) i;`;

/** Damage on the target, and the writes a repair needs: 6 inserts, 6 updates, 5 deletes. */
const DAMAGE = `
DELETE FROM ${ODD} WHERE "Line No" IN (7, 1500, 2999);
UPDATE ${ODD} SET qty = qty + 1 WHERE "Line No" = 10;
UPDATE ${ODD} SET doc = jsonb_set(doc, '{tags,1}', '"changed"') WHERE "Line No" = 11;
UPDATE ${ODD} SET note = NULL WHERE "Line No" = 12;
UPDATE ${ODD} SET note = '' WHERE "Line No" = 15;
INSERT INTO ${ODD} VALUES (5000, 'extra', 1, '{}', NULL, NULL, NULL), (0, 'a', 0, 'null', '\\x00', '2020-01-01', '');
DELETE FROM keyless_log WHERE ctid = (SELECT ctid FROM keyless_log WHERE actor = 3 AND msg = 'm3' LIMIT 1);
INSERT INTO keyless_log SELECT actor, msg, amount FROM keyless_log WHERE actor = 4 AND msg = 'm4' LIMIT 1;
INSERT INTO keyless_log SELECT actor, msg, amount FROM keyless_log WHERE actor = 4 AND msg = 'm4' LIMIT 1;
INSERT INTO keyless_log VALUES (99, 'not on the source', NULL);
UPDATE events SET payload = '{"n": "changed"}' WHERE id = 1700;
DELETE FROM events WHERE id = 100;
DELETE FROM gen WHERE id = 5;
UPDATE gen SET v = -6 WHERE id = 6;`;

const EXPECTED = { ins: 6, upd: 6, del: 5 };

interface Counters {
  ins: number;
  upd: number;
  del: number;
}

async function counters(c: LocalCluster, db: string): Promise<Counters> {
  const [r] = await c.query<{ ins: string; upd: string; del: string }>(
    `SELECT coalesce(sum(n_tup_ins), 0)::text AS ins, coalesce(sum(n_tup_upd), 0)::text AS upd, coalesce(sum(n_tup_del), 0)::text AS del FROM pg_stat_user_tables`,
    [],
    db,
  );
  return { ins: Number(r!.ins), upd: Number(r!.upd), del: Number(r!.del) };
}

/** The counters once the backends that wrote have reported (two equal reads in a row). */
async function settledCounters(c: LocalCluster, db: string): Promise<Counters> {
  let last = await counters(c, db);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await counters(c, db);
    if (now.ins === last.ins && now.upd === last.upd && now.del === last.del) return now;
    last = now;
  }
  return last;
}

function repairRun(source: LocalCluster, srcDb: string, target: LocalCluster, tgtDb: string, ro: Partial<RepairOptions> = {}, extra: Partial<VerifyOptions> = {}) {
  return verifyAndRepair(
    {
      source: source.conn(srcDb),
      target: target.conn(tgtDb),
      scope: emptyScope(),
      jobs: 2,
      chunkRows: 500,
      maxDiffs: VERIFY_DEFAULTS.maxDiffs,
      recheck: VERIFY_DEFAULTS.recheck,
      lagTimeoutMs: 30_000,
      sequences: false,
      ...extra,
    },
    { dryRun: false, maxRepairRows: null, ...ro },
  );
}

describe('verify --repair', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'rpsrc' }), clusters.start({ name: 'rptgt' })]);
  });

  it('writes exactly the differing rows: dry run and limit first write nothing, then one repair makes the copy equal', async () => {
    const [srcDb, tgtDb] = await Promise.all([createDatabase(source, 'repair_src', SCHEMA + DATA), createDatabase(target, 'repair_tgt', SCHEMA + DATA)]);
    await target.query(DAMAGE, [], tgtDb);
    const before = await settledCounters(target, tgtDb);
    const damaged = await tableHashes(target.conn(tgtDb));

    const dry = await repairRun(source, srcDb, target, tgtDb, { dryRun: true });
    expect(dry.repair.status).toBe('dry-run');
    expect(dry.report.status).toBe('different');
    const planned = Object.fromEntries(dry.repair.tables.map((t) => [`${t.schema}.${t.name}`, t.planned]));
    expect(planned).toEqual({
      'Odd "Schema".Order Lines': { insert: 3, update: 4, delete: 2 },
      'public.events': { insert: 1, update: 1, delete: 0 },
      'public.gen': { insert: 1, update: 1, delete: 0 },
      'public.keyless_log': { insert: 1, update: 0, delete: 3 },
    });
    expect(dry.repair.rowsPlanned).toBe(17);
    const odd = dry.repair.tables.find((t) => t.name === 'Order Lines')!;
    expect(odd.changes).toEqual(
      expect.arrayContaining([
        { kind: 'insert', key: { 'Line No': '7', select: 'Ö b' }, count: 1 },
        { kind: 'update', key: { 'Line No': '11', select: 'Ö b' }, count: 1 },
        { kind: 'delete', key: { 'Line No': '5000', select: 'extra' }, count: 1 },
      ]),
    );
    expect(dry.repair.tables.find((t) => t.name === 'keyless_log')!.changes).toEqual(
      expect.arrayContaining([{ kind: 'delete', key: null, count: 2 }, { kind: 'insert', key: null, count: 1 }]),
    );

    const refused = await repairRun(source, srcDb, target, tgtDb, { maxRepairRows: 5 });
    expect(refused.repair.status).toBe('refused');
    expect(refused.repair.message).toMatch(/more than 5 rows differ \(--max-repair-rows\): nothing was written; re-copy/);
    expect(refused.repair.rowsInserted + refused.repair.rowsUpdated + refused.repair.rowsDeleted).toBe(0);

    const declined = await repairRun(source, srcDb, target, tgtDb, { confirm: async (plan) => (expect(plan.rowsPlanned).toBe(17), false) });
    expect(declined.repair.status).toBe('declined');

    // Nothing was written by the three runs above.
    expect(await settledCounters(target, tgtDb)).toEqual(before);
    expect(await tableHashes(target.conn(tgtDb))).toEqual(damaged);

    const fixed = await repairRun(source, srcDb, target, tgtDb, { confirm: async () => true });
    expect(fixed.repair.status).toBe('repaired');
    expect(unequal(fixed.report)).toEqual({});
    expect(fixed.report.status).toBe('equal');
    expect(fixed.repair).toMatchObject({ rowsInserted: 6, rowsUpdated: 6, rowsDeleted: 5, rowsSkipped: 0 });
    expect(fixed.repair.databases).toEqual([
      { source: srcDb, target: tgtDb, replicationActive: false, sessionReplicationRole: 'replica', transactions: 4 },
    ]);

    // Independent: every table's rows as ordered text are the same on both sides.
    expect(await tableHashes(target.conn(tgtDb))).toEqual(await tableHashes(source.conn(srcDb)));
    // And the target itself counted no more row writes than rows differed.
    const after = await settledCounters(target, tgtDb);
    expect({ ins: after.ins - before.ins, upd: after.upd - before.upd, del: after.del - before.del }).toEqual(EXPECTED);

    // A plain verify agrees, and a second repair finds nothing to do.
    expect((await runVerify(source, srcDb, target, tgtDb, { sequences: false })).status).toBe('equal');
    const again = await repairRun(source, srcDb, target, tgtDb, { confirm: async () => true });
    expect(again.repair.status).toBe('nothing-to-repair');
  });

  it('repairs every type of the rich fixture back to what verify calls equal (floats, timestamps, numeric scale, bytea, inheritance)', async () => {
    const [srcDb, tgtDb] = await Promise.all([richDatabase(source), richDatabase(target)]);
    await source.query(`UPDATE shop.type_zoo SET n_free = 1.0 WHERE id = 40`, [], srcDb);
    const [f8] = await source.query<{ f8: string }>(`SELECT f8::text AS f8 FROM shop.type_zoo WHERE id = 10`, [], srcDb);
    await target.query(
      `DELETE FROM "ümlaut_schema"."Tabelle mit Leerzeichen" WHERE id = 7;
       DELETE FROM shop.events WHERE id = 500;
       INSERT INTO shop.events VALUES (999999, '2024-06-01 00:00:00.000001+00', 'click', NULL);
       UPDATE "Sales Data"."Order" SET "User" = NULL WHERE "select" = 2;
       UPDATE shop.documents SET content = set_byte(content, 500000, (get_byte(content, 500000) + 1) % 256) WHERE id = 1;
       UPDATE shop.type_zoo SET f8 = '${nextDouble(f8!.f8)}'::float8 WHERE id = 10;
       UPDATE shop.type_zoo SET tstz = tstz + interval '1 microsecond' WHERE id = 20;
       UPDATE shop.type_zoo SET js = jsonb_set(js, '{i}', '-1') WHERE id = 30;
       UPDATE shop.type_zoo SET n_free = 1.00 WHERE id = 40;
       UPDATE shop.audit_log SET message = 'changed' WHERE message = 'entry 7';
       UPDATE ONLY shop.vehicles SET label = 'changed' WHERE id = 1;
       UPDATE shop.trucks SET label = 'changed' WHERE id = (SELECT min(id) FROM shop.trucks);`,
      [],
      tgtDb,
    );
    const result = await repairRun(source, srcDb, target, tgtDb, { confirm: async () => true });
    expect(unequal(result.report)).toEqual({});
    expect(result.report.status).toBe('equal');
    expect(result.repair.rowsSkipped).toBe(0);
    const written = Object.fromEntries(result.repair.tables.map((t) => [`${t.schema}.${t.name}`, [t.inserted, t.updated, t.deleted]]));
    expect(written).toMatchObject({
      'ümlaut_schema.Tabelle mit Leerzeichen': [1, 0, 0],
      'shop.events': [1, 0, 1],
      'Sales Data.Order': [0, 1, 0],
      'shop.documents': [0, 1, 0],
      'shop.type_zoo': [0, 4, 0],
      'shop.vehicles': [0, 1, 0],
    });
    expect(await tableHashes(target.conn(tgtDb))).toEqual(await tableHashes(source.conn(srcDb)));
  });

  describe('while a writer runs and the subscription applies', () => {
    let srcDb: string;
    let tgtDb: string;
    let writer: Writer | undefined;

    beforeAll(async () => {
      const schema = writerSchemaSql(3000) + SCHEMA;
      [srcDb, tgtDb] = await Promise.all([createDatabase(source, 'repl_src', schema + DATA), createDatabase(target, 'repl_tgt', schema + 'TRUNCATE w_items, w_docs, w_log, w_region;')]);
      await source.query(`CREATE PUBLICATION repair_pub FOR ALL TABLES WITH (publish_via_partition_root = true)`, [], srcDb);
      const conninfo = `host=127.0.0.1 port=${source.port} user=postgres password=${source.password} dbname=${srcDb}`;
      await target.query(`CREATE SUBSCRIPTION repair_sub CONNECTION ${quoteLiteral(conninfo)} PUBLICATION repair_pub WITH (copy_data = true)`, [], tgtDb);
      await waitFor('the initial copy', async () => {
        const [r] = await target.query<{ ready: boolean }>(`SELECT count(*) >= 8 AND bool_and(srsubstate = 'r') AS ready FROM pg_subscription_rel`, [], tgtDb);
        return !!r?.ready;
      });
      writer = startWriter(source.conn(srcDb), { pauseMs: 5 });
    });

    /** Until the subscription has confirmed everything the source has written so far. */
    async function untilApplied(): Promise<void> {
      const [{ lsn }] = (await source.query<{ lsn: string }>(`SELECT ${WAL_END_SQL}::text AS lsn`, [], srcDb)) as [{ lsn: string }];
      await waitFor('the target to apply everything', async () => {
        const [r] = await source.query<{ ok: boolean }>(`SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = 'repair_sub'`, [lsn]);
        return !!r?.ok;
      });
    }

    it('repairs the damage and undoes nothing the writer did, nor rows changed between plan and write', async () => {
      await waitFor('some writes', async () => writer!.commits() > 20);
      // Rows the writer is about to update or delete (near max(id), near min(id)), rows it never touches, and extra rows.
      await target.query(
        `UPDATE w_items SET qty = -1 WHERE id IN (SELECT id FROM w_items ORDER BY id DESC LIMIT 60 OFFSET 5);
         DELETE FROM w_items WHERE id IN (SELECT id FROM w_items ORDER BY id LIMIT 20);
         DELETE FROM w_items WHERE id IN (1000, 1001, 1002) OR id BETWEEN 1200 AND 1209;
         UPDATE w_items SET note = 'tampered' WHERE id BETWEEN 1500 AND 1510;
         INSERT INTO w_items (id, qty, note) VALUES (900001, 1, 'extra'), (900002, 2, 'extra');
         UPDATE w_docs SET rev = rev + 100 WHERE id IN (3, 4);
         ${DAMAGE}`,
        [],
        tgtDb,
      );
      const tables = ['public.w_items', 'public.w_docs', 'public.w_region', '"Odd ""Schema""".*', 'public.keyless_log', 'public.events', 'public.gen'];
      // Between planning and writing, the source changes rows the plan will insert: three are deleted, three updated,
      // and the target applies that (as no-ops: the rows are missing there). Writing the planned rows now would
      // bring back deleted rows and old values; the check before COMMIT must catch it.
      let raced: string[] = [];
      const confirm = async (plan: RepairReport) => {
        const items = plan.tables.find((t) => t.name === 'w_items')!;
        // Rows the writer never touches (it deletes near min(id) and updates near max(id)).
        const inserts = items.changes.filter((c) => c.kind === 'insert').map((c) => c.key!.id!).filter((id) => Number(id) >= 1200 && Number(id) <= 1209);
        expect(inserts).toHaveLength(10);
        raced = inserts.slice(0, 3);
        await source.query(`DELETE FROM w_items WHERE id = ANY($1::bigint[])`, [raced], srcDb);
        await source.query(`UPDATE w_items SET note = 'changed while repairing' WHERE id = ANY($1::bigint[])`, [inserts.slice(3, 6)], srcDb);
        await untilApplied();
        return true;
      };
      const result = await repairRun(source, srcDb, target, tgtDb, { confirm }, { tables, maxDiffs: 1000 });
      expect(result.repair.status).toBe('repaired');
      const items = result.repair.tables.find((t) => t.name === 'w_items')!;
      expect(items.inserted).toBeLessThanOrEqual(items.planned.insert - 3);
      expect(await target.query(`SELECT id FROM w_items WHERE id = ANY($1::bigint[])`, [raced], tgtDb)).toEqual([]);
      expect(result.repair.databases[0]).toMatchObject({ replicationActive: true, sessionReplicationRole: 'replica' });
      expect(result.repair.rowsInserted + result.repair.rowsUpdated + result.repair.rowsDeleted).toBeGreaterThanOrEqual(17 + 11 + 10 + 3 + 2 + 2);
      expect(unequal(result.report)).toEqual({});
      expect(result.report.status).toBe('equal');

      // Stop writing, let the target apply everything, and compare every table independently.
      const writes = await writer!.stop();
      writer = undefined;
      expect(writes).toBeGreaterThan(50);
      await untilApplied();
      const [s, t] = await Promise.all([tableHashes(source.conn(srcDb)), tableHashes(target.conn(tgtDb))]);
      expect(t).toEqual(s);
      // The subscription is still healthy (no apply error loop from a conflicting write).
      const [sub] = await target.query<{ enabled: boolean }>(`SELECT subenabled AS enabled FROM pg_subscription WHERE subname = 'repair_sub'`, [], tgtDb);
      expect(sub?.enabled).toBe(true);
      await target.query(`DROP SUBSCRIPTION repair_sub`, [], tgtDb);
    });
  });
});
