/**
 * Bad input as a new user meets it, for every command of the built CLI: a
 * wrong password, an unreachable host, a database that does not exist, a
 * malformed TOML file, a target database that is not empty. Each gets its
 * exit code and a message naming the thing; nothing is written (no
 * state.json where there was none, an existing one unchanged, no new
 * replication object on either server); no password appears in any output.
 */
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess, type CliResult } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const WRONG = 'Wr0ng-pass:w@rd';
const { start } = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-bad-input-'));
/** A state directory after a successful init (commands after init get a copy of it). */
const initialised = path.join(tmp, 'initialised');
const badToml = path.join(tmp, 'bad.toml');

beforeAll(async () => {
  [src, tgt] = await Promise.all([start({ name: 'bad-src' }), start({ name: 'bad-tgt' })]);
  await createDatabase(src, 'shop', 'CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, g::text FROM generate_series(1, 100) g;');
  await createDatabase(tgt, 'busy', 'CREATE TABLE leftover (id int);');
  const r = await runCliProcess(['init', '--yes', '--no-roles', '--source', src.url('shop'), '--target', tgt.url('shop'), '--state-dir', initialised]);
  expect(r.exitCode, r.stderr).toBe(0);
  writeFileSync(badToml, '[scope\ntables = 1\n');
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Fault {
  name: string;
  args: () => string[];
  exitCode: number;
  message: () => RegExp;
}

const urlWithPassword = (c: LocalCluster, db: string, password: string) => c.url(db, 'postgres', password);
const FAULTS: Fault[] = [
  {
    name: 'wrong source password',
    args: () => ['--source', urlWithPassword(src, 'shop', WRONG), '--target', tgt.url('shop')],
    exitCode: 3,
    message: () => /cannot connect to source \(postgres@127\.0\.0\.1:\d+\/shop\): password authentication failed for user "postgres"/,
  },
  {
    name: 'wrong target password',
    args: () => ['--source', src.url('shop'), '--target', urlWithPassword(tgt, 'shop', WRONG)],
    exitCode: 3,
    message: () => /cannot connect to target \(postgres@127\.0\.0\.1:\d+\/shop\): password authentication failed for user "postgres"/,
  },
  {
    name: 'unreachable source',
    args: () => ['--source', `postgresql://postgres:${encodeURIComponent(WRONG)}@127.0.0.1:1/shop?connect_timeout=3`, '--target', tgt.url('shop')],
    exitCode: 3,
    message: () => /cannot connect to source \(postgres@127\.0\.0\.1:1\/shop\).*\n.*is the server running, and are host and port right/,
  },
  {
    name: 'unreachable target',
    args: () => ['--source', src.url('shop'), '--target', `postgresql://postgres:${encodeURIComponent(WRONG)}@127.0.0.1:1/shop?connect_timeout=3`],
    exitCode: 3,
    message: () => /cannot connect to target \(postgres@127\.0\.0\.1:1\/shop\).*\n.*is the server running, and are host and port right/,
  },
  {
    name: 'source database that does not exist',
    args: () => ['--source', src.url('no_such_db'), '--target', tgt.url('shop')],
    exitCode: 3,
    message: () => /cannot connect to source \(postgres@127\.0\.0\.1:\d+\/no_such_db\): database "no_such_db" does not exist\n.*check the database name/,
  },
  {
    name: 'malformed TOML file',
    args: () => ['--source', src.url('shop'), '--target', tgt.url('shop'), '--config', badToml],
    exitCode: 2,
    message: () => new RegExp(`configuration file ${badToml.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:1:\\d+: not valid TOML`),
  },
];

/** Commands that only read the source (list) ignore the target's faults. */
const COMMANDS: { cmd: string; afterInit: boolean; target: boolean }[] = [
  { cmd: 'validate', afterInit: false, target: true },
  { cmd: 'list', afterInit: false, target: false },
  { cmd: 'init', afterInit: false, target: true },
  { cmd: 'sync', afterInit: true, target: true },
  { cmd: 'status', afterInit: true, target: true },
  { cmd: 'sequences', afterInit: true, target: true },
  { cmd: 'verify', afterInit: true, target: true },
  { cmd: 'cleanup', afterInit: true, target: true },
];

/** Every file of a directory with its contents. */
function snapshotDir(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = readFileSync(path.join(e.parentPath, e.name), 'latin1');
  }
  return out;
}

/** The replication objects on both servers and the target's databases: a failed command must leave them as they were. */
async function serverObjects(): Promise<unknown> {
  const [slots, pubs, subs, dbs, busy] = await Promise.all([
    src.query('SELECT slot_name FROM pg_replication_slots ORDER BY 1'),
    src.query('SELECT pubname FROM pg_publication ORDER BY 1', [], 'shop'),
    tgt.query('SELECT subname FROM pg_subscription ORDER BY 1'),
    tgt.query('SELECT datname FROM pg_database ORDER BY 1'),
    tgt.query("SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY 1", [], 'busy'),
  ]);
  return { slots, pubs, subs, dbs, busy };
}

function noSecrets(r: CliResult): void {
  const all = r.stdout + r.stderr;
  expect(all).not.toContain(WRONG);
  expect(all).not.toContain(encodeURIComponent(WRONG));
  expect(all).not.toContain(src.password);
  expect(all).not.toContain(tgt.password);
}

describe('bad input, command by command (built CLI)', () => {
  for (const { cmd, afterInit, target } of COMMANDS) {
    it(`${cmd}: exit code, a message naming the thing, nothing written, no password`, async () => {
      const before = await serverObjects();
      const faults = FAULTS.filter((f) => target || !/target/.test(f.name));
      // Two at a time: each is a Node process and a few connections.
      for (let i = 0; i < faults.length; i += 2) {
        await Promise.all(
          faults.slice(i, i + 2).map(async (f) => {
            const dir = path.join(tmp, `${cmd}-${f.name.replace(/\W+/g, '-')}`);
            if (afterInit) cpSync(initialised, dir, { recursive: true });
            const files = snapshotDir(dir);
            const r = await runCliProcess([cmd, ...f.args(), '--state-dir', dir]);
            const what = `${cmd} with a ${f.name}:\n${r.stdout}\n${r.stderr}`;
            expect(r.exitCode, what).toBe(f.exitCode);
            expect(r.stdout + r.stderr, what).toMatch(f.message());
            noSecrets(r);
            // Nothing written: no state where there was none, and an existing state unchanged.
            expect(snapshotDir(dir), what).toEqual(files);
          }),
        );
      }
      expect(await serverObjects()).toEqual(before);
    });
  }

  it('validate says what init will do with a target database that is not empty', async () => {
    const r = await runCliProcess(['validate', '--json', '--source', src.url('shop'), '--target', tgt.url('busy'), '--state-dir', path.join(tmp, 'v-busy')]);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string; fix: string }[] };
    const check = doc.checks.find((c) => c.id === 'database.target_not_empty');
    expect(check).toMatchObject({ status: 'warn' });
    expect(check!.message).toMatch(/^target database busy already holds 1 table: init refuses it \(exit 2, nothing written\) unless run with --drop-existing/);
    expect(check!.fix).toMatch(/--drop-existing/);
    noSecrets(r);
  });

  it('init refuses a target database that is not empty, and with --drop-existing but no --yes, writing nothing', async () => {
    const before = await serverObjects();
    for (const extra of [[], ['--drop-existing'], ['--drop-existing', '--no-interactive']]) {
      const dir = path.join(tmp, `init-busy-${extra.length}`);
      const r = await runCliProcess(['init', ...extra, '--source', src.url('shop'), '--target', tgt.url('busy'), '--state-dir', dir]);
      const what = `init ${extra.join(' ')}:\n${r.stdout}\n${r.stderr}`;
      expect(r.exitCode, what).toBe(2);
      expect(r.stderr, what).toMatch(extra.length ? /Drop the target database "busy" \(1 relations\) and re-create it: this needs a confirmation/ : /the target database "busy" already exists and is not empty/);
      expect(r.stderr, what).toMatch(extra.length ? /add --yes \(with --drop-existing\) to confirm/ : /--drop-existing/);
      expect(r.stdout + r.stderr, what).not.toMatch(/resume/);
      expect(existsSync(path.join(dir, 'state.json')), what).toBe(false);
      noSecrets(r);
    }
    expect(await serverObjects()).toEqual(before);
  });
});
