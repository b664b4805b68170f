#!/usr/bin/env node
/**
 * init benchmark (not a test). On two throwaway local clusters with identical
 * settings, the generated database (generate.mjs) is copied by each contender
 * into a fresh empty target database, N rounds, the order rotating each round:
 *
 *   pgferry    pgferry init --no-sync --jobs J --yes (the built CLI, a child process)
 *   pgdump     pg_dump -Fd -jJ -Z0, then pg_restore -jJ (the two times added)
 *   pgcopydb   pgcopydb clone --table-jobs J --index-jobs J (skipped when not installed)
 *
 * and prints median seconds and ratios against the goals, the CPU seconds of
 * the client processes, the source server and the target server, and the
 * peak resident memory of each contender's process tree (sampled from /proc).
 *
 * --rss-check runs pgferry alone: once at the given scale, then again after
 * the biggest table (public.orders) has grown --grow times (default 10).
 *
 *   scripts/bench/init-bench.sh --scale 0.02               # smoke run, about a minute
 *   scripts/bench/init-bench.sh                            # scale 1 (≈1.5 GB), 3 rounds
 *   scripts/bench/init-bench.sh --rss-check
 *   scripts/bench/init-bench.sh --data shapes --only pgferry,pgdump   # one database per data shape (shapes.mjs)
 *
 * Credentials: pg_dump, pg_restore and pgcopydb read the password from
 * PGPASSFILE (a 0600 file in a 0700 directory); pgferry from --source-file and
 * --target-file. No password is ever in argv. Logs of every run go to
 * scripts/bench/.work/init-<time>/ (ignored by git).
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, cpSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { BIGGEST, generate, grow } from './generate.mjs';
import { SHAPES, analysedShape, shapeSql } from './shapes.mjs';
import { throughRelay } from './latency-relay.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CONTENDERS = ['pgferry', 'pgdump', 'pgcopydb'];

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '2' },
    only: { type: 'string' },
    'rss-check': { type: 'boolean', default: false },
    data: { type: 'string', default: 'shared' },
    shape: { type: 'string', multiple: true },
    pin: { type: 'boolean', default: false },
    latency: { type: 'string', default: '0' },
    'skip-warmup': { type: 'boolean', default: false },
    'wait-quiet': { type: 'string', default: '120' },
    'pgferry-args': { type: 'string', default: '' },
    dist: { type: 'string' },
    grow: { type: 'string', default: '10' },
    'pg-bin-dir': { type: 'string' },
    'sample-ms': { type: 'string', default: '100' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help) {
  console.log(`usage: init-bench.sh [--scale S] [--rounds N] [--jobs J] [--only pgferry,pgdump,pgcopydb] [--pin] [--skip-warmup] [--data shared|shapes [--shape NAME…]]
       init-bench.sh --rss-check [--scale S] [--grow F]
         --pin: source server on CPU 0, target server on CPU 1, clients anywhere (a model of two separate servers)
         --latency MS: every contender reaches both servers through a relay that delays each direction by MS
                       whole milliseconds (latency-relay.mjs; a network between the client and the servers)
         --pgferry-args="FLAGS": extra flags for pgferry init (e.g. --pgferry-args="--split-tables-larger-than 256MB")
         --dist DIR: the build to measure (default: this repository's dist/), e.g. another branch's
         --wait-quiet S: before each run, wait up to S seconds (120; 0: never) until other processes use < 0.3 core
options: --pg-bin-dir DIR (PostgreSQL server and client programs; default: the system's)
         --sample-ms MS (memory/CPU sampling interval, 100) --out DIR (logs; default scripts/bench/.work/init-<time>)`);
  process.exit(0);
}

const scale = Number(args.scale);
const rounds = Number(args.rounds);
const jobs = Number(args.jobs);
const growFactor = Number(args.grow);
const sampleMs = Number(args['sample-ms']);
const waitQuiet = Number(args['wait-quiet']);
const latencyMs = Number(args.latency);
if (!(latencyMs === 0 || (Number.isInteger(latencyMs) && latencyMs >= 1))) {
  console.error('--latency must be 0 or a whole number of milliseconds');
  process.exit(2);
}
for (const [flag, v] of [['--scale', scale], ['--rounds', rounds], ['--jobs', jobs], ['--grow', growFactor], ['--sample-ms', sampleMs]]) {
  if (!(v > 0)) {
    console.error(`${flag} must be a positive number`);
    process.exit(2);
  }
}
let contenders = args.only ? args.only.split(',').map((s) => s.trim()) : CONTENDERS;
for (const c of contenders) {
  if (!CONTENDERS.includes(c)) {
    console.error(`--only: unknown contender "${c}" (choose from ${CONTENDERS.join(', ')})`);
    process.exit(2);
  }
}
if (args['rss-check']) contenders = ['pgferry'];

const DB = 'bench';
/** Same settings on both clusters, for every contender (on top of the throwaway-cluster defaults: fsync, full_page_writes and synchronous_commit off). */
const SETTINGS = {
  shared_buffers: "'512MB'",
  max_wal_size: "'8GB'",
  min_wal_size: "'4GB'",
  checkpoint_timeout: "'30min'",
  maintenance_work_mem: "'512MB'",
  max_connections: 100,
};

const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------- work space
const work = mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-init-'));
chmodSync(work, 0o700);
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const logDir = path.resolve(args.out ?? path.join(root, 'scripts/bench/.work', `init-${stamp}`));
mkdirSync(logDir, { recursive: true });

