/**
 * --config through the built CLI: a file's connection, environment over file,
 * flags over both; a broken file exits 2 naming the file and the key; an
 * inline password warns and never shows up in the output.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { DatabaseListing } from '../../src/pipeline/list/index.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

describe('--config through the CLI', () => {
  const clusters = useClusters();
  let c: LocalCluster;
  let dir: string;
  const dbs: Record<'file' | 'env' | 'flag', string> = { file: '', env: '', flag: '' };

  beforeAll(async () => {
    c = await clusters.start({ name: 'config' });
    for (const k of ['file', 'env', 'flag'] as const) dbs[k] = await createDatabase(c, undefined, 'CREATE TABLE t (id int PRIMARY KEY)');
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-config-e2e-'));
    writeFileSync(path.join(dir, 'source.conn'), `# source for the test\n${c.url(dbs.file)}\n`, { mode: 0o600 });
    writeFileSync(path.join(dir, 'pgferry.toml'), 'source_file = "source.conn"\n', { mode: 0o600 });
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The database `list` treats as "the one in the connection": tells which layer won. */
  async function connectionDatabase(args: string[], env: Record<string, string> = {}): Promise<string> {
    const r = await runCliProcess(['list', '--json', '--config', path.join(dir, 'pgferry.toml'), ...args], { env });
    expect(r.exitCode, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as DatabaseListing;
    return doc.databases.find((d) => d.connectionDatabase)!.name;
  }

  it('source: the file, then PGFERRY_SOURCE over it, then --source over both', async () => {
    expect(await connectionDatabase([])).toBe(dbs.file);
    expect(await connectionDatabase([], { PGFERRY_SOURCE: c.url(dbs.env) })).toBe(dbs.env);
    expect(await connectionDatabase(['--source', c.url(dbs.flag)], { PGFERRY_SOURCE: c.url(dbs.env) })).toBe(dbs.flag);
  });

  it('a broken file exits 2 naming the file, the key and a close match; nothing on stdout', async () => {
    const bad = path.join(dir, 'bad.toml');
    writeFileSync(bad, `[databases.shop]\nexlude_tables = ["a"]\n`);
    const r = await runCliProcess(['list', '--config', bad, '--source', c.url(dbs.file)]);
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`error: configuration file ${bad}: databases.shop.exlude_tables: unknown key (did you mean "exclude_tables"?)`);
  });

  it('an inline password loads with a warning; the password appears nowhere', async () => {
    const secret = 'Sup3rSecretPw';
    const inline = path.join(dir, 'inline.toml');
    writeFileSync(inline, `source = "${c.url(dbs.file).replace(/:[^:@/]*@/, `:${secret}@`)}"\n`, { mode: 0o644 });
    const r = await runCliProcess(['list', '--config', inline]);
    // the password is wrong on purpose: the connection fails (exit 3), the warning came first
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain('source holds a password inline');
    expect(r.stderr).toContain('readable by other users');
    expect(r.stdout + r.stderr).not.toContain(secret);
  });
});
