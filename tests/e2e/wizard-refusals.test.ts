/**
 * The interactive mode of init asks about what init would otherwise refuse
 * after the confirmation: a table without a row identity. Each answer, typed
 * in a real terminal (tmux), runs to the end: REPLICA IDENTITY FULL (and the
 * table then replicates UPDATE and DELETE through sync), leave it out, or
 * copy once without replication. The printed command carries the same flags.
 * Likewise a time filter on a column outside the replica identity.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { RunState } from '../../src/state/checkpoint.js';
import { cliPath, runCliProcess } from '../support/cli.js';
import { tableHashes } from '../support/compare.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { untilCaughtUp } from '../support/writer.js';
import { killAll, openTerminal, tmuxAvailable, type Terminal } from './wizard-tmux.js';

const SCHEMA = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text);
CREATE TABLE audit (actor int NOT NULL, message text NOT NULL);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 300) g;
INSERT INTO audit SELECT g % 7, 'm' || g FROM generate_series(1, 200) g;
ANALYZE;
`;

describe.skipIf(!tmuxAvailable())('interactive init: tables without a row identity', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  let dir: string;
  const terminals: Terminal[] = [];

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'wizref-src' }), clusters.start({ name: 'wizref-tgt' })]);
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-wizard-refusals-'));
  });
  afterAll(() => {
    for (const t of terminals) t.kill();
    killAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** init in a terminal up to the question about audit; `keys` choose the answer. Returns the final screen and the state directory. */
  async function initAnswering(db: string, keys: string[]): Promise<{ screen: string; stateDir: string }> {
    const stateDir = mkdtempSync(path.join(dir, 'state-'));
    const cmd = `${process.execPath} ${cliPath} init --no-roles --source '${source.url(db)}' --target '${target.url(db)}' --state-dir '${stateDir}'`;
    const t = openTerminal(cmd, { cwd: dir, width: 240, height: 60 });
    terminals.push(t);
    await t.waitFor(/Databases to copy/);
    t.keys('Enter');
    await t.waitFor(/tables to leave out[\s\S]*public\.customers/);
    t.keys('Enter');
    await t.waitFor(/structure only, without rows/);
    t.keys('Enter');
    // Asked before the summary and the confirmation, naming the table.
    const asked = await t.waitFor(/Tables without a row identity: what should init do\?/);
    expect(asked).toMatch(/this table has no primary key or replica identity: public\.audit/);
    expect(asked).not.toContain('Copy this to the target?');
    expect(asked).toContain('--set-replica-identity-full');
    expect(asked).toContain('--no-sync');
    t.keys(...keys, 'Enter');
    await t.waitFor('Copy this to the target?');
    t.keys('Enter');
    await t.waitFor('Save these choices as a TOML file');
    t.keys('Enter'); // no
    const screen = await t.waitFor(/EXIT:\d+/, 120_000);
    expect(screen).not.toContain(source.password);
    expect(screen).not.toContain(target.password);
    return { screen, stateDir };
  }

  const state = (stateDir: string) => JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as RunState;

  it('REPLICA IDENTITY FULL: init copies it, and sync replicates its UPDATEs and DELETEs', async () => {
    const db = await createDatabase(source, uniqueDbName('wfull'), SCHEMA);
    const { screen, stateDir } = await initAnswering(db, []); // the default: FULL
    expect(screen, screen).toContain('EXIT:0');
    expect(screen).toMatch(/pgferry init .*--set-replica-identity-full --no-interactive --yes/);
    expect(await source.query("SELECT relreplident FROM pg_class WHERE oid = 'public.audit'::regclass", [], db)).toEqual([{ relreplident: 'f' }]);
    expect(state(stateDir).databases[db]!.slot).not.toBeNull();

    const sync = await runCliProcess(['sync', '--wait-timeout', '120', '--source', source.url(db), '--target', target.url(db), '--state-dir', stateDir]);
    expect(sync.exitCode, sync.stdout + sync.stderr).toBe(0);
    // Without a row identity these would fail on the source once published.
    await source.query("UPDATE audit SET message = message || '!' WHERE actor = 3", [], db);
    await source.query('DELETE FROM audit WHERE actor = 5', [], db);
    await source.query("INSERT INTO audit SELECT 9, 'late ' || g FROM generate_series(1, 20) g", [], db);
    await untilCaughtUp(source, target, db, stateDir);
    const [s, t] = await Promise.all([tableHashes(source.conn(db)), tableHashes(target.conn(db))]);
    expect(t).toEqual(s);
    expect(s['public.audit']!.rows).toBe(200 - 28 + 20);
    const cleanup = await runCliProcess(['cleanup', '--yes', '--source', source.url(db), '--target', target.url(db), '--state-dir', stateDir]);
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
  });

  it('leave it out: init copies the rest and publishes no table without a row identity', async () => {
    const db = await createDatabase(source, uniqueDbName('wexcl'), SCHEMA);
    const { screen, stateDir } = await initAnswering(db, ['Down']);
    expect(screen, screen).toContain('EXIT:0');
    expect(screen).toContain('left out:       public.audit');
    expect(screen).toMatch(/pgferry init .*--exclude-tables public\.audit --no-interactive --yes/);
    expect(Object.keys(state(stateDir).databases[db]!.tables)).toEqual(['public.customers']);
    expect(await source.query("SELECT relreplident FROM pg_class WHERE oid = 'public.audit'::regclass", [], db)).toEqual([{ relreplident: 'd' }]);
    const [s, t] = await Promise.all([tableHashes(source.conn(db)), tableHashes(target.conn(db))]);
    expect(t['public.customers']).toEqual(s['public.customers']);
    const cleanup = await runCliProcess(['cleanup', '--yes', '--source', source.url(db), '--target', target.url(db), '--state-dir', stateDir]);
    expect(cleanup.exitCode, cleanup.stderr).toBe(0);
  });

  it('copy without replication: init --no-sync copies every table, no slot', async () => {
    const db = await createDatabase(source, uniqueDbName('wnosync'), SCHEMA);
    const { screen, stateDir } = await initAnswering(db, ['Down', 'Down']);
    expect(screen, screen).toContain('EXIT:0');
    expect(screen).toMatch(/pgferry init .*--no-sync --no-interactive --yes/);
    expect(existsSync(path.join(stateDir, 'state.json'))).toBe(true);
    expect(state(stateDir).databases[db]!.slot).toBeNull();
    expect(await source.query("SELECT slot_name FROM pg_replication_slots WHERE database = $1", [db])).toEqual([]);
    const [s, t] = await Promise.all([tableHashes(source.conn(db)), tableHashes(target.conn(db))]);
    expect(t).toEqual(s);
  });

  it('a time filter that cannot be published: asked about, and copied once without replication', async () => {
    const db = await createDatabase(
      source,
      uniqueDbName('wtime'),
      `CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL);
       INSERT INTO events SELECT g, now() - g * interval '1 day' FROM generate_series(1, 100) g;
       ANALYZE;`,
    );
    const stateDir = mkdtempSync(path.join(dir, 'state-'));
    const cmd = `${process.execPath} ${cliPath} init --no-roles --source '${source.url(db)}' --target '${target.url(db)}' --state-dir '${stateDir}'`;
    const t = openTerminal(cmd, { cwd: dir, width: 240, height: 60 });
    terminals.push(t);
    await t.waitFor(/Databases to copy/);
    t.keys('Enter');
    await t.waitFor(/tables to leave out[\s\S]*public\.events/);
    t.keys('Enter');
    await t.waitFor(/structure only, without rows/);
    t.keys('Enter');
    await t.waitFor('(time filter)?');
    t.keys('y', 'Enter');
    await t.waitFor(/table to filter by time[\s\S]*public\.events/);
    t.keys('Enter');
    await t.waitFor('is within the last');
    t.type('30 days');
    t.keys('Enter');
    // The only table with a timestamp column is filtered now: no further "table to filter" question.
    const asked = await t.waitFor(/public\.events: what should init do\?/);
    expect(asked).toMatch(/at is not part of the replica identity, so init cannot publish the time filter on it/);
    expect(asked).not.toContain('Copy this to the target?');
    t.keys('Down', 'Down', 'Enter'); // copy once, without replication
    await t.waitFor('Copy this to the target?');
    t.keys('Enter');
    await t.waitFor('Save these choices as a TOML file');
    t.keys('Enter');
    const screen = await t.waitFor(/EXIT:\d+/, 120_000);
    expect(screen, screen).toContain('EXIT:0');
    expect(screen).toMatch(/pgferry init .*--time-filter 'public\.events:at:30 days' --no-sync --no-interactive --yes/);
    const st = JSON.parse(readFileSync(path.join(stateDir, 'state.json'), 'utf8')) as RunState;
    expect(st.databases[db]!.slot).toBeNull();
    const where = st.databases[db]!.filters['public.events']!;
    expect(where).toMatch(/"at" >= '.+'::timestamptz/);
    const [s, tg] = await Promise.all([
      tableHashes(source.conn(db), [{ schema: 'public', name: 'events', where }]),
      tableHashes(target.conn(db), [{ schema: 'public', name: 'events' }]),
    ]);
    expect(tg).toEqual(s);
    expect(s['public.events']!.rows).toBeGreaterThan(20);
    expect(s['public.events']!.rows).toBeLessThan(100);
  });
});