/**
 * A private copy of dist/: others may rebuild the working tree while a long
 * run is going on, and what is measured must not change under it.
 */
function freezeDist() {
  const dir = path.join(work, 'app');
  mkdirSync(dir);
  const from = path.resolve(args.dist ?? path.join(root, 'dist'));
  if (!existsSync(path.join(from, 'cli/main.js'))) throw new Error(`${from}/cli/main.js is missing: run npm run build (or use init-bench.sh)`);
  cpSync(from, path.join(dir, 'dist'), { recursive: true });
  cpSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  return path.join(dir, 'dist');
}
const dist = freezeDist();
const { startCluster } = await import(pathToFileURL(path.join(dist, 'local/cluster.js')).href);
const { findServerBinDir } = await import(pathToFileURL(path.join(dist, 'local/binaries.js')).href);

const pgBin = args['pg-bin-dir'] ?? findServerBinDir();
if (!pgBin || !existsSync(path.join(pgBin, 'pg_dump'))) {
  console.error(`pg_dump not found${pgBin ? ` in ${pgBin}` : ''}: pass --pg-bin-dir /usr/lib/postgresql/<major>/bin`);
  process.exit(2);
}
const pgcopydbPath = spawnSync('sh', ['-c', 'command -v pgcopydb'], { encoding: 'utf8' }).stdout.trim();
if (contenders.includes('pgcopydb') && !pgcopydbPath) {
  log('pgcopydb is not installed (apt-get install -y pgcopydb): that comparison is skipped');
  contenders = contenders.filter((c) => c !== 'pgcopydb');
}

// ---------------------------------------------------------------- /proc sampling
const PAGE = 4096;
const HZ = 100; // USER_HZ on Linux

/**
 * From /proc/PID/stat: CPU ticks of the process and of its reaped children,
 * resident bytes. With `pss`, also the proportional set size (shared pages
 * divided among the processes sharing them), which sums honestly over a tree
 * of forked workers; RSS counts every shared page once per process.
 */
function readStat(pid, pss = false) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const r = { ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]), rss: Number(f[21]) * PAGE, pss: 0 };
    if (pss) r.pss = Number(/^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0) * 1024;
    return r;
  } catch {
    return undefined; // exited meanwhile
  }
}

/** The process and all its live descendants (through /proc/PID/task/TID/children). */
function processTree(rootPid) {
  const out = [];
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop();
    out.push(pid);
    let tids = [];
    try {
      tids = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      try {
        for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (c) stack.push(Number(c));
      } catch {
        // gone
      }
    }
  }
  return out;
}

/**
 * CPU seconds of a tree so far: every live member's own time plus the time
 * of the children it has reaped (a reaped process is no longer in the tree,
 * so nothing is counted twice). RSS: the sum over live members.
 */
function treeUsage(rootPid, pss = false) {
  let ticks = 0;
  let rss = 0;
  let pssSum = 0;
  let rootRss = 0;
  for (const pid of processTree(rootPid)) {
    const s = readStat(pid, pss);
    if (!s) continue;
    ticks += s.ticks;
    rss += s.rss;
    pssSum += s.pss;
    if (pid === rootPid) rootRss = s.rss;
  }
  return { cpu: ticks / HZ, rss, pss: pssSum, rootRss };
}

/**
 * --pin: every process of the source cluster on CPU 0 and of the target on
 * CPU 1 (new backends inherit the postmaster's mask), the clients anywhere.
 */
function pinCluster(cluster, cpu) {
  for (const pid of processTree(postmasterPid(cluster))) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`taskset failed for ${cluster.name}: ${r.stderr || r.error}`);
  }
}

/** Busy, idle and I/O-wait CPU seconds of the whole machine so far (first line of /proc/stat; guest time is already in user). */
function systemCpu() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return { busy: (f.reduce((a, b) => a + b, 0) - f[3] - f[4]) / HZ, idle: (f[3] + f[4]) / HZ, iowait: f[4] / HZ };
}

