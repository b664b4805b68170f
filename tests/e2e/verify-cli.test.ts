/**
 * `pgferry verify` as a user runs it: the built CLI, no TTY. Exit codes 0 / 1
 * / 2 / 3, the per-table report and summary, the JSON document, filters from
 * the state directory, and no password in the output.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scopeFromFlags } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const SQL = `
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric);
CREATE TABLE "Events" (id bigint PRIMARY KEY, at timestamptz NOT NULL, kind text);
CREATE TABLE notes (body text);
INSERT INTO items SELECT i, 'item ' || i, i / 4.0 FROM generate_series(1, 3000) i;
INSERT INTO "Events" SELECT i, '2023-06-01'::timestamptz + i * interval '1 hour', 'k' || i % 3 FROM generate_series(1, 20000) i;
INSERT INTO notes SELECT 'note ' || i FROM generate_series(1, 10) i;`;

const { start } = useClusters();
let pg: LocalCluster;
const stateDirs: string[] = [];

beforeAll(async () => {
  pg = await start({ name: 'vfcli' });
  await createDatabase(pg, 'shop', SQL);
  await createDatabase(pg, 'shop_copy', SQL);
  await createDatabase(pg, 'shop_changed', SQL + `
    UPDATE items SET price = 0 WHERE id = 42;
    DELETE FROM "Events" WHERE id = 15000;
    INSERT INTO notes VALUES ('extra');`);
});

afterAll(() => {
  for (const d of stateDirs) rmSync(d, { recursive: true, force: true });
});

function tempStateDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pgferry-verify-state-'));
  stateDirs.push(d);
  return d;
}

/** The built CLI with an empty state directory (unless the test names one): no stray ./.pgferry applies. */
function run(args: string[]) {
  return runCliProcess(args.includes('--state-dir') ? args : [...args, '--state-dir', tempStateDir()]);
}

