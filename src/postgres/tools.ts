/**
 * PostgreSQL client tools (pg_dump, pg_restore, pg_dumpall, psql) run through
 * execa. Binaries are found in --pg-bin-dir, then PATH, then
 * `pg_config --bindir`. Credentials reach the child only through a temporary
 * password file (0600, created exclusively inside a private 0700 directory),
 * which is removed on success, on error, and on SIGINT/SIGTERM. Nothing
 * secret is ever placed in argv or in the child's environment.
 */
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Options, ResultPromise } from 'execa';
import { InterruptedError, OperationError, UsageError } from '../errors.js';
import { processAlive, registerCleanup, shutdownSignal } from '../lifecycle.js';
import { resolvedParams, toKeywordString, type ConnInfo, type ResolvedConnInfo } from './conninfo.js';
import { APPLICATION_NAME } from './connect.js';
import { withSessionDefaults } from './session-defaults.js';
import { passfileLine } from './pgpass.js';
import { redact } from './redact.js';

export const PG_TOOLS = ['pg_dump', 'pg_restore', 'pg_dumpall', 'psql'] as const;
export type PgTool = (typeof PG_TOOLS)[number];

export interface ToolLocation {
  tool: PgTool;
  path: string;
  /** e.g. "15.18" */
  version: string;
  major: number;
}

function parseVersion(stdout: string): { version: string; major: number } | undefined {
  const m = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(stdout);
  if (!m) return undefined;
  return { version: m[2] ? `${m[1]}.${m[2]}` : m[1]!, major: Number(m[1]) };
}

function versionOf(file: string): { version: string; major: number } | undefined {
  const r = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 10_000, env: childEnv(undefined, undefined) });
  return r.status === 0 ? parseVersion(r.stdout ?? '') : undefined;
}

function versionOfAsync(file: string): Promise<{ version: string; major: number } | undefined> {
  return new Promise((resolve) => {
    execFile(file, ['--version'], { encoding: 'utf8', timeout: 10_000, env: childEnv(undefined, undefined) }, (err, stdout) => {
      resolve(err ? undefined : parseVersion(stdout ?? ''));
    });
  });
}

const bindirCache = new Map<string, string | null>();

/** `pg_config --bindir`, once per PATH (each run of it is a process start). */
function pgConfigBindir(): string | null {
  const key = process.env.PATH ?? '';
  if (!bindirCache.has(key)) {
    const cfg = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8', env: childEnv(undefined, undefined) });
    bindirCache.set(key, cfg.status === 0 && cfg.stdout.trim() ? cfg.stdout.trim() : null);
  }
  return bindirCache.get(key)!;
}

/** Where to look, in order; `pg_config --bindir` (a process start) only once PATH has no such file. */
function* candidates(tool: PgTool, pgBinDir?: string): Generator<string> {
  if (pgBinDir) {
    yield path.join(pgBinDir, tool);
    return;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir) yield path.join(dir, tool);
  const bindir = pgConfigBindir();
  if (bindir) yield path.join(bindir, tool);
}

/** Where Debian's pg_wrapper finds the programs of each major (`$PgCommon::binroot`). */
export const DEBIAN_BINROOT = '/usr/lib/postgresql';

/**
 * The program itself when `file` is Debian's pg_wrapper (/usr/bin/pg_dump and the rest are links to it):
 * the wrapper is a Perl script that picks /usr/lib/postgresql/<major>/bin/<tool> at every call, about 40 ms
 * of every run of a tool. Its choice depends on the environment, the local clusters and --host/--port/
 * --cluster arguments, never on the others; pgferry names the server in --dbname, so every call gets the
 * program that answered `--version`, and that program is run directly.
 */
export function unwrapDebian(file: string, tool: PgTool, major: number, binroot = DEBIAN_BINROOT): string {
  try {
    if (path.basename(realpathSync(file)) !== 'pg_wrapper') return file;
  } catch {
    return file;
  }
  const direct = path.join(binroot, String(major), 'bin', tool);
  return existsSync(direct) ? direct : file;
}

const cache = new Map<string, ToolLocation | undefined>();

// PATH is part of the key: what is found depends on it (tests and wrappers change it).
const cacheKey = (tool: PgTool, pgBinDir?: string) => `${tool}\0${pgBinDir ?? ''}\0${pgBinDir ? '' : (process.env.PATH ?? '')}`;

/** Locate a client tool; undefined when it is nowhere to be found. */
export function findTool(tool: PgTool, pgBinDir?: string): ToolLocation | undefined {
  const key = cacheKey(tool, pgBinDir);
  if (cache.has(key)) return cache.get(key);
  let found: ToolLocation | undefined;
  for (const file of candidates(tool, pgBinDir)) {
    if (!existsSync(file)) continue;
    const v = versionOf(file);
    if (v) {
      // Not realpath: Debian's /usr/bin/psql is a link to pg_wrapper, which picks the program by argv[0].
      found = { tool, path: unwrapDebian(file, tool, v.major), ...v };
      break;
    }
  }
  cache.set(key, found);
  return found;
}

