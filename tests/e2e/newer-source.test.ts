/**
 * A source newer than the newest pg_dump at hand (embedded PostgreSQL 18;
 * pg_dump here is 15): validate reports it with the fix, init refuses it with
 * exit 2 before anything is written, naming both versions and what to install
 * or pass with --pg-bin-dir. And --pg-bin-dir is what the version check reads:
 * no pg_dump newer than 15 can be had on the test machines (Debian ships none,
 * the embedded builds carry only server programs), so a folder whose pg_dump
 * and pg_dumpall report 18 stands in for one, and validate accepts it.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { findTool } from '../../src/postgres/tools.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, uniqueDbName, useClusters } from '../support/clusters.js';
import { writerSchemaSql } from '../support/writer.js';

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;
let db: string;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-newer-'));

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.startMajor(18, { name: 'newer18' }), clusters.start({ name: 'newer-tgt' })]);
  db = await createDatabase(src, uniqueDbName('newer'), writerSchemaSql(100));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const conns = (stateDir: string) => ['--source', src.url(db), '--target', tgt.url(db), '--state-dir', stateDir];

/** A --pg-bin-dir folder: the system's client tools, with pg_dump and pg_dumpall answering `--version` as `major`. */
function binDir(name: string, major: number | undefined): string {
  const dir = path.join(tmp, name);
  mkdirSync(dir);
  for (const tool of ['pg_dump', 'pg_dumpall', 'pg_restore', 'psql'] as const) {
    const real = findTool(tool)!.path;
    if (major !== undefined && (tool === 'pg_dump' || tool === 'pg_dumpall')) {
      writeFileSync(
        path.join(dir, tool),
        `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "${tool} (PostgreSQL) ${major}.4"; exit 0; fi\nexec "${real}" "$@"\n`,
        { mode: 0o755 },
      );
    } else {
      symlinkSync(real, path.join(dir, tool));
    }
  }
  return dir;
}

async function nothingWritten(stateDir: string): Promise<void> {
  expect(existsSync(path.join(stateDir, 'state.json'))).toBe(false);
  expect(await src.query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%'")).toEqual([]);
  expect(await src.query("SELECT pubname FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db)).toEqual([]);
  expect(await tgt.query('SELECT datname FROM pg_database WHERE datname = $1', [db])).toEqual([]);
}

describe('a source newer than pg_dump', () => {
  it('validate fails the pg_dump check, naming both versions and the fix', async () => {
    const r = await runCliProcess(['validate', '--json', ...conns(path.join(tmp, 'v1'))]);
    expect(r.exitCode, r.stderr).toBe(1);
    const doc = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string; fix?: string }[] };
    const check = doc.checks.find((c) => c.id === 'tools.pg_dump')!;
    expect(check.status).toBe('fail');
    expect(check.message).toMatch(/^pg_dump 15\.\d+ \(\S+\) cannot dump the source server, which runs PostgreSQL 18$/);
    expect(check.fix).toMatch(/install the PostgreSQL 18 client tools/);
    expect(check.fix).toMatch(/--pg-bin-dir \/usr\/lib\/postgresql\/18\/bin/);
    expect(doc.checks.find((c) => c.id === 'tools.pg_dumpall')?.status).toBe('fail');
    expect(r.stdout + r.stderr).not.toContain(src.password);
    expect(existsSync(path.join(tmp, 'v1', 'state.json'))).toBe(false);
  });

  it('init refuses with exit 2 before anything is written', async () => {
    const stateDir = path.join(tmp, 'init1');
    const r = await runCliProcess(['init', '--yes', ...conns(stateDir)]);
    expect(r.exitCode, r.stdout + r.stderr).toBe(2);
    expect(r.stderr).toMatch(/pg_dump 15\.\d+ \(\S+\) cannot dump the source server, which runs PostgreSQL 18/);
    expect(r.stderr).toMatch(/install the PostgreSQL 18 client tools.*--pg-bin-dir \/usr\/lib\/postgresql\/18\/bin/s);
    expect(r.stderr).not.toMatch(/resume/);
    expect(r.stdout + r.stderr).not.toContain(src.password);
    await nothingWritten(stateDir);
  });

  it('the version check reads the pg_dump of --pg-bin-dir', async () => {
    // Old tools there: refused, naming that folder's pg_dump.
    const old = binDir('old', undefined);
    const refused = await runCliProcess(['init', '--yes', '--pg-bin-dir', old, ...conns(path.join(tmp, 'init2'))]);
    expect(refused.exitCode, refused.stderr).toBe(2);
    expect(refused.stderr).toContain(`(${path.join(old, 'pg_dump')}) cannot dump the source server, which runs PostgreSQL 18`);
    await nothingWritten(path.join(tmp, 'init2'));

    // Tools of 18 there: the check passes, from that folder.
    const newer = binDir('new', 18);
    const r = await runCliProcess(['validate', '--json', '--pg-bin-dir', newer, ...conns(path.join(tmp, 'v2'))]);
    const doc = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string }[] };
    expect(doc.checks.find((c) => c.id === 'tools.pg_dump')).toMatchObject({ status: 'ok', message: `pg_dump 18.4 (${path.join(newer, 'pg_dump')})` });
    expect(doc.checks.find((c) => c.id === 'tools.pg_dumpall')).toMatchObject({ status: 'ok' });
    expect(doc.checks.filter((c) => c.status === 'fail'), r.stdout).toEqual([]);
    expect(r.exitCode, r.stdout).toBe(0);
  });
});