describe('pgferry verify (built CLI)', () => {
  it('exits 0 with a ✓ per table and a summary when the copy is equal', async () => {
    const r = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_copy'), '--chunk-rows', '1000']);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('Database shop → shop_copy');
    expect(r.stdout).toMatch(/^ {2}✓ public\."Events" +20000 rows, 1 chunk, [\d.]+s$/m);
    expect(r.stdout).toMatch(/^ {2}✓ public\.items +3000 rows, 1 chunk, [\d.]+s$/m);
    expect(r.stdout).toMatch(/^ {2}✓ public\.notes +10 rows, whole table \(no key\), [\d.]+s$/m);
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(
      /^EQUAL: 3 tables \(3 equal, 0 different\), 23010 rows in 3 chunks, 0 row differences, 0 schema differences, 0 sequences behind, [\d.]+s$/,
    );
    expect(r.stdout).not.toContain('\u001b');
    expect(r.stdout + r.stderr).not.toContain(pg.password);
    // Progress goes to stderr as plain lines.
    expect(r.stderr).toMatch(/^✓ shop→shop_copy: public\.items: 3000 rows, 1 chunk/m);
    // No runtime warnings (e.g. pg's about a query handed to a busy client), with one session per side too.
    expect(r.stderr).not.toMatch(/Warning/);
    const one = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_copy'), '--jobs', '1']);
    expect(one.exitCode).toBe(0);
    expect(one.stderr).not.toMatch(/Warning/);
  });

  it('exits 1 and lists the differing keys; --json prints one document', async () => {
    const args = ['verify', '--source', pg.url('shop'), '--target', pg.url('shop_changed'), '--chunk-rows', '1000'];
    const human = await run(args);
    expect(human.exitCode).toBe(1);
    expect(human.stdout).toMatch(/^ {2}✗ public\.items .*\n {6}different {9} id=42$/m);
    expect(human.stdout).toMatch(/^ {6}missing on target {2}id=15000$/m);
    expect(human.stdout).toContain('rows differ (a table without a key cannot show which)');
    expect(human.stdout.trimEnd().split('\n').at(-1)).toMatch(/^DIFFERENT: 3 tables \(0 equal, 3 different\)/);

    const json = await run([...args, '--json']);
    expect(json.exitCode).toBe(1);
    const doc = JSON.parse(json.stdout) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(doc).toMatchObject({ command: 'verify', ok: false, exitCode: 1, status: 'different' });
    expect(doc.summary).toMatchObject({ databases: 1, tables: 3, tablesDifferent: 3, rowsCompared: 23010, rowDifferences: 2 });
    const byName = Object.fromEntries((doc.databases[0].tables as { name: string }[]).map((t) => [t.name, t]));
    expect(byName.items).toMatchObject({ status: 'different', method: 'chunked', keyColumns: ['id'], diffs: [{ kind: 'different', key: { id: '42' } }] });
    expect(byName.Events).toMatchObject({ rowsSource: 20000, rowsTarget: 19999, diffs: [{ kind: 'missing', key: { id: '15000' } }] });
    expect(byName.notes).toMatchObject({ status: 'different', method: 'whole-table', rowsSource: 10, rowsTarget: 11, diffs: [] });
    expect(json.stderr).not.toContain('error');
  });

  it('reads the time-filter cutoff from the state directory', async () => {
    const stateDir = tempStateDir();
    const noState = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_changed'), '--time-filter', 'public."Events":at:6 months', '--tables', '"Events"', '--state-dir', stateDir]);
    expect(noState.exitCode).toBe(2);
    expect(noState.stderr).toMatch(/error: public\."Events" has a time filter, but no cutoff is stored for it: the cutoff is fixed once by pgferry init/);

    const scope = scopeFromFlags({ timeFilter: ['public."Events":at:6 months'] });
    const writeState = (systemIdentifier: string) => {
      const side = { systemIdentifier, endpoint: 'postgres@127.0.0.1/shop', major: pg.major };
      writeFileSync(
        path.join(stateDir, 'state.json'),
        JSON.stringify({
          version: 1,
          source: side,
          target: side,
          scope,
          databases: { shop: { sourceDatabase: 'shop', targetDatabase: 'shop_changed', filters: {}, timeFilterCutoffs: { 'public.Events': '2025-01-01 00:00:00+00' } } },
        }),
      );
    };
    // A state of another migration is refused rather than applied.
    writeState('1');
    const foreign = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_changed'), '--state-dir', stateDir]);
    expect(foreign.exitCode).toBe(2);
    expect(foreign.stderr).toContain('belongs to another migration');
    const [{ id }] = (await pg.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')) as [{ id: string }];
    writeState(id);
    // Row 15000 is at 2025-02-15, after the cutoff: found. Rows before the cutoff are not compared.
    const r = await run(['verify', '--source', pg.url('shop'), '--target', pg.url('shop_changed'), '--tables', '"Events"', '--state-dir', stateDir, '--json']);
    expect(r.exitCode).toBe(1);
    const doc = JSON.parse(r.stdout) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    const ev = doc.databases[0].tables[0];
    expect(ev).toMatchObject({ name: 'Events', filter: `"at" >= '2025-01-01 00:00:00+00'::timestamptz`, diffs: [{ kind: 'missing', key: { id: '15000' } }] });
    expect(ev.rowsSource).toBeLessThan(20000);
  });

  it('exits 2 on bad flags and on a source that is its own target, 3 when a side cannot be reached', async () => {
    const base = ['verify', '--source', pg.url('shop')];
    const jobs = await run([...base, '--target', pg.url('shop_copy'), '--jobs', '0']);
    expect(jobs.exitCode).toBe(2);
    expect(jobs.stderr).toContain('--jobs must be a whole number from 1 to 64 (got "0")');
    const unknown = await run([...base, '--target', pg.url('shop_copy'), '--tables', 'public.nope']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('public.nope');
    const self = await run([...base, '--target', pg.url('shop'), '--json']);
    expect(self.exitCode).toBe(2);
    expect(JSON.parse(self.stdout)).toMatchObject({ ok: false, error: { exitCode: 2 } });
    const down = await run([...base, '--target', `postgresql://postgres:secret@127.0.0.1:1/shop?sslmode=disable&connect_timeout=2`]);
    expect(down.exitCode).toBe(3);
    expect(down.stderr).toContain('cannot connect to target');
    expect(down.stderr).not.toContain('secret');
  });
});
