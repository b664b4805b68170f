import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, InterruptedError, OperationError, PgferryError, UsageError } from '../../src/errors.js';
import type { LocalCluster } from '../../src/local/cluster.js';
import { withClient } from '../../src/postgres/connect.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { quoteIdent, quoteLiteral } from '../../src/postgres/identifiers.js';
import { probeServer } from '../../src/postgres/probe.js';
import { assertToolCanDump, createTempPassfile, DEBIAN_BINROOT, findTool, prefetchTools, requireTool, runTool, unwrapDebian, PG_TOOLS } from '../../src/postgres/tools.js';
import { repoRoot } from '../support/cli.js';
import { useClusters } from '../support/clusters.js';
import { waitFor as poll } from '../support/wait.js';
/** Child processes come and go quickly: look often (and wait long: a loaded machine starts node slowly). */
const waitFor = <T>(what: string, fn: () => T) => poll(what, fn, 60_000, 25);

const AWKWARD = `p@ss:w/o#rd?%&'"\\ ünï`;
const AWK_USER = "awk'ward user";
/** Pieces of the password in every form it could leak in: raw, passfile-escaped, percent-encoded. */
const FRAGMENTS = ['o#rd?%&', encodeURIComponent('o#rd?%&'), 'ünï'];

const { start } = useClusters();
let cluster: LocalCluster;
let awk: ResolvedConnInfo;
let awkUrl: string;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-test-tools-'));
const fixture = path.join(repoRoot, 'tests/fixtures/run-tool.mjs');

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

beforeAll(async () => {
  cluster = await start({ name: 'tools' });
  await cluster.query(`CREATE ROLE ${quoteIdent(AWK_USER)} LOGIN PASSWORD ${quoteLiteral(AWKWARD)}`);
  awkUrl = `postgresql://${encodeURIComponent(AWK_USER)}:${encodeURIComponent(AWKWARD)}@127.0.0.1:${cluster.port}/postgres?sslmode=disable`;
  awk = resolveConnInfo(parseConnInfo(awkUrl), { HOME: tmp });
});

/** A folder of fake client tools whose --version says `major`; running one leaves a marker file. */
function fakeBinDir(major: number, tools: readonly string[] = PG_TOOLS): string {
  const dir = mkdtempSync(path.join(tmp, `bin${major}-`));
  for (const tool of tools) {
    const file = path.join(dir, tool);
    writeFileSync(
      file,
      `#!/bin/sh\nif [ "$1" = "--version" ]; then echo "${tool} (PostgreSQL) ${major}.22"; exit 0; fi\ntouch "${dir}/ran-${tool}"\nexit 0\n`,
    );
    chmodSync(file, 0o755);
  }
  return dir;
}

async function withPath<T>(value: string, fn: () => T | Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = value;
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

async function rejection(p: Promise<unknown>): Promise<PgferryError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(PgferryError);
    return err as PgferryError;
  }
  throw new Error('expected a rejection');
}

function childrenOf(pid: number): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(e), comm });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function allCommandLines(): string {
  const parts: string[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      parts.push(readFileSync(`/proc/${e}/cmdline`).toString('utf8'));
    } catch {
      // gone meanwhile
    }
  }
  return parts.join('\n');
}

/** Where runTool put the password file of a psql run: psql prints it from its own environment. */
const SHOW_PASSFILE = ['-c', '\\! echo "PASSFILE=$PGPASSFILE"'];
function passfileOf(stdout: string): string {
  const m = /^PASSFILE=(.*)$/m.exec(stdout);
  expect(m, stdout).toBeTruthy();
  expect(path.basename(path.dirname(m![1]!))).toMatch(/^pgferry-pgpass-/);
  return m![1]!;
}

