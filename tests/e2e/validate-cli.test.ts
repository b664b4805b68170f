/**
 * `pgferry validate` as a user runs it: the built CLI, no TTY. Exit codes,
 * the human report (grouped, ✓ ! ✗, fix lines, summary, no escape
 * sequences), the JSON document, and no password anywhere in the output.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const { start } = useClusters();
let pg: LocalCluster;

beforeAll(async () => {
  pg = await start({ name: 'vcli', settings: { max_slot_wal_keep_size: "'1GB'" } });
  await createDatabase(pg, 'shop', 'CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE TABLE audit (at timestamptz, what text)');
});

const ESC = '\u001b';

describe('pgferry validate (built CLI)', () => {
  it('prints a grouped report and exits 0 when nothing fails; --json prints one document', async () => {
    // The keyless table is left out of scope, so nothing fails.
    const args = ['validate', '--source', pg.url('shop'), '--target', pg.url('shop_copy'), '--exclude-tables', 'audit'];
    const human = await runCliProcess(args);
    expect(human.stderr).toBe('');
    expect(human.exitCode).toBe(0);
    const out = human.stdout;
    expect(out).not.toContain(ESC);
    expect(out).not.toContain(pg.password);
    for (const heading of [
      `Source postgres@127.0.0.1:${pg.port}/shop`,
      `Target postgres@127.0.0.1:${pg.port}/shop_copy`,
      'Client tools',
      'Source and target',
      'Database shop → target database shop_copy (does not exist yet)',
      'Tables in shop',
    ]) {
      expect(out.split('\n')).toContain(heading);
    }
    expect(out).toMatch(/^ {2}✓ wal_level = logical$/m);
    expect(out).toMatch(/^ {2}✓ same server, different databases \(shop → shop_copy\)$/m);
    expect(out).toMatch(/^ {2}✓ size [\d.]+ (kB|MB) \(pg_database_size\)$/m);
    expect(out.trimEnd().split('\n').at(-1)).toMatch(/^\d+ ok, 0 warnings, 0 failures$/);

    const json = await runCliProcess([...args, '--json']);
    expect(json.exitCode).toBe(0);
    const doc = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(['command', 'ok', 'exitCode', 'source', 'target', 'databases', 'checks', 'summary']);
    expect(doc).toMatchObject({
      command: 'validate',
      ok: true,
      exitCode: 0,
      source: { major: pg.major, database: 'shop', user: 'postgres', superuser: true, inRecovery: false },
      target: { major: pg.major, database: 'postgres' },
      databases: [{ name: 'shop', target: 'shop_copy', targetExists: false, tables: 1, excludedTables: 1, encoding: 'UTF8' }],
      summary: { warn: 0, fail: 0 },
    });
    const checks = doc.checks as { id: string; side: string; status: string; message: string; database?: string }[];
    expect(checks.find((c) => c.id === 'tables.replica_identity')).toMatchObject({ side: 'source', status: 'ok', database: 'shop' });
    expect(new Set(checks.map((c) => c.side))).toEqual(new Set(['source', 'target', 'tools', 'pair']));
    expect((doc.summary as { ok: number }).ok).toBe(checks.length);
  });

  it('exits 1 with ✗ and a fix line when a table has no key', async () => {
    const r = await runCliProcess(['validate', '--target', pg.url('shop_copy')], { env: { PGFERRY_SOURCE: pg.url('shop') } });
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/^ {2}✗ public\.audit has no primary key and REPLICA IDENTITY DEFAULT/m);
    expect(r.stdout).toContain('\n    fix: ALTER TABLE "public"."audit" REPLICA IDENTITY FULL;');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(/^\d+ ok, 0 warnings, 1 failures$/);
    const json = JSON.parse((await runCliProcess(['validate', '--source', pg.url('shop'), '--target', pg.url('shop_copy'), '--json'])).stdout);
    expect(json).toMatchObject({ ok: false, exitCode: 1, summary: { fail: 1 } });
  });

  it('exits 3 for a wrong password and never prints it', async () => {
    const secret = 'N0t-The-Pa55word';
    const args = ['validate', '--source', pg.url('shop', 'postgres', secret), '--target', pg.url('shop_copy')];
    const human = await runCliProcess(args);
    expect(human.exitCode).toBe(3);
    expect(human.stdout).toMatch(/^ {2}✗ cannot connect to source .*password authentication failed/m);
    // The target is still checked.
    expect(human.stdout).toMatch(/^ {2}✓ the target is a primary/m);
    const json = await runCliProcess([...args, '--json']);
    expect(json.exitCode).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, exitCode: 3, source: null, target: { user: 'postgres' } });
    for (const text of [human.stdout, human.stderr, json.stdout, json.stderr]) expect(text).not.toContain(secret);
  });

  it('exits 3 when the target port accepts no connections', async () => {
    const r = await runCliProcess(['validate', '--source', pg.url('shop'), '--target', 'postgresql://postgres@127.0.0.1:1/shop?sslmode=disable']);
    expect(r.exitCode).toBe(3);
    expect(r.stdout).toMatch(/^ {2}✗ cannot connect to target/m);
    expect(r.stdout).toContain('fix: nothing accepts connections there');
  });

  it('exits 2 when source and target are the same database under another spelling', async () => {
    const r = await runCliProcess(['validate', '--source', pg.url('shop'), '--target', `host=${pg.socketDir} port=${pg.port} dbname=shop user=postgres`, '--json']);
    expect(r.exitCode).toBe(2);
    const doc = JSON.parse(r.stdout) as { exitCode: number; checks: { id: string; status: string; message: string }[] };
    expect(doc.exitCode).toBe(2);
    expect(doc.checks.find((c) => c.id === 'pair.distinct')).toMatchObject({ status: 'fail' });
  });

  it('exits 2 naming the missing connection', async () => {
    const r = await runCliProcess(['validate', '--source', pg.url('shop')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('no target connection given');
    expect(r.stderr).toContain('--target');
  });
});
