/**
 * `pgferry verify --repair` as a user runs it: the built CLI, no TTY. No
 * write without --yes (exit 2), --dry-run lists and writes nothing (exit 1),
 * --max-repair-rows refuses (exit 1), a repair exits 0 with the `repair`
 * section in the JSON document, and a plain verify then agrees.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { tableHashes } from '../support/compare.js';

const SQL = `
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
CREATE TABLE "Events" (id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text);
CREATE TABLE notes (body text);
INSERT INTO items SELECT i, 'item ' || i, i / 4.0 FROM generate_series(1, 3000) i;
INSERT INTO "Events" SELECT i, '2023-06-01'::timestamptz + i * interval '1 hour', 'k' || i % 3 FROM generate_series(1, 5000) i;
INSERT INTO notes SELECT 'note ' || (i % 4) FROM generate_series(1, 10) i;`;

const DAMAGE = `
UPDATE items SET price = 0 WHERE id = 42;
DELETE FROM "Events" WHERE id IN (15, 4000);
INSERT INTO "Events" VALUES (9999, '2030-01-01', 'extra');
INSERT INTO notes VALUES ('extra'), ('note 1');`;

const { start } = useClusters();
let pg: LocalCluster;
const stateDirs: string[] = [];

beforeAll(async () => {
  pg = await start({ name: 'vrcli' });
  await createDatabase(pg, 'shop', SQL);
  await createDatabase(pg, 'shop_json', SQL + DAMAGE);
  await createDatabase(pg, 'shop_text', SQL + DAMAGE);
});

afterAll(() => {
  for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
});

function run(args: string[]) {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pgferry-repair-state-'));
  stateDirs.push(d);
  return runCliProcess([...args, '--state-dir', d]);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

describe('pgferry verify --repair (built CLI)', () => {
  it('writes nothing without --yes, with --dry-run, or past --max-repair-rows; then repairs and exits 0', async () => {
    const base = ['verify', '--source', pg.url('shop'), '--target', pg.url('shop_json'), '--chunk-rows', '1000'];
    const damaged = await tableHashes(pg.conn('shop_json'));

    const unconfirmed = await run([...base, '--repair']);
    expect(unconfirmed.exitCode).toBe(2);
    expect(unconfirmed.stderr).toContain('verify --repair writes on the target: this needs a confirmation');
    expect(unconfirmed.stderr).toContain('add --yes');
    const stray = await run([...base, '--dry-run']);
    expect(stray.exitCode).toBe(2);
    expect(stray.stderr).toContain('--dry-run applies to a repair only');

    const dry = await run([...base, '--repair', '--dry-run', '--json']);
    expect(dry.exitCode).toBe(1);
    const dryDoc = JSON.parse(dry.stdout) as Doc;
    expect(dryDoc).toMatchObject({ command: 'verify', ok: false, exitCode: 1, status: 'different' });
    expect(dryDoc.repair).toMatchObject({ status: 'dry-run', dryRun: true, maxRepairRows: null, rowsPlanned: 6, rowsInserted: 0, rowsUpdated: 0, rowsDeleted: 0 });
    const planned = Object.fromEntries((dryDoc.repair.tables as Doc[]).map((t) => [t.name, t.planned]));
    expect(planned).toEqual({
      Events: { insert: 2, update: 0, delete: 1 },
      items: { insert: 0, update: 1, delete: 0 },
      notes: { insert: 0, update: 0, delete: 2 },
    });

    const refused = await run([...base, '--repair', '--yes', '--max-repair-rows', '3', '--json']);
    expect(refused.exitCode).toBe(1);
    const refusedDoc = JSON.parse(refused.stdout) as Doc;
    expect(refusedDoc.repair.status).toBe('refused');
    expect(refusedDoc.repair.message).toMatch(/^more than 3 rows differ \(--max-repair-rows\): nothing was written; re-copy these tables instead/);
    expect(await tableHashes(pg.conn('shop_json'))).toEqual(damaged);

    const fixed = await run([...base, '--repair', '--yes', '--json']);
    expect(fixed.exitCode).toBe(0);
    const doc = JSON.parse(fixed.stdout) as Doc;
    expect(doc).toMatchObject({ command: 'verify', ok: true, exitCode: 0, status: 'equal' });
    expect(doc.summary).toMatchObject({ tablesDifferent: 0, rowDifferences: 0 });
    expect(doc.repair).toMatchObject({ status: 'repaired', rowsPlanned: 6, rowsInserted: 2, rowsUpdated: 1, rowsDeleted: 3, rowsSkipped: 0 });
    expect(doc.repair.before).toMatchObject({ tablesDifferent: 3 });
    expect(doc.repair.databases).toEqual([{ source: 'shop', target: 'shop_json', replicationActive: false, sessionReplicationRole: 'replica', transactions: 3 }]);
    expect(fixed.stdout + fixed.stderr).not.toContain(pg.password);

    const plain = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_json')]);
    expect(plain.exitCode).toBe(0);
    expect(await tableHashes(pg.conn('shop_json'))).toEqual(await tableHashes(pg.conn('shop')));
  });

  it('prints the plan of a dry run and what a repair wrote, then the verify report', async () => {
    const base = ['verify', '--source', pg.url('shop'), '--target', pg.url('shop_text')];
    const dry = await run([...base, '--repair', '--dry-run']);
    expect(dry.exitCode).toBe(1);
    expect(dry.stdout).toMatch(/^Repair \(dry run, nothing written\):$/m);
    expect(dry.stdout).toMatch(/^ {2}shop: public\.items +0 to insert, 1 to update, 0 to delete$/m);
    expect(dry.stdout).toMatch(/^ {6}update {2}id=42$/m);
    expect(dry.stdout).toMatch(/^ {2}shop: public\.notes +0 to insert, 0 to update, 2 to delete \(no key: whole rows\)$/m);
    expect(dry.stdout).toMatch(/^6 rows to change in 3 tables$/m);
    expect(dry.stdout.trimEnd().split('\n').at(-1)).toMatch(/^DIFFERENT: 3 tables/);

    const r = await run([...base, '--repair', '--yes']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^ {2}✓ public\."Events" +2 inserted, 0 updated, 1 deleted$/m);
    expect(r.stdout).toMatch(/^Repaired 6 rows; verified again:$/m);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(/^EQUAL: 3 tables \(3 equal, 0 different\)/);
  });
});