describe('finding the client tools', () => {
  it('finds all four tools with their versions', () => {
    for (const tool of PG_TOOLS) {
      const t = requireTool(tool);
      expect(t.tool).toBe(tool);
      expect(t.major).toBeGreaterThanOrEqual(12);
      expect(t.version).toMatch(/^\d+(\.\d+)?$/);
      expect(existsSync(t.path)).toBe(true);
    }
  });

  it('looks in --pg-bin-dir first, then PATH, then pg_config --bindir', async () => {
    const bin11 = fakeBinDir(11);
    const bin12 = fakeBinDir(12);
    // --pg-bin-dir wins over PATH.
    await withPath(`${bin12}:${process.env.PATH}`, () => {
      expect(findTool('pg_dump', bin11)).toMatchObject({ major: 11, path: path.join(bin11, 'pg_dump') });
      expect(findTool('pg_dump')).toMatchObject({ major: 12, path: path.join(bin12, 'pg_dump') });
    });
    // Without the tool on PATH, pg_config --bindir says where it is.
    const cfgDir = mkdtempSync(path.join(tmp, 'cfg-'));
    writeFileSync(path.join(cfgDir, 'pg_config'), `#!/bin/sh\necho "${bin11}"\n`);
    chmodSync(path.join(cfgDir, 'pg_config'), 0o755);
    await withPath(cfgDir, () => {
      expect(findTool('pg_restore')).toMatchObject({ major: 11, path: path.join(bin11, 'pg_restore') });
    });
  });

  it('prefetchTools finds what findTool would, ahead of time and side by side', async () => {
    const bin13 = fakeBinDir(13);
    const bin14 = fakeBinDir(14, ['pg_dump']);
    await prefetchTools(['pg_dump', 'pg_restore', 'pg_dumpall'], bin13);
    // Answered from what the prefetch found (a later change of the program is not seen: it was not run again).
    writeFileSync(path.join(bin13, 'pg_restore'), '#!/bin/sh\necho "pg_restore (PostgreSQL) 16.1"\n');
    expect(findTool('pg_restore', bin13)).toMatchObject({ major: 13, path: path.join(bin13, 'pg_restore') });
    expect(findTool('pg_dumpall', bin13)).toMatchObject({ major: 13, version: '13.22' });
    // Through PATH too, and a tool missing there is left to the search (pg_config, then nothing).
    await withPath(bin14, async () => {
      await prefetchTools(['pg_dump', 'psql']);
      expect(findTool('pg_dump')).toMatchObject({ major: 14, path: path.join(bin14, 'pg_dump') });
      expect(findTool('psql')).toBeUndefined();
    });
  });

  it("runs the program behind Debian's pg_wrapper directly, the one that answered --version", async () => {
    const root = mkdtempSync(path.join(tmp, 'debian-'));
    mkdirSync(path.join(root, 'share'));
    mkdirSync(path.join(root, 'bin'));
    writeFileSync(path.join(root, 'share/pg_wrapper'), '#!/bin/sh\necho "$(basename "$0") (PostgreSQL) 16.22"\n');
    chmodSync(path.join(root, 'share/pg_wrapper'), 0o755);
    symlinkSync('../share/pg_wrapper', path.join(root, 'bin/pg_dump'));
    symlinkSync('../share/pg_wrapper', path.join(root, 'bin/psql'));
    const lib = path.join(root, 'lib');
    mkdirSync(path.join(lib, '16/bin'), { recursive: true });
    writeFileSync(path.join(lib, '16/bin/pg_dump'), '#!/bin/sh\n');
    expect(unwrapDebian(path.join(root, 'bin/pg_dump'), 'pg_dump', 16, lib)).toBe(path.join(lib, '16/bin/pg_dump'));
    // No such program where the wrapper would look, or not the wrapper at all: the file as found.
    expect(unwrapDebian(path.join(root, 'bin/psql'), 'psql', 16, lib)).toBe(path.join(root, 'bin/psql'));
    expect(unwrapDebian(path.join(root, 'bin/pg_dump'), 'pg_dump', 15, lib)).toBe(path.join(root, 'bin/pg_dump'));
    const plain = fakeBinDir(16, ['pg_dump']);
    expect(unwrapDebian(path.join(plain, 'pg_dump'), 'pg_dump', 16, lib)).toBe(path.join(plain, 'pg_dump'));
    // This machine's own tools, where they come through the wrapper (Debian and Ubuntu packages).
    if (existsSync('/usr/bin/pg_dump') && realpathSync('/usr/bin/pg_dump').endsWith('/pg_wrapper')) {
      await withPath('/usr/bin', () => {
        const t = findTool('pg_dump')!;
        expect(t.path).toBe(`${DEBIAN_BINROOT}/${t.major}/bin/pg_dump`);
      });
    }
  });

  it('says what to do when a tool is nowhere', async () => {
    const empty = mkdtempSync(path.join(tmp, 'empty-'));
    const inDir = (() => {
      try {
        requireTool('pg_dumpall', empty);
      } catch (e) {
        return e as UsageError;
      }
      throw new Error('expected requireTool to fail');
    })();
    expect(inDir).toBeInstanceOf(UsageError);
    expect(inDir.message).toBe(`pg_dumpall not found in ${empty}`);
    expect(inDir.hint).toMatch(/postgresql-client.*--pg-bin-dir/);
    await withPath(empty, () => {
      expect(() => requireTool('psql')).toThrow(/psql not found \(looked in PATH and pg_config --bindir\)/);
    });
  });

  it('refuses a pg_dump older than the server and says what to install, without running it', async () => {
    const bin11 = fakeBinDir(11);
    const server = await withClient(cluster.conn(), (c) => probeServer(c, cluster.conn(), 'source'));
    const old = requireTool('pg_dump', bin11);
    const err = (() => {
      try {
        assertToolCanDump(old, server.major);
      } catch (e) {
        return e as UsageError;
      }
      throw new Error('expected a refusal');
    })();
    expect(err).toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(ExitCode.usage);
    expect(err.message).toBe(`pg_dump 11.22 (${path.join(bin11, 'pg_dump')}) cannot dump the source server, which runs PostgreSQL ${server.major}`);
    expect(err.hint).toContain(`install the PostgreSQL ${server.major} client tools`);
    expect(err.hint).toContain(`--pg-bin-dir /usr/lib/postgresql/${server.major}/bin`);
    // pg_restore and psql have no such limit; a pg_dump of the same or a newer major is fine.
    expect(() => assertToolCanDump(requireTool('psql', bin11), server.major)).not.toThrow();
    expect(() => assertToolCanDump(requireTool('pg_dump'), server.major)).not.toThrow();

    const viaRun = await rejection(runTool('pg_dump', ['--schema-only'], { conn: awk, pgBinDir: bin11, serverMajor: server.major }));
    expect(viaRun).toBeInstanceOf(UsageError);
    expect(existsSync(path.join(bin11, 'ran-pg_dump'))).toBe(false);
  });
});

