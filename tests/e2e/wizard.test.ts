/**
 * The interactive mode driven as a person would, in a real terminal (tmux):
 * `pgferry validate` against two throwaway clusters, choosing databases and
 * tables with arrow keys and space, confirming, saving the choices. The plan
 * it makes equals the one its printed flags make and the one its saved file
 * makes. Ctrl-C exits 130 and leaves nothing behind; without a terminal
 * nothing is asked.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/file.js';
import { scopeHash } from '../../src/config/scope.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { TableListing } from '../../src/pipeline/list/index.js';
import { cliPath, runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { killAll, openTerminal, tmuxAvailable, type Terminal } from './wizard-tmux.js';

const SCHEMA = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz);
CREATE TABLE audit (at timestamptz, message text);
CREATE TABLE "Big Deals" (id int PRIMARY KEY, amount numeric);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 300) g;
INSERT INTO orders SELECT g, 1 + g % 300, now() - g * interval '1 day' FROM generate_series(1, 900) g;
ANALYZE;
`;

/** Split a POSIX shell command line (single quotes, backslashes) into words. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      cur += line.slice(i + 1, end);
      i = end;
      has = true;
    } else if (c === '\\') {
      cur += line[++i] ?? '';
      has = true;
    } else if (/\s/.test(c)) {
      if (has) words.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) words.push(cur);
  return words;
}

/** Scope flags of a printed command: everything after the connections, without the trailing behaviour flags. */
function scopeFlags(words: string[]): string[] {
  const out: string[] = [];
  for (let i = 2; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--source' || w === '--target') i++;
    else if (w !== '--no-interactive' && w !== '--yes') out.push(w);
  }
  return out;
}