/**
 * Locate several tools at once, their `--version` runs side by side and
 * alongside whatever the caller awaits meanwhile (connecting, say); findTool
 * then answers from the cache. A tool whose first candidate fails is left to
 * findTool's search.
 */
export async function prefetchTools(tools: readonly PgTool[], pgBinDir?: string): Promise<void> {
  await Promise.all(tools.map(async (tool) => {
    const key = cacheKey(tool, pgBinDir);
    if (cache.has(key)) return;
    let file: string | undefined;
    for (const f of candidates(tool, pgBinDir)) {
      if (!existsSync(f)) continue;
      file = f;
      break;
    }
    if (!file) return;
    const v = await versionOfAsync(file);
    if (v && !cache.has(key)) cache.set(key, { tool, path: unwrapDebian(file, tool, v.major), ...v });
  }));
  // The runner's module (runTool) is compiled now, while the caller waits on the network, not when the first tool starts.
  void import('execa').catch(() => {});
}

function installHint(major: number): string {
  return (
    `install the PostgreSQL ${major} client tools (Debian/Ubuntu: apt-get install postgresql-client-${major} from apt.postgresql.org; ` +
    `RHEL: postgresql${major}), then point pgferry at them with --pg-bin-dir /usr/lib/postgresql/${major}/bin`
  );
}

/** Find a tool or explain how to get it. */
export function requireTool(tool: PgTool, pgBinDir?: string): ToolLocation {
  const t = findTool(tool, pgBinDir);
  if (!t) {
    throw new UsageError(`${tool} not found${pgBinDir ? ` in ${pgBinDir}` : ' (looked in PATH and pg_config --bindir)'}`, {
      hint: `install the PostgreSQL client tools (apt-get install postgresql-client) or pass --pg-bin-dir`,
    });
  }
  return t;
}

/**
 * pg_dump and pg_dumpall refuse servers of a newer major than themselves;
 * say so before running them, with what to install.
 */
export function assertToolCanDump(t: ToolLocation, serverMajor: number, side = 'source'): void {
  if ((t.tool === 'pg_dump' || t.tool === 'pg_dumpall') && t.major < serverMajor) {
    throw new UsageError(
      `${t.tool} ${t.version} (${t.path}) cannot dump the ${side} server, which runs PostgreSQL ${serverMajor}`,
      { hint: installHint(serverMajor) },
    );
  }
}

const PASSDIR_PREFIX = 'pgferry-pgpass-';

/**
 * Remove password directories whose owning process is gone (killed with -9,
 * so no cleanup ran). The owner's pid is part of the directory name.
 */
export function reapStalePassfiles(tmp = os.tmpdir()): number {
  let removed = 0;
  let entries: string[] = [];
  try {
    entries = readdirSync(tmp).filter((e) => e.startsWith(PASSDIR_PREFIX));
  } catch {
    return 0;
  }
  for (const e of entries) {
    const m = /^pgferry-pgpass-(\d+)-/.exec(e);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    try {
      rmSync(path.join(tmp, e), { recursive: true, force: true });
      removed++;
    } catch {
      /* not ours to remove (another user): leave it */
    }
  }
  return removed;
}

let reaped = false;

/** A private password file for one child process. Call the returned dispose() when done. */
export function createTempPassfile(r: ResolvedConnInfo): { path: string; dir: string; dispose: () => void } {
  if (!reaped) {
    reaped = true;
    reapStalePassfiles();
  }
  // mkdtemp creates the directory with mode 0700; the file is created exclusively (wx) with 0600.
  const dir = mkdtempSync(path.join(os.tmpdir(), `${PASSDIR_PREFIX}${process.pid}-`));
  const file = path.join(dir, 'pgpass');
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const dispose = registerCleanup(remove);
  try {
    writeFileSync(file, r.password !== undefined ? passfileLine(r.user, r.password) : '', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    dispose();
    throw err;
  }
  return { path: file, dir, dispose };
}

export interface RunToolOptions {
  /** The server to connect to; passed as --dbname keyword string without password. */
  conn?: ResolvedConnInfo;
  /** Human label for errors, e.g. "pg_dump of source database shop". */
  label?: string;
  pgBinDir?: string;
  /** Feed stdin from a string or stream. */
  input?: string | Readable;
  /** Send stdout to a stream instead of collecting it. */
  stdout?: Writable;
  signal?: AbortSignal;
  /** Extra environment (no secrets). */
  env?: Record<string, string>;
  /** Settings for the tool's sessions, after SESSION_DEFAULTS and before the connection string's own options. */
  settings?: Readonly<Record<string, string>>;
  /** application_name of the tool's sessions (default: pgferry's). */
  applicationName?: string;
  /**
   * Major version of the server a pg_dump / pg_dumpall reads: refuse (exit 2, saying what to
   * install) when the tool is older, before running it.
   */
  serverMajor?: number;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/**
 * Environment for a child tool: inherited, minus anything that carries a password
 * (PGPASSWORD, pgferry's own connection variables, and any variable whose value
 * redact() would mask, such as DATABASE_URL=postgres://u:secret@…).
 */
function childEnv(extra: Record<string, string> | undefined, passfile: string | undefined): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, ...extra, PGAPPNAME: APPLICATION_NAME };
  delete env.PGPASSWORD;
  delete env.PGFERRY_SOURCE;
  delete env.PGFERRY_TARGET;
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && redact(v) !== v) delete env[k];
  }
  if (passfile) env.PGPASSFILE = passfile;
  return env;
}