/** Dirty page cache not yet written back, in MB. */
function dirtyMb() {
  const m = /^Dirty:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function postmasterPid(cluster) {
  return Number(readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
}

/** CPU seconds of this process's reaped children (the contenders, once they exit, with their own reaped children). */
function reapedChildrenCpu() {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / HZ;
}

// ---------------------------------------------------------------- clusters
const clusters = [];
let current; // the running child (its own process group), killed on interrupt
let cleaning;
let interrupted = false;
/** Kill the running contender, stop both clusters, remove the work folder; once, however often called. */
function cleanup() {
  cleaning ??= (async () => {
    if (current) {
      try {
        process.kill(-current.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const r of relays) r.kill();
    await Promise.allSettled(clusters.map((c) => c.stop()));
    rmSync(work, { recursive: true, force: true });
  })();
  return cleaning;
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping`);
    // The main flow then fails on the stopped clusters; the end of this file waits for this cleanup.
    void cleanup();
  });
}

async function client(cluster, db) {
  const c = new pg.Client({ host: cluster.host, port: cluster.port, user: 'postgres', password: cluster.password, database: db });
  c.on('error', () => {});
  await c.connect();
  return c;
}

const relays = [];

/**
 * --latency: how the contenders reach a cluster — through a relay of its own (latency-relay.mjs) — or the
 * cluster itself. Only host, port, password and url() are used by the contenders; CPU is still read from the cluster.
 */
async function reachable(cluster) {
  if (!latencyMs) return cluster;
  const r = await throughRelay(cluster, latencyMs);
  relays.push(r);
  return r;
}

/** Password file for the client tools; the password never appears in argv or the environment. */
function writePassfile(list) {
  const dir = mkdtempSync(path.join(work, 'pass-'));
  chmodSync(dir, 0o700);
  const file = path.join(dir, 'pgpass');
  const esc = (s) => String(s).replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  writeFileSync(file, list.map((c) => `${esc(c.host)}:${c.port}:*:postgres:${esc(c.password)}\n`).join(''), { mode: 0o600 });
  return file;
}

/** The environment of every child: no inherited libpq or pgferry variables, the chosen binaries first on PATH. */
function childEnv(extra) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(PG|PGFERRY_)/.test(k)));
  return { ...env, PATH: `${pgBin}${path.delimiter}${process.env.PATH ?? ''}`, PGSSLMODE: 'disable', LC_ALL: 'C.UTF-8', ...extra };
}

// ---------------------------------------------------------------- one timed step
/**
 * Run one program to its end, sampling CPU of both clusters and of the
 * program's process tree, and its memory. Stderr lines are kept with their
 * time since the start (pgferry's progress lines mark its phases).
 */
function runStep(label, cmd, argv, { env, logFile, src, tgt }) {
  return new Promise((resolve) => {
    const srcPm = postmasterPid(src);
    const tgtPm = postmasterPid(tgt);
    const reaped0 = reapedChildrenCpu();
    const sys0 = systemCpu();
    const s0 = treeUsage(srcPm).cpu;
    const t0cpu = treeUsage(tgtPm).cpu;
    const t0 = performance.now();
    const load = os.loadavg()[0];
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    current = child;
    const out = createWriteStream(logFile, { flags: 'a' });
    out.write(`\n### ${label}: ${[cmd, ...argv].join(' ')}\n`);
    let stdout = '';
    const lines = [];
    let partial = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      out.write(d);
    });
    child.stderr.on('data', (d) => {
      out.write(d);
      const at = (performance.now() - t0) / 1000;
      const text = partial + d.toString();
      const parts = text.split('\n');
      partial = parts.pop();
      for (const l of parts) lines.push({ at, line: l });
    });
    const samples = [];
    let peak = 0;
    let peakPss = 0;
    let peakRoot = 0;
    const sample = () => {
      if (!child.pid) return;
      const c = treeUsage(child.pid, true);
      peak = Math.max(peak, c.rss);
      peakPss = Math.max(peakPss, c.pss);
      peakRoot = Math.max(peakRoot, c.rootRss);
      const sys = systemCpu();
      samples.push({
        at: (performance.now() - t0) / 1000, client: c.cpu, source: treeUsage(srcPm).cpu - s0, target: treeUsage(tgtPm).cpu - t0cpu,
        busy: sys.busy - sys0.busy, idle: sys.idle - sys0.idle,
      });
    };
    const timer = setInterval(sample, sampleMs);
    child.on('close', (code, signal) => {
      clearInterval(timer);
      current = undefined;
      const seconds = (performance.now() - t0) / 1000;
      const cpu = {
        client: reapedChildrenCpu() - reaped0,
        source: treeUsage(srcPm).cpu - s0,
        target: treeUsage(tgtPm).cpu - t0cpu,
      };
      // Everything else the machine did meanwhile (other people's work, this script's sampling), and idle time.
      const sys = systemCpu();
      cpu.others = Math.max(0, sys.busy - sys0.busy - cpu.client - cpu.source - cpu.target);
      cpu.idle = sys.idle - sys0.idle;
      cpu.iowait = sys.iowait - sys0.iowait;
      if (partial) lines.push({ at: seconds, line: partial });
      out.end(`### ${label}: exit ${code ?? signal} after ${seconds.toFixed(2)} s\n`);
      resolve({ code: code ?? 1, seconds, cpu, peakRss: peak, peakPss, peakRootRss: peakRoot, stdout, lines, samples, load });
    });
    child.on('error', (err) => {
      lines.push({ at: 0, line: String(err) });
    });
  });
}

// ---------------------------------------------------------------- contenders
let runNo = 0;

async function runPgferry(ctx) {
  const dir = mkdtempSync(path.join(work, 'pgferry-'));
  chmodSync(dir, 0o700);
  const sf = path.join(dir, 'source.conn');
  const tf = path.join(dir, 'target.conn');
  writeFileSync(sf, ctx.srcConn.url(ctx.db), { mode: 0o600 });
  writeFileSync(tf, ctx.tgtConn.url(ctx.targetDb), { mode: 0o600 });
  const r = await runStep(
    'pgferry',
    process.execPath,
    [path.join(dist, 'cli/main.js'), 'init', '--no-sync', '--jobs', String(jobs), '--yes', '--json',
      '--source-file', sf, '--target-file', tf, '--state-dir', path.join(dir, 'state'), '--pg-bin-dir', pgBin,
      ...args['pgferry-args'].split(/\s+/).filter(Boolean)],
    { env: childEnv({}), logFile: ctx.logFile, src: ctx.src, tgt: ctx.tgt },
  );
  rmSync(dir, { recursive: true, force: true });
  let doc;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    doc = undefined;
  }
  return { ...r, ok: r.code === 0 && doc?.ok === true, phases: phaseTimes(r, ctx.db), reported: doc?.phases };
}

