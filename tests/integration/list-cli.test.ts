/**
 * `pgferry list` through the built CLI against a real cluster: databases with
 * sizes, tables with estimates, keys, replica identity and scope; human and
 * JSON; flags and a configuration file give the same answer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { DatabaseListing, TableListing } from '../../src/pipeline/list/index.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const SCHEMA = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, region text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE audit_log (at timestamp, message text);
CREATE SCHEMA "Sales";
CREATE TABLE "Sales"."Big Deals" (code text NOT NULL UNIQUE, amount numeric);
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 2000) g;
INSERT INTO orders SELECT g, 1 + g % 2000, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, now() - g * interval '1 hour' FROM generate_series(1, 5000) g;
ANALYZE;
`;

describe('pgferry list', () => {
  const clusters = useClusters();
  let c: LocalCluster;
  let db: string;
  let dir: string;

  beforeAll(async () => {
    c = await clusters.start({ name: 'list' });
    db = await createDatabase(c, undefined, SCHEMA);
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-list-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists databases with sizes, the one in the connection in scope (JSON)', async () => {
    const r = await runCliProcess(['list', '--source', c.url(db), '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as DatabaseListing & { command: string };
    expect(doc.command).toBe('list');
    const mine = doc.databases.find((d) => d.name === db)!;
    expect(mine).toMatchObject({ inScope: true, connectionDatabase: true, encoding: 'UTF8' });
    expect(mine.bytes).toBeGreaterThan(1_000_000);
    expect(doc.databases.find((d) => d.name === 'postgres')).toMatchObject({ inScope: false });
    expect(doc.databases.some((d) => d.name.startsWith('template'))).toBe(false);
  });

  it('lists databases for people, without escape sequences through a pipe', async () => {
    const r = await runCliProcess(['list', '--source', c.url(db), '--include-databases', `postgres,${db}`]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Databases on postgres@127\.0\.0\.1:\d+ \(PostgreSQL \d+/);
    expect(r.stdout).toMatch(new RegExp(`✓ +${db} \\(connection\\) +\\d`));
    expect(r.stdout).toContain(`2 of `);
    expect(r.stdout + r.stderr).not.toContain('\x1b');
  });

  it('writes a JSON document of several hundred kB whole through a pipe before it exits', async () => {
    // 2 000 tables: the document is far larger than a pipe holds (64 kB), so most of it is still queued at the end.
    const many = await createDatabase(c, undefined, Array.from({ length: 2000 }, (_v, i) => `CREATE TABLE wide_list_${i} (a int, b text);`).join('\n'));
    const r = await runCliProcess(['list', many, '--source', c.url('postgres'), '--include-databases', many, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(256 * 1024);
    const doc = JSON.parse(r.stdout) as TableListing;
    expect(doc.tables).toHaveLength(2000);
  });

  it('leaves out the tables that belong to an extension', async () => {
    // pg_dump leaves an extension's member tables to CREATE EXTENSION; pgferry neither lists nor copies them.
    const ext = await createDatabase(c, undefined, `CREATE EXTENSION pg_trgm; CREATE TABLE mine (id int PRIMARY KEY); CREATE TABLE ext_owned (id int);
      ALTER EXTENSION pg_trgm ADD TABLE ext_owned;`);
    const r = await runCliProcess(['list', ext, '--source', c.url('postgres'), '--include-databases', ext, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as TableListing).tables.map((t) => t.name)).toEqual(['mine']);
  });

  it('lists the tables of a database with estimates, keys, identity and scope', async () => {
    const r = await runCliProcess([
      'list', db, '--source', c.url('postgres'), '--include-databases', db, '--json',
      '--exclude-tables', 'public.audit_log', '--schema-only-tables', '"Sales"."Big Deals"',
      '--time-filter', 'public.orders:created_at:30 days', '--table-filter', "public.customers:id > 100",
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as TableListing;
    expect(doc.database).toBe(db);
    expect(doc.databaseInScope).toBe(true);
    const t = (name: string) => doc.tables.find((x) => `${x.schema}.${x.name}` === name)!;
    expect(doc.tables.map((x) => `${x.schema}.${x.name}`)).toEqual(['Sales.Big Deals', 'public.audit_log', 'public.customers', 'public.events', 'public.orders']);
    expect(t('public.orders')).toMatchObject({
      inScope: true, schemaOnly: false, filter: null, timeFilter: { column: 'created_at', window: '30 days' },
      key: { kind: 'primary key', columns: ['id'] }, replicaIdentity: 'default', replicaIdentityUsable: true, timeColumns: ['created_at'],
    });
    expect(t('public.orders').estimatedRows).toBeGreaterThan(4000);
    expect(t('public.customers')).toMatchObject({ inScope: true, filter: 'id > 100' });
    expect(t('public.audit_log')).toMatchObject({ inScope: false, key: { kind: 'none', columns: [] }, replicaIdentityUsable: false, timeColumns: ['at'] });
    expect(t('Sales.Big Deals')).toMatchObject({ inScope: true, schemaOnly: true, key: { kind: 'unique', columns: ['code'] }, replicaIdentityUsable: false });
    expect(t('public.events')).toMatchObject({ kind: 'partitioned', partitions: 1, inScope: true });
  });

  it('shows the same tables for people, and a configuration file gives the same scope as the flags', async () => {
    const file = path.join(dir, 'scope.toml');
    writeFileSync(
      file,
      `include_databases = ["${db}"]\n[databases.${db}]\nexclude_tables = ["public.audit_log"]\nschema_only = ['"Sales"."Big Deals"']\n` +
        `[[databases.${db}.time_filters]]\ntable = "orders"\ncolumn = "created_at"\nlast = "30 days"\n`,
    );
    const viaFile = await runCliProcess(['list', '--database', db, '--source', c.url(db), '--config', file, '--json']);
    const viaFlags = await runCliProcess([
      'list', db, '--source', c.url(db), '--include-databases', db, '--exclude-tables', 'public.audit_log',
      '--schema-only-tables', '"Sales"."Big Deals"', '--time-filter', 'orders:created_at:30 days', '--json',
    ]);
    expect(viaFile.exitCode, viaFile.stderr).toBe(0);
    expect([viaFlags.exitCode, viaFlags.stdout.length > 0], viaFlags.stderr).toEqual([0, true]);
    expect(JSON.parse(viaFile.stdout)).toEqual(JSON.parse(viaFlags.stdout));

    const human = await runCliProcess(['list', db, '--source', c.url(db), '--config', file]);
    expect(human.exitCode, human.stderr).toBe(0);
    expect(human.stdout).toContain(`Tables of "${db}" on postgres@127.0.0.1:${c.port}/${db}`);
    expect(human.stdout).toMatch(/recent rows +public\.orders +~5\.0k +\S+ \S+ +primary key \(id\) +default +created_at: last 30 days/);
    expect(human.stdout).toMatch(/excluded +public\.audit_log .* none +default \(no row identity/);
    expect(human.stdout).toMatch(/schema only +"Sales"\."Big Deals"/);
    expect(human.stdout).toMatch(/5 tables: 2 copied, 1 recent rows, 1 schema only, 1 excluded/);
    expect(human.stdout + human.stderr).not.toContain('\x1b');
  });

  it('exits 2 naming the existing databases when the database does not exist, and for a typo in a table', async () => {
    const r = await runCliProcess(['list', 'nosuchdb', '--source', c.url(db)]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('database not found on the source: nosuchdb');
    expect(r.stderr).toContain(db);
    const t = await runCliProcess(['list', db, '--source', c.url(db), '--exclude-tables', 'public.ordrs']);
    expect(t.exitCode).toBe(2);
    expect(t.stderr).toContain('table public.ordrs does not exist');
  });
});