describe('runTool', () => {
  it('connects with the awkward password through a private password file, as application pgferry', async () => {
    const { stdout } = await runTool(
      'psql',
      ['-XAt', '-c', 'SELECT current_user, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()', ...SHOW_PASSFILE],
      { conn: awk },
    );
    expect(stdout.split('\n')[0]).toBe(`${AWK_USER}|pgferry`);
    const file = passfileOf(stdout);
    expect(existsSync(path.dirname(file))).toBe(false);
  });

  it('uses its own password file even when the connection names a passfile of the user', async () => {
    const userFile = path.join(tmp, 'user.pgpass');
    writeFileSync(userFile, '*:*:*:*:not-the-password\n', { mode: 0o600 });
    const r = resolveConnInfo(parseConnInfo(`${awkUrl}&passfile=${encodeURIComponent(userFile)}`), { HOME: tmp });
    const { stdout } = await runTool('psql', ['-XAtc', 'SELECT 1'], { conn: r });
    expect(stdout).toBe('1\n');
  });

  it('keeps connection strings with passwords out of the child environment', async () => {
    const saved = { DATABASE_URL: process.env.DATABASE_URL, PGPASSWORD: process.env.PGPASSWORD };
    process.env.DATABASE_URL = awkUrl;
    process.env.PGPASSWORD = AWKWARD;
    try {
      // The environment psql got, printed by a shell it starts.
      const { stdout: env } = await runTool('psql', ['-XAt', '-c', '\\! env'], { conn: awk, env: { PGFERRY_TEST_MARK: 'kept' } });
      expect(env).toMatch(/^PGFERRY_TEST_MARK=kept$/m);
      expect(env).toMatch(/^PGPASSFILE=.*pgferry-pgpass-.*$/m);
      expect(env).not.toMatch(/^DATABASE_URL=/m);
      expect(env).not.toMatch(/^PGPASSWORD=/m);
      for (const f of FRAGMENTS) expect(env).not.toContain(f);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('streams stdout to a writable and feeds stdin', async () => {
    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    });
    const res = await runTool('psql', ['-XAt', '-f', '-'], { conn: awk, input: 'SELECT g FROM generate_series(1, 3) g;\n', stdout: sink });
    expect(res.stdout).toBe('');
    expect(Buffer.concat(chunks).toString()).toBe('1\n2\n3\n');
  });

  it('reports a failing tool with its stderr, redacted, and removes the password file', async () => {
    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    });
    const err = await rejection(
      runTool('psql', ['-X', '-v', 'ON_ERROR_STOP=1', ...SHOW_PASSFILE, '-c', `DO $$ BEGIN RAISE EXCEPTION 'echo: %', ${quoteLiteral(AWKWARD)}; END $$`], {
        stdout: sink,
        conn: awk,
        label: 'psql of the test',
      }),
    );
    expect(err).toBeInstanceOf(OperationError);
    expect(err.exitCode).toBe(ExitCode.failed);
    expect(err.message).toMatch(/^psql of the test exited with code 1:\n.*ERROR: {2}echo: \*{8}/s);
    for (const f of FRAGMENTS) expect(err.message).not.toContain(f);
    expect(existsSync(path.dirname(passfileOf(Buffer.concat(chunks).toString())))).toBe(false);
  });

  it('reports a tool that cannot be started', async () => {
    const dir = fakeBinDir(15, ['psql']);
    requireTool('psql', dir);
    // Found (and remembered) earlier, gone now.
    rmSync(path.join(dir, 'psql'));
    const err = await rejection(runTool('psql', ['-c', 'SELECT 1'], { conn: awk, pgBinDir: dir }));
    expect(err).toBeInstanceOf(OperationError);
    expect(err.message).toMatch(/^psql could not be run \(.*ENOENT.*\)$/s);
    for (const f of FRAGMENTS) expect(err.message).not.toContain(f);
  });

  it('stops the tool and removes the password file when the caller aborts', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = runTool('psql', ['-X', '-c', 'SELECT pg_sleep(20)'], { conn: awk, signal: ac.signal });
    // This run's psql: one with a password file (a psql of an earlier test may still be exiting, its environ empty).
    const passfile = await waitFor('psql', () => {
      for (const c of childrenOf(process.pid).filter((c) => c.comm === 'psql')) {
        try {
          const e = readFileSync(`/proc/${c.pid}/environ`, 'utf8').split('\0').find((v) => v.startsWith('PGPASSFILE='));
          if (e) return e.slice('PGPASSFILE='.length);
        } catch {
          // gone meanwhile
        }
      }
      return undefined;
    });
    expect(existsSync(passfile)).toBe(true);
    ac.abort();
    const err = await rejection(p);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(err.exitCode).toBe(ExitCode.interrupted);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(existsSync(path.dirname(passfile))).toBe(false);
    // An already aborted signal runs nothing.
    await expect(runTool('psql', ['-c', 'SELECT 1'], { conn: awk, signal: ac.signal })).rejects.toBeInstanceOf(InterruptedError);
  });

  it('creates the password file exclusively, 0600 inside a 0700 directory, escaping ":" and "\\"', () => {
    const pass = createTempPassfile(awk);
    try {
      expect(statSync(pass.dir).mode & 0o777).toBe(0o700);
      expect(statSync(pass.path).mode & 0o777).toBe(0o600);
      expect(path.dirname(pass.path)).toBe(pass.dir);
      expect(readFileSync(pass.path, 'utf8')).toBe(`*:*:*:awk'ward user:p@ss\\:w/o#rd?%&'"\\\\ ünï\n`);
    } finally {
      pass.dispose();
    }
    expect(existsSync(pass.dir)).toBe(false);
  });
});