async function runPgdump(ctx) {
  const dir = mkdtempSync(path.join(work, 'dump-'));
  const env = childEnv({ PGPASSFILE: ctx.passfile });
  const conn = (c, db) => ['-h', c.host, '-p', String(c.port), '-U', 'postgres', '-d', db];
  const dump = await runStep('pg_dump', path.join(pgBin, 'pg_dump'), ['-Fd', `-j${jobs}`, '-Z0', '-f', path.join(dir, 'd'), ...conn(ctx.srcConn, ctx.db)], {
    env, logFile: ctx.logFile, src: ctx.src, tgt: ctx.tgt,
  });
  let restore;
  if (dump.code === 0) {
    restore = await runStep('pg_restore', path.join(pgBin, 'pg_restore'), [`-j${jobs}`, ...conn(ctx.tgtConn, ctx.targetDb), path.join(dir, 'd')], {
      env, logFile: ctx.logFile, src: ctx.src, tgt: ctx.tgt,
    });
  }
  rmSync(dir, { recursive: true, force: true });
  const steps = [dump, restore].filter(Boolean);
  return {
    ok: steps.length === 2 && steps.every((s) => s.code === 0),
    seconds: steps.reduce((n, s) => n + s.seconds, 0),
    cpu: sumCpu(steps.map((s) => s.cpu)),
    peakRss: Math.max(...steps.map((s) => s.peakRss)),
    peakPss: Math.max(...steps.map((s) => s.peakPss)),
    peakRootRss: Math.max(...steps.map((s) => s.peakRootRss)),
    load: dump.load,
    phases: { pg_dump: dump.seconds, pg_restore: restore?.seconds ?? NaN },
  };
}

async function runPgcopydb(ctx) {
  const dir = mkdtempSync(path.join(work, 'pgcopydb-'));
  const url = (c, db) => `postgresql://postgres@${c.host}:${c.port}/${db}?sslmode=disable`;
  const r = await runStep(
    'pgcopydb',
    pgcopydbPath,
    ['clone', '--source', url(ctx.srcConn, ctx.db), '--target', url(ctx.tgtConn, ctx.targetDb), '--table-jobs', String(jobs), '--index-jobs', String(jobs), '--dir', path.join(dir, 'w')],
    { env: childEnv({ PGPASSFILE: ctx.passfile, TMPDIR: dir, XDG_DATA_HOME: dir }), logFile: ctx.logFile, src: ctx.src, tgt: ctx.tgt },
  );
  rmSync(dir, { recursive: true, force: true });
  return { ...r, ok: r.code === 0, phases: pgcopydbSummary([...r.lines, ...r.stdout.split('\n').map((line) => ({ line }))]) };
}

const RUNNERS = { pgferry: runPgferry, pgdump: runPgdump, pgcopydb: runPgcopydb };

function sumCpu(list) {
  const keys = ['client', 'source', 'target', 'others', 'idle', 'iowait'];
  return list.reduce((a, c) => Object.fromEntries(keys.map((k) => [k, a[k] + c[k]])), Object.fromEntries(keys.map((k) => [k, 0])));
}

/**
 * pgferry's phases from its progress lines ("… bench: data" when a phase
 * starts), with the CPU each side used meanwhile (from the samples).
 */
const PHASES = ['roles', 'target database', 'snapshot', 'schema (pre-data)', 'data', 'large objects', 'indexes and constraints (post-data)', 'sequences', 'ANALYZE'];
function phaseTimes(r, db) {
  const marks = [];
  for (const { at, line } of r.lines) {
    const m = /^… (.*)$/.exec(line.trim());
    if (!m) continue;
    const title = m[1].replace(new RegExp(`^${db}: `), '');
    const phase = PHASES.find((p) => title === p || title.startsWith(`${p} `) || (p === 'roles' && /^roles\b/i.test(title)));
    if (phase && !marks.some((x) => x.phase === phase)) marks.push({ phase, at });
  }
  const at = (t) => {
    let best = { at: 0, client: 0, source: 0, target: 0, busy: 0, idle: 0 };
    for (const s of r.samples) if (s.at <= t) best = s;
    return best;
  };
  const out = {};
  const bounds = [{ phase: 'startup', at: 0 }, ...marks, { phase: 'end', at: r.seconds }];
  for (let i = 0; i < bounds.length - 1; i++) {
    const a = at(bounds[i].at);
    const b = i + 1 === bounds.length - 1 ? at(r.seconds) : at(bounds[i + 1].at);
    const cpu = { client: b.client - a.client, source: b.source - a.source, target: b.target - a.target };
    out[bounds[i].phase] = {
      seconds: bounds[i + 1].at - bounds[i].at,
      cpu: { ...cpu, others: Math.max(0, b.busy - a.busy - cpu.client - cpu.source - cpu.target), idle: b.idle - a.idle },
    };
  }
  return out;
}