describe.skipIf(!tmuxAvailable())('interactive mode in a terminal', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  let shop: string;
  let dir: string;
  const terminals: Terminal[] = [];

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'wiz-src' }), clusters.start({ name: 'wiz-tgt' })]);
    shop = await createDatabase(source, uniqueDbName('wshop'), SCHEMA);
    await createDatabase(source, uniqueDbName('wcrm'), 'CREATE TABLE contacts (id int PRIMARY KEY)');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-wizard-'));
  });
  afterAll(() => {
    for (const t of terminals) t.kill();
    killAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function validateIn(cwd: string): Terminal {
    const cmd = `${process.execPath} ${cliPath} validate --source '${source.url(shop)}' --target '${target.url(shop)}'`;
    const t = openTerminal(cmd, { cwd, width: 220, height: 60 });
    terminals.push(t);
    return t;
  }

  it('chooses tables, confirms, saves: the plan equals the printed flags and the saved file', async () => {
    const cwd = mkdtempSync(path.join(dir, 'run-'));
    const t = validateIn(cwd);
    // databases: the one in the URL is preselected; keep it
    await t.waitFor(/Databases to copy[\s\S]*◉ wshop/);
    t.keys('Enter');
    // tables to leave out, in catalog order: "Big Deals", audit, customers, orders
    await t.waitFor(/tables to leave out[\s\S]*public\.orders/);
    t.keys('Down', 'Space');
    await t.waitFor(/◉ public\.audit/);
    t.keys('Enter');
    // structure only: "Big Deals" (first of the remaining)
    await t.waitFor(/structure only, without rows[\s\S]*public\.orders/);
    t.keys('Space');
    await t.waitFor(/◉ public\."Big Deals"/);
    t.keys('Enter');
    await t.waitFor('copy only recent rows of some tables (time filter)?');
    t.keys('y', 'Enter');
    await t.waitFor(/table to filter by time[\s\S]*public\.orders/);
    t.keys('Enter');
    await t.waitFor(/public\.orders: timestamp column[\s\S]*updated_at/);
    t.keys('Enter'); // created_at
    await t.waitFor('is within the last');
    t.type('30 days');
    t.keys('Enter');
    await t.waitFor('Run the checks with this scope?');
    const summary = t.screen();
    expect(summary).toContain('left out:       public.audit');
    expect(summary).toContain('structure only: public."Big Deals"');
    expect(summary).toContain('recent rows:    public.orders where created_at is within the last 30 days');
    t.keys('Enter');
    await t.waitFor('Save these choices as a TOML file');
    t.keys('y', 'Enter');
    await t.waitFor('File name');
    t.keys('Enter');
    const screen = await t.waitFor(/EXIT:\d+/, 60_000);

    // validate ran with that scope after the questions (0: all passed, 1: a check failed; never 2 or 130)
    expect(screen).toMatch(/\d+ ok, \d+ warnings, \d+ failures/);
    expect(screen).toMatch(/EXIT:[01]\b/);
    const lines = screen.split('\n');
    const commands = lines.filter((l) => l.trim().startsWith('pgferry validate'));
    expect(commands).toHaveLength(2);
    const [flagsLine, configLine] = commands.map((l) => shellWords(l.trim()));
    // no password in what is printed
    expect(screen).not.toContain(source.password);
    expect(flagsLine).toContain('--no-interactive');
    const fingerprint = /scope fingerprint ([0-9a-f]{16})/.exec(screen)?.[1];
    expect(fingerprint).toBeDefined();

    // the saved file means the same plan
    const saved = path.join(cwd, 'pgferry-scope.toml');
    expect(configLine).toEqual(expect.arrayContaining(['--config', 'pgferry-scope.toml']));
    expect(scopeHash(parseConfigText(readFileSync(saved, 'utf8'), saved).scope)).toBe(fingerprint);

    // the printed flags make the same plan as the questions: same fingerprint, same tables in and out
    const flags = scopeFlags(flagsLine!);
    expect(flags).toEqual([
      '--exclude-tables', 'public.audit', '--schema-only-tables', 'public."Big Deals"', '--time-filter', 'public.orders:created_at:30 days',
    ]);
    const viaFlags = await runCliProcess(['list', shop, '--source', source.url(shop), '--json', ...flags]);
    const viaFile = await runCliProcess(['list', shop, '--source', source.url(shop), '--json', '--config', saved]);
    expect(viaFlags.exitCode, viaFlags.stderr).toBe(0);
    expect(viaFile.exitCode, viaFile.stderr).toBe(0);
    const planFlags = JSON.parse(viaFlags.stdout) as TableListing & { scopeFingerprint: string };
    const planFile = JSON.parse(viaFile.stdout) as TableListing & { scopeFingerprint: string };
    expect(planFlags.scopeFingerprint).toBe(fingerprint);
    expect(planFile).toEqual(planFlags);
    const state = Object.fromEntries(planFlags.tables.map((x) => [x.name, x.inScope ? (x.schemaOnly ? 'schema-only' : x.timeFilter ? `time:${x.timeFilter.column}:${x.timeFilter.window}` : 'copied') : 'excluded']));
    expect(state).toEqual({ 'Big Deals': 'schema-only', audit: 'excluded', customers: 'copied', orders: 'time:created_at:30 days' });
  });

  it('Ctrl-C at a question exits 130 and leaves no file and no state behind', async () => {
    const cwd = mkdtempSync(path.join(dir, 'interrupt-'));
    const t = validateIn(cwd);
    await t.waitFor(/Databases to copy/);
    t.keys('Enter');
    await t.waitFor(/tables to leave out/);
    t.keys('C-c');
    const screen = await t.waitFor(/EXIT:\d+/);
    expect(screen).toContain('EXIT:130');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('declining at the end exits 130 with nothing done', async () => {
    const cwd = mkdtempSync(path.join(dir, 'decline-'));
    const t = validateIn(cwd);
    await t.waitFor(/Databases to copy/);
    t.keys('Enter');
    await t.waitFor(/tables to leave out/);
    t.keys('Enter');
    await t.waitFor(/structure only/);
    t.keys('Enter');
    await t.waitFor('(time filter)?');
    t.keys('Enter'); // no
    await t.waitFor('Run the checks with this scope?');
    t.keys('n', 'Enter');
    const screen = await t.waitFor(/EXIT:\d+/);
    expect(screen).toContain('cancelled: nothing was changed');
    expect(screen).toContain('EXIT:130');
    expect(screen).not.toMatch(/\d+ ok, \d+ warnings/);
    expect(existsSync(path.join(cwd, 'pgferry-scope.toml'))).toBe(false);
  });

  it('without a terminal nothing is asked; --interactive there exits 2 naming what to do instead', async () => {
    const plain = await runCliProcess(['validate', '--source', source.url(shop), '--target', target.url(shop), '--exclude-tables', 'public.audit']);
    expect([0, 1]).toContain(plain.exitCode);
    expect(plain.stdout + plain.stderr).not.toContain('Databases to copy');
    expect(plain.stdout).toMatch(/\d+ ok, \d+ warnings, \d+ failures/);

    const forced = await runCliProcess(['validate', '--interactive', '--source', source.url(shop), '--target', target.url(shop)]);
    expect(forced.exitCode).toBe(2);
    expect(forced.stderr).toContain('--interactive needs a terminal');
    expect(forced.stderr).toContain('--config FILE');
    expect(forced.stderr).toContain('--yes');
  });

  it('without a terminal a needed confirmation is not asked: exit 2 naming --yes, nothing dropped', async () => {
    await target.query(`CREATE DATABASE "${shop}"`);
    await target.query('CREATE TABLE keep_me (id int)', undefined, shop);
    const r = await runCliProcess(['init', '--drop-existing', '--source', source.url(shop), '--target', target.url(shop), '--exclude-tables', 'public.audit'], {
      cwd: dir,
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toContain('hint: add --yes');
    expect(r.stdout + r.stderr).not.toContain('Databases to copy');
    expect(await target.query("SELECT 1 FROM pg_class WHERE relname = 'keep_me'", undefined, shop)).toHaveLength(1);
    expect(await source.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
  });
});