/** Process-level proof: watch a real child tool through /proc while it runs. */
describe('secrets while a tool runs (separate process)', () => {
  beforeAll(() => {
    const stale = ['lifecycle.ts', 'postgres/tools.ts', 'postgres/conninfo.ts', 'postgres/pgpass.ts', 'postgres/redact.ts'].filter((f) => {
      const built = path.join(repoRoot, 'dist', f.replace(/\.ts$/, '.js'));
      return !existsSync(built) || statSync(built).mtimeMs < statSync(path.join(repoRoot, 'src', f)).mtimeMs;
    });
    if (stale.length) throw new Error(`dist/ is missing or older than src/ for ${stale.join(', ')}: run npm run build (npm test does)`);
  });

  type Ending = 'normal' | 'failing' | 'SIGINT' | 'SIGTERM';
  const sql: Record<Ending, string[]> = {
    normal: ['-c', 'SELECT pg_sleep(1.5)', '-c', "SELECT 'done'"],
    failing: ['-v', 'ON_ERROR_STOP=1', '-c', 'SELECT pg_sleep(1.5)', '-c', 'SELECT 1/0'],
    SIGINT: ['-c', 'SELECT pg_sleep(20)'],
    SIGTERM: ['-c', 'SELECT pg_sleep(20)'],
  };
  const expected: Record<Ending, number> = { normal: 0, failing: ExitCode.failed, SIGINT: 130, SIGTERM: 143 };

  async function scenario(ending: Ending) {
    const proc = execa(process.execPath, [fixture, 'psql', '-XAt', ...sql[ending]], {
      env: { ...process.env, PGFERRY_SOURCE: awkUrl, PGPASSWORD: undefined, PGPASSFILE: undefined, HOME: tmp },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
    });
    // Every child the fixture starts (the --version probe too) is checked while it lives.
    const leaks: string[] = [];
    const seen = new Set<number>();
    const psql = await waitFor(`psql under ${ending}`, () => {
      for (const c of childrenOf(proc.pid!)) {
        if (seen.has(c.pid)) continue;
        try {
          const env = readFileSync(`/proc/${c.pid}/environ`).toString('utf8').split('\0');
          const args = readFileSync(`/proc/${c.pid}/cmdline`).toString('utf8');
          if (c.comm === 'node') continue; // forked, not yet exec'd
          // Mid-exec the new name shows before the kernel has set up argv and environ (both read empty): look again.
          if (args === '') continue;
          seen.add(c.pid);
          for (const e of env) if (FRAGMENTS.some((f) => e.includes(f)) || e.startsWith('PGFERRY_SOURCE=')) leaks.push(`${c.comm} env ${e.split('=')[0]}`);
          if (FRAGMENTS.some((f) => args.includes(f))) leaks.push(`${c.comm} argv`);
          if (c.comm === 'psql' && args.includes('--no-password')) return c;
        } catch {
          // gone meanwhile
        }
      }
      return undefined;
    });
    expect(leaks, ending).toEqual([]);

    // While it runs: no command line anywhere holds the password, nor does the child's environment.
    const cmdlines = allCommandLines();
    for (const f of FRAGMENTS) expect(cmdlines, `cmdlines (${ending})`).not.toContain(f);
    const environ = readFileSync(`/proc/${psql.pid}/environ`).toString('utf8').split('\0');
    for (const f of FRAGMENTS) expect(environ.filter((e) => e.includes(f)).map((e) => e.split("=")[0]), `environ (${ending})`).toEqual([]);
    expect(environ.some((e) => e.startsWith('PGFERRY_SOURCE=') || e.startsWith('PGPASSWORD='))).toBe(false);
    const cmdline = readFileSync(`/proc/${psql.pid}/cmdline`).toString('utf8').split('\0');
    expect(cmdline).toContain('--no-password');

    // The password travels in a 0600 file inside a 0700 directory of ours.
    const passfile = environ.find((e) => e.startsWith('PGPASSFILE='))!.slice('PGPASSFILE='.length);
    expect(path.basename(path.dirname(passfile))).toMatch(/^pgferry-pgpass-/);
    const fst = statSync(passfile);
    const dst = statSync(path.dirname(passfile));
    expect(fst.mode & 0o777).toBe(0o600);
    expect(dst.mode & 0o777).toBe(0o700);
    expect(fst.uid).toBe(process.getuid!());
    expect(readFileSync(passfile, 'utf8')).toContain('o#rd?%&');

    if (ending === 'SIGINT' || ending === 'SIGTERM') proc.kill(ending);
    const res = await proc;
    return { ending, res, passfile, psqlPid: psql.pid };
  }

  it('holds for a normal exit, a failing tool, SIGINT and SIGTERM, and the file is gone afterwards', async () => {
    const results = await Promise.all((['normal', 'failing', 'SIGINT', 'SIGTERM'] as const).map((e) => scenario(e)));
    for (const { ending, res, passfile, psqlPid } of results) {
      expect(res.exitCode, `${ending}: ${String(res.stderr)}`).toBe(expected[ending]);
      expect(existsSync(passfile), ending).toBe(false);
      expect(existsSync(path.dirname(passfile)), ending).toBe(false);
      expect(existsSync(`/proc/${psqlPid}`), `${ending}: psql still running`).toBe(false);
      for (const f of FRAGMENTS) {
        expect(String(res.stdout), ending).not.toContain(f);
        expect(String(res.stderr), ending).not.toContain(f);
      }
    }
    const byEnding = Object.fromEntries(results.map((r) => [r.ending, r.res]));
    expect(String(byEnding.normal!.stdout)).toBe('\ndone');
    expect(String(byEnding.failing!.stderr), String(byEnding.failing!.stderr)).toMatch(/psql \(fixture\) exited with code 1:[\s\S]*division by zero/);
    expect(String(byEnding.SIGINT!.stderr)).toMatch(/interrupted/);
  });
});