/** The step table pgcopydb prints at the end ("Step  Connection  Duration  Concurrency"): step → duration as written. */
function pgcopydbSummary(lines) {
  const out = {};
  for (const { line } of lines) {
    const m = /^\s*(\S.*?)\s{2,}(?:source|target|both)\s+(\S+)\s+\S.*$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

// ---------------------------------------------------------------- checks
/** Tables, indexes, sequences, constraints and exact row counts of one database. */
async function inventory(cluster, db) {
  const c = await client(cluster, db);
  try {
    const user = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'";
    const rels = (await c.query(`SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind::text AS kind
                                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                  WHERE ${user} AND c.relkind IN ('r', 'p', 'i', 'S', 'v', 'm') ORDER BY 1`)).rows;
    const cons = (await c.query(`SELECT format('%s %s %s', c.conrelid::regclass, c.conname, c.contype) AS name
                                   FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE ${user} ORDER BY 1`)).rows;
    const seqs = (await c.query(`SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text AS v FROM pg_sequences ORDER BY 1`)).rows;
    const counts = {};
    for (const r of rels.filter((x) => x.kind === 'r')) counts[r.name] = Number((await c.query(`SELECT count(*) AS n FROM ${r.name}`)).rows[0].n);
    return {
      objects: rels.map((r) => `${r.kind} ${r.name}`),
      constraints: cons.map((r) => r.name),
      sequences: Object.fromEntries(seqs.map((r) => [r.name, r.v])),
      counts,
    };
  } finally {
    await c.end();
  }
}

function compareInventory(a, b) {
  const problems = [];
  const diffList = (what, x, y) => {
    const sy = new Set(y);
    const sx = new Set(x);
    for (const e of x) if (!sy.has(e)) problems.push(`${what} missing on target: ${e}`);
    for (const e of y) if (!sx.has(e)) problems.push(`${what} extra on target: ${e}`);
  };
  diffList('object', a.objects, b.objects);
  diffList('constraint', a.constraints, b.constraints);
  for (const [t, n] of Object.entries(a.counts)) if (b.counts[t] !== undefined && b.counts[t] !== n) problems.push(`${t}: ${n} rows on the source, ${b.counts[t]} on the target`);
  for (const [s, v] of Object.entries(a.sequences)) if (b.sequences[s] !== undefined && b.sequences[s] !== v) problems.push(`sequence ${s}: ${v} on the source, ${b.sequences[s]} on the target`);
  return problems;
}

// ---------------------------------------------------------------- main
function versions(src) {
  const first = (cmd, a) => spawnSync(cmd, a, { encoding: 'utf8' }).stdout?.split('\n').find((l) => l.trim()) ?? '?';
  const git = spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  return {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GB, Linux ${os.release()}`,
    node: process.version,
    postgres: src.version,
    pg_dump: first(path.join(pgBin, 'pg_dump'), ['--version']),
    pgcopydb: pgcopydbPath ? first(pgcopydbPath, ['--version']).replace(/^.*?(pgcopydb version)/, '$1') : 'not installed',
    pgferry: args.dist ? `build in ${args.dist}` : `${git}${spawnSync('git', ['-C', root, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8' }).stdout.trim() ? ' with uncommitted changes in src/' : ''}`,
  };
}

const mb = (b) => Math.round(b / 2 ** 20);
const f2 = (n) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');

/**
 * Wait (up to --wait-quiet seconds) until the machine's busy CPU over 2 s,
 * minus our clusters' own, is below 0.3 core: other people's work inflates
 * wall times unevenly. Returns the seconds waited.
 */
async function waitForQuiet(ctx) {
  const t0 = performance.now();
  const deadline = t0 + waitQuiet * 1000;
  for (;;) {
    const ours0 = treeUsage(postmasterPid(ctx.src)).cpu + treeUsage(postmasterPid(ctx.tgt)).cpu;
    const a = systemCpu();
    await new Promise((res) => setTimeout(res, 2000));
    const b = systemCpu();
    const ours = treeUsage(postmasterPid(ctx.src)).cpu + treeUsage(postmasterPid(ctx.tgt)).cpu - ours0;
    const others = (b.busy - a.busy - ours) / 2;
    if (others < 0.3 || performance.now() >= deadline) {
      const waited = (performance.now() - t0) / 1000;
      if (waited > 3) log(`waited ${waited.toFixed(0)} s for the machine to be quiet (others now use ${others.toFixed(2)} core)`);
      return waited;
    }
  }
}

async function oneRun(ctx, name, label) {
  runNo += 1;
  if (waitQuiet > 0) await waitForQuiet(ctx);
  const targetDb = `${ctx.db}_${name}_${runNo}`;
  await ctx.tgt.query(`CREATE DATABASE ${targetDb} TEMPLATE template0`);
  await Promise.all([ctx.src.query('CHECKPOINT'), ctx.tgt.query('CHECKPOINT')]);
  // Write back what earlier runs left dirty in the page cache (the previous target database, WAL,
  // pg_dump's archive), so that no contender starts throttled by the kernel's dirty-page limits.
  spawnSync('sync');
  const dirty = dirtyMb();
  const r = await RUNNERS[name]({ ...ctx, targetDb });
  const total = r.cpu.client + r.cpu.source + r.cpu.target;
  const util = total / (r.seconds * os.cpus().length);
  let problems = r.ok ? [] : [`${name} failed (see ${ctx.logFile})`];
  if (r.ok) problems = compareInventory(ctx.sourceInventory, await inventory(ctx.tgt, targetDb));
  await ctx.tgt.query(`DROP DATABASE ${targetDb} WITH (FORCE)`);
  log(
    `${label} ${name.padEnd(8)} ${f2(r.seconds).padStart(8)} s  cpu client ${f2(r.cpu.client)} source ${f2(r.cpu.source)} target ${f2(r.cpu.target)} ` +
      `others ${f2(r.cpu.others)} idle ${f2(r.cpu.idle)} (iowait ${f2(r.cpu.iowait)}) ` +
      `(${Math.round(util * 100)}% of ${os.cpus().length} cores)  peak RSS ${mb(r.peakRss)} MB (PSS ${mb(r.peakPss)} MB)  load ${r.load.toFixed(1)}  ` +
      `${problems.length ? `CHECK FAILED: ${problems.slice(0, 3).join('; ')}` : 'copy checked'}`,
  );
  const { lines: _l, samples, stdout: _o, ...kept } = r;
  // A one-second timeline of cumulative CPU seconds per side, for results.json.
  const timeline = [];
  for (const x of samples ?? []) if (!timeline.length || x.at - timeline.at(-1).at >= 1) timeline.push(Object.fromEntries(Object.entries(x).map(([k, v]) => [k, Math.round(v * 100) / 100])));
  return { name, ...kept, util, problems, timeline, dirtyMbAtStart: dirty };
}

/**
 * --data shapes: one source database per data shape (shapes.mjs), each copied by every contender
 * --rounds times, the order rotating; a table of medians and ratios per shape.
 */
async function shapesMain(src, tgt, info) {
  const picked = Object.keys(SHAPES).filter((name) => !args.shape?.length || args.shape.includes(name));
  if (!picked.length) throw new Error(`--shape must name one of ${Object.keys(SHAPES).join(', ')}`);
  const dbs = {};
  for (const name of picked) {
    const db = `bench_${name}`;
    const t0 = performance.now();
    await src.query(`CREATE DATABASE ${db}`);
    await src.query(shapeSql(name, scale), [], db);
    // Frozen and analyzed, so that no run pays for hint bits or gets different plans; a shape that stays
    // unanalysed ("many") is left as loaded (a VACUUM would set its reltuples), its hint bits set by the warm-up run.
    if (analysedShape(name)) await src.query('VACUUM (FREEZE, ANALYZE)', [], db);
    dbs[name] = { db, size: Number((await src.query(`SELECT pg_database_size('${db}') AS b`))[0].b) };
    log(`generated ${name}: ${mb(dbs[name].size)} MB in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (args.pin) {
    pinCluster(src, 0);
    pinCluster(tgt, 1);
    log('pinned: source cluster on CPU 0, target cluster on CPU 1');
  }
  const [srcConn, tgtConn] = await Promise.all([reachable(src), reachable(tgt)]);
  const passfile = writePassfile([srcConn, tgtConn]);
  const logFile = path.join(logDir, 'runs.log');
  const results = [];
  for (const name of picked) {
    const ctx = { src, tgt, srcConn, tgtConn, passfile, logFile, db: dbs[name].db, sourceInventory: await inventory(src, dbs[name].db) };
    if (!args['skip-warmup']) await oneRun(ctx, contenders.includes('pgdump') ? 'pgdump' : contenders[0], `${name} warm-up`);
    for (let round = 0; round < rounds; round++) {
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]);
      for (const c of order) results.push({ shape: name, round: round + 1, ...(await oneRun(ctx, c, `${name} ${round + 1}/${rounds}`)) });
    }
  }
  const of = (shape, c) => results.filter((r) => r.shape === shape && r.name === c);
  const cpu = (rs) => ['client', 'source', 'target'].map((k) => f2(median(rs.map((r) => r.cpu[k])))).join(' / ');
  const lines = [
    `\npgferry init by data shape — scale ${scale}, ${rounds} round${rounds > 1 ? 's' : ''}, jobs ${jobs}${args.pin ? ', source on CPU 0 and target on CPU 1 (--pin)' : ''}${latencyMs ? `, ${latencyMs} ms each way to both servers (--latency)` : ''}; ${info.date}`,
    `  ${info.machine}; PostgreSQL ${info.postgres}; ${info.pg_dump}; node ${info.node}; pgferry ${info.pgferry}`,
    `  load average at the start of each run: ${results.map((r) => r.load.toFixed(1)).join(' ')}`,
    '',
    '| shape | MB | pgferry s (CPU client / source / target) | pg_dump + pg_restore s (CPU client / source / target) | pgferry / pg_dump+restore (per-round median) | without pgferry\'s ANALYZE | target CPU ratio |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const shape of picked) {
    const p = of(shape, 'pgferry');
    const d = of(shape, 'pgdump');
    const failed = [...p, ...d].some((r) => r.problems.length) ? ' CHECK FAILED' : '';
    const ratio = median(p.map((r) => r.seconds)) / median(d.map((r) => r.seconds));
    const paired = median(p.map((x) => x.seconds / (d.find((o) => o.round === x.round)?.seconds ?? NaN)));
    const tcpu = median(p.map((r) => r.cpu.target)) / median(d.map((r) => r.cpu.target));
    // pg_restore leaves statistics to autovacuum; pgferry's last phase computes them.
    const noAnalyze = median(p.map((r) => r.seconds - (r.phases?.ANALYZE?.seconds ?? 0))) / median(d.map((r) => r.seconds));
    lines.push(`| ${shape} | ${mb(dbs[shape].size)} | ${f2(median(p.map((r) => r.seconds)))} (${cpu(p)}) | ${f2(median(d.map((r) => r.seconds)))} (${cpu(d)}) | ${f2(ratio)}× (${f2(paired)}×)${failed} | ${f2(noAnalyze)}× | ${f2(tcpu)}× |`);
  }
  console.log(lines.join('\n'));
  writeFileSync(path.join(logDir, 'results.json'), JSON.stringify({ mode: 'shapes', scale, rounds, jobs, pin: args.pin, settings: SETTINGS, info, shapes: dbs, results }, null, 2));
  writeFileSync(path.join(logDir, 'summary.txt'), lines.join('\n') + '\n');
}

async function main() {
  log(`work dir ${work}; logs in ${logDir}`);
  const [src, tgt] = await Promise.all([
    startCluster({ name: 'bench-src', binDir: pgBin, settings: SETTINGS }),
    startCluster({ name: 'bench-tgt', binDir: pgBin, settings: SETTINGS }),
  ]);
  clusters.push(src, tgt);
  const info = versions(src);
  log(`PostgreSQL ${src.version} (source :${src.port}, target :${tgt.port}); generating scale ${scale}`);
  if (args.data === 'shapes') return shapesMain(src, tgt, info);
  if (args.data !== 'shared') throw new Error(`--data must be shared or shapes (got ${args.data})`);
  await src.query(`CREATE DATABASE ${DB}`);
  const t0 = performance.now();
  const connect = () => client(src, DB);
  const rows = await generate(connect, scale, { log: (m) => log(`generate: ${m}`) });
  const size = Number((await src.query(`SELECT pg_database_size('${DB}') AS b`))[0].b);
  log(`generated ${mb(size)} MB in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const [srcConn, tgtConn] = await Promise.all([reachable(src), reachable(tgt)]);
  const passfile = writePassfile([srcConn, tgtConn]);
  const logFile = path.join(logDir, 'runs.log');
  const ctx = { src, tgt, srcConn, tgtConn, passfile, logFile, db: DB, sourceInventory: await inventory(src, DB) };
  const results = [];
  if (args.pin) {
    if (os.cpus().length < 2) throw new Error('--pin needs at least 2 CPUs');
    pinCluster(src, 0);
    pinCluster(tgt, 1);
    log('pinned: source cluster on CPU 0, target cluster on CPU 1');
  }

  if (args['rss-check']) {
    // Peaks of identical runs differ by ±10 % (when the collector runs, which child is alive at the
    // peak), so each size is run --rounds times and the medians are compared.
    for (let i = 0; i < rounds; i++) results.push({ factor: 1, sizeMb: mb(size), ...(await oneRun(ctx, 'pgferry', `×1  ${i + 1}/${rounds}`)) });
    log(`growing ${BIGGEST} ${growFactor}×`);
    await grow(connect, scale, growFactor);
    const grownSize = Number((await src.query(`SELECT pg_database_size('${DB}') AS b`))[0].b);
    const biggest = Number((await src.query(`SELECT pg_total_relation_size('${BIGGEST}') AS b`, [], DB))[0].b);
    log(`source now ${mb(grownSize)} MB (${BIGGEST} ${mb(biggest)} MB)`);
    ctx.sourceInventory = await inventory(src, DB);
    for (let i = 0; i < rounds; i++) results.push({ factor: growFactor, sizeMb: mb(grownSize), ...(await oneRun(ctx, 'pgferry', `×${growFactor} ${i + 1}/${rounds}`)) });
    const sizes = [1, growFactor].map((factor) => {
      const rs = results.filter((r) => r.factor === factor);
      return {
        factor, sizeMb: rs[0].sizeMb, runs: rs, seconds: median(rs.map((r) => r.seconds)),
        rss: median(rs.map((r) => r.peakRss)), maxRss: Math.max(...rs.map((r) => r.peakRss)),
        pss: median(rs.map((r) => r.peakPss)), node: median(rs.map((r) => r.peakRootRss)), failed: rs.some((r) => r.problems.length),
      };
    });
    const [a, b] = sizes;
    const summary = [
      `\npgferry init memory — scale ${scale}, ${BIGGEST} grown ${growFactor}× for the second size; ${rounds} run${rounds > 1 ? 's' : ''} each; jobs ${jobs}; ${info.date}`,
      `  ${info.machine}; PostgreSQL ${info.postgres}; node ${info.node}; pgferry ${info.pgferry}`,
      '  size   database  median s   peak RSS of the tree: median (max) [runs]       PSS median   node alone median',
      ...sizes.map((z) => `  ${`×${z.factor}`.padEnd(5)} ${`${z.sizeMb} MB`.padStart(9)} ${f2(z.seconds).padStart(9)}   ` +
        `${`${mb(z.rss)} MB (${mb(z.maxRss)} MB) [${z.runs.map((r) => mb(r.peakRss)).join(' ')}]`.padEnd(44)} ${`${mb(z.pss)} MB`.padStart(10)}   ` +
        `${mb(z.node)} MB${z.failed ? '  CHECK FAILED' : ''}`),
      `  goal < 300 MB (every run): ${Math.max(a.maxRss, b.maxRss) < 300 * 2 ** 20 ? 'meets' : 'misses'}; ` +
        `no larger after growing (medians within 10 %): ${b.rss <= a.rss * 1.1 ? 'meets' : 'misses'} (${f2(b.rss / a.rss)}×; node alone ${f2(b.node / a.node)}×)`,
    ];
    console.log(summary.join('\n'));
    writeFileSync(path.join(logDir, 'results.json'), JSON.stringify({ mode: 'rss-check', scale, growFactor, rounds, jobs, info, rows, results }, null, 2));
    writeFileSync(path.join(logDir, 'summary.txt'), summary.join('\n') + '\n');
    return;
  }

  if (!args['skip-warmup']) {
    // One untimed copy first: it fills the source's page cache and makes the target create its
    // WAL segments (later runs recycle them), costs that would otherwise fall on round 1's first contender.
    const name = contenders.includes('pgdump') ? 'pgdump' : contenders[0];
    await oneRun(ctx, name, 'warm-up  ');
  }
  for (let round = 0; round < rounds; round++) {
    const order = contenders.map((_, i) => contenders[(i + round) % contenders.length]);
    for (const name of order) results.push({ round: round + 1, ...(await oneRun(ctx, name, `round ${round + 1}/${rounds}`)) });
  }

  const by = (name) => results.filter((r) => r.name === name);
  const med = (name, fn) => median(by(name).map(fn));
  const lines = [
    `\npgferry init benchmark — scale ${scale} (${mb(size)} MB), ${rounds} round${rounds > 1 ? 's' : ''}, jobs ${jobs}${args.pin ? ', source on CPU 0 and target on CPU 1 (--pin)' : ''}${latencyMs ? `, ${latencyMs} ms each way to both servers (--latency)` : ''}; ${info.date}`,
    `  ${info.machine}; PostgreSQL ${info.postgres}; ${info.pg_dump}; ${info.pgcopydb}; node ${info.node}; pgferry ${info.pgferry}`,
    `  load average at the start of each run: ${results.map((r) => r.load.toFixed(1)).join(' ')}`,
    '',
    `  ${'contender'.padEnd(10)} ${'median s'.padStart(9)}  ${'runs'.padEnd(24)} ${'cpu s: client / source / target (others, idle)'.padEnd(49)} ours  peak RSS (PSS)`,
  ];
  for (const name of contenders) {
    const rs = by(name);
    lines.push(
      `  ${name.padEnd(10)} ${f2(med(name, (r) => r.seconds)).padStart(9)}  ${rs.map((r) => f2(r.seconds)).join(' ').padEnd(24)} ` +
        `${f2(med(name, (r) => r.cpu.client))} / ${f2(med(name, (r) => r.cpu.source))} / ${f2(med(name, (r) => r.cpu.target))} (${f2(med(name, (r) => r.cpu.others))}, ${f2(med(name, (r) => r.cpu.idle))})`.padEnd(49) +
        ` ${`${Math.round(med(name, (r) => r.util) * 100)}%`.padStart(4)}  ` +
        `${mb(Math.max(...rs.map((r) => r.peakRss)))} MB (${mb(Math.max(...rs.map((r) => r.peakPss)))} MB)${rs.some((r) => r.problems.length) ? '   CHECK FAILED' : ''}`,
    );
  }
  lines.push('');
  const ratio = (other, goal) => {
    if (!contenders.includes('pgferry') || !contenders.includes(other)) return;
    const r = med('pgferry', (x) => x.seconds) / med(other, (x) => x.seconds);
    const paired = median(by('pgferry').map((p) => p.seconds / (by(other).find((o) => o.round === p.round)?.seconds ?? NaN)));
    lines.push(`  pgferry / ${other.padEnd(9)} ${f2(r)}×  (median of per-round ratios ${f2(paired)}×)   goal ≤ ${goal}×   ${r <= goal ? 'meets' : 'misses'}`);
  };
  // The goals of pgferry against pg_dump + pg_restore: on two servers (the pinned model) and on shared cores.
  ratio('pgdump', args.pin ? 0.6 : 0.85);
  ratio('pgcopydb', 0.85);
  if (contenders.includes('pgferry') && contenders.includes('pgdump')) {
    // pg_restore leaves statistics to autovacuum; pgferry's last phase computes them. Shown apart, not used for the goal.
    const noAnalyze = med('pgferry', (r) => r.seconds - (r.phases?.ANALYZE?.seconds ?? 0)) / med('pgdump', (r) => r.seconds);
    lines.push(`  (pgferry without its ANALYZE phase, which pg_restore does not do: ${f2(noAnalyze)}× pg_dump + pg_restore)`);
  }
  if (!pgcopydbPath) lines.push('  pgcopydb: not installed, comparison skipped');
  if (contenders.includes('pgferry')) {
    const peak = Math.max(...by('pgferry').map((r) => r.peakRss));
    lines.push(`  pgferry peak RSS ${mb(peak)} MB (node alone ${mb(Math.max(...by('pgferry').map((r) => r.peakRootRss)))} MB)   goal < 300 MB   ${peak < 300 * 2 ** 20 ? 'meets' : 'misses'}`);
    lines.push('', '  pgferry phases (median s; cpu s client / source / target (others, idle)):');
    for (const p of ['startup', ...PHASES]) {
      const xs = by('pgferry').map((r) => r.phases?.[p]).filter(Boolean);
      if (!xs.length) continue;
      const m = (k) => f2(median(xs.map((x) => x.cpu[k])));
      lines.push(`    ${p.padEnd(38)} ${f2(median(xs.map((x) => x.seconds))).padStart(7)}   ${m('client')} / ${m('source')} / ${m('target')} (${m('others')}, ${m('idle')})`);
    }
  }
  if (contenders.includes('pgdump')) lines.push(`  pg_dump ${f2(med('pgdump', (r) => r.phases.pg_dump))} s + pg_restore ${f2(med('pgdump', (r) => r.phases.pg_restore))} s (medians)`);
  if (contenders.includes('pgcopydb')) {
    const last = by('pgcopydb').at(-1)?.phases ?? {};
    if (Object.keys(last).length) lines.push(`  pgcopydb steps (last run): ${Object.entries(last).map(([k, v]) => `${k} ${v}`).join(' · ')}`);
  }
  console.log(lines.join('\n'));
  writeFileSync(path.join(logDir, 'results.json'), JSON.stringify({ mode: 'compare', scale, rounds, jobs, pin: args.pin, settings: SETTINGS, info, sizeMb: mb(size), rows, results }, null, 2));
  writeFileSync(path.join(logDir, 'summary.txt'), lines.join('\n') + '\n');
}

let failure;
try {
  await main();
} catch (err) {
  failure = err;
} finally {
  await cleanup();
}
if (interrupted) process.exit(130);
if (failure) throw failure;