/**
 * Arguments naming the connection: a libpq keyword string without password.
 * passfile is left out so that the private password file (PGPASSFILE) is the one used.
 */
function connArgs(r: ResolvedConnInfo, settings: Readonly<Record<string, string>> = {}, applicationName = APPLICATION_NAME): string[] {
  const params: ConnInfo = { ...resolvedParams(r), application_name: applicationName };
  // As our own sessions (connect.ts): SESSION_DEFAULTS, then the connection string's options (which hold PGOPTIONS when it
  // has none: libpq would not read PGOPTIONS beside them), then the caller's settings. pg_restore into a database whose
  // role or database defaults to read-only, pg_dumpall's queries under a statement_timeout.
  params.options = withSessionDefaults(params.options, settings);
  delete params.passfile;
  delete params.password;
  delete params.sslpassword;
  return ['--dbname', toKeywordString(params), '--no-password'];
}

/** The last `n` lines of a tool's stderr (pg_restore can print thousands). */
function lastLines(text: string, n: number): string {
  const lines = text.split('\n');
  if (lines.length <= n) return text;
  return [`(${lines.length - n} earlier lines left out)`, ...lines.slice(-n)].join('\n');
}

/**
 * Run a client tool. Resolves with its output; rejects with an OperationError
 * that includes the tool's stderr (redacted) when it fails.
 */
export async function runTool(tool: PgTool, args: string[], options: RunToolOptions = {}): Promise<ToolResult> {
  const t = requireTool(tool, options.pgBinDir);
  if (options.serverMajor !== undefined) assertToolCanDump(t, options.serverMajor);
  // Ctrl-C / SIGTERM stop the tool even when the caller passes a signal of its own.
  const signal = options.signal && options.signal !== shutdownSignal ? AbortSignal.any([options.signal, shutdownSignal]) : shutdownSignal;
  if (signal.aborted) throw new InterruptedError(`${options.label ?? tool} interrupted`);
  const pass = options.conn ? createTempPassfile(options.conn) : undefined;
  const fullArgs = options.conn ? [...args, ...connArgs(options.conn, options.settings, options.applicationName)] : args;
  try {
    const stdinOption =
      typeof options.input === 'string' ? { input: options.input } : options.input ? { stdin: options.input } : { stdin: 'ignore' as const };
    const execOptions: Options = {
      ...stdinOption,
      // HOME as resolved, so that libpq finds the same ~/.postgresql/root.crt as our own connections.
      env: childEnv({ ...(options.conn?.homeDir ? { HOME: options.conn.homeDir } : {}), ...options.env }, pass?.path),
      extendEnv: false,
      cancelSignal: signal,
      forceKillAfterDelay: 5000,
      reject: false,
      stripFinalNewline: false,
      stderr: 'pipe',
      buffer: { stdout: !options.stdout, stderr: true },
    };
    const { execa } = await import('execa'); // loaded when a tool runs: commands that run none start faster
    const child: ResultPromise = execa(t.path, fullArgs, execOptions);
    if (options.stdout) child.stdout?.pipe(options.stdout);
    const res = (await child) as unknown as {
      exitCode?: number;
      stdout?: string;
      stderr?: string;
      isCanceled?: boolean;
      signal?: string;
      failed?: boolean;
      message?: string;
      originalMessage?: string;
    };
    if (res.isCanceled || signal.aborted) throw new InterruptedError(`${options.label ?? tool} interrupted`);
    if (res.failed || res.exitCode !== 0) {
      const stderr = redact(lastLines(String(res.stderr ?? '').trim(), 60));
      const how = res.signal
        ? `was killed by ${res.signal}`
        : res.exitCode !== undefined
          ? `exited with code ${res.exitCode}`
          : `could not be run (${redact(res.originalMessage ?? res.message ?? 'unknown error')})`;
      throw new OperationError(`${options.label ?? tool} ${how}${stderr ? `:\n${stderr}` : ''}`);
    }
    return { stdout: String(res.stdout ?? ''), stderr: String(res.stderr ?? '') };
  } finally {
    pass?.dispose();
  }
}
