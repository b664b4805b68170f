/**
 * `pgferry demo`: a whole live migration on two throwaway local clusters.
 * It starts the clusters, loads the sample shop, keeps an application
 * writing to the source, and runs the real commands — each as its own
 * `pgferry …` process with its normal output — validate → init → sync →
 * status → (writes stop) → sequences → verify → cleanup. Connection strings
 * live in 0600 files passed with --source-file / --target-file, so no
 * password reaches a command line.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { cliEntryPath } from '../entry-path.js';
import type { Output } from '../render/output.js';
import { InterruptedError, UsageError } from '../../errors.js';
import { withClient } from '../../postgres/connect.js';
import { findServerBinDir } from '../../local/binaries.js';
import { startCluster, stopDetachedCluster, type LocalCluster } from '../../local/cluster.js';
import { DEFAULT_SAMPLE, sampleSchemaSql, WATCHED_TABLES, type SampleSize } from './sample.js';
import { startDemoWriter, type DemoWriter } from './writer.js';

export interface DemoOptions {
  out: Output;
  signal: AbortSignal;
  /** Folder for the demo's connection files and state (default ./.pgferry-demo). */
  workDir: string;
  /** Leave both clusters running and print how to use them. */
  keep: boolean;
  /** Server and client binaries (default: the system's PostgreSQL). */
  pgBinDir?: string;
  /** Seconds to watch rows arrive while the writer runs. */
  watchSeconds: number;
  sample?: SampleSize;
}

const DB = 'shop';


function fmt(n: number): string {
  return n.toLocaleString('en-US');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new InterruptedError());
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new InterruptedError());
      },
      { once: true },
    );
  });
}

interface DemoFiles {
  sourceFile: string;
  targetFile: string;
  stateDir: string;
  clustersFile: string;
}

function demoFiles(workDir: string): DemoFiles {
  return {
    sourceFile: path.join(workDir, 'source.conn'),
    targetFile: path.join(workDir, 'target.conn'),
    stateDir: path.join(workDir, 'state'),
    clustersFile: path.join(workDir, 'clusters.json'),
  };
}

/** `pgferry demo --stop`: stop clusters an earlier `demo --keep` left running. */
export function stopKeptDemo(workDir: string, out: Output): number {
  const files = demoFiles(workDir);
  if (!existsSync(files.clustersFile)) {
    out.print(`nothing to stop: no kept demo in ${workDir}`);
    return 0;
  }
  const roots = JSON.parse(readFileSync(files.clustersFile, 'utf8')) as string[];
  for (const root of roots) stopDetachedCluster(root);
  rmSync(workDir, { recursive: true, force: true });
  out.print(`stopped ${roots.length} demo clusters and removed ${workDir}`);
  return 0;
}

/** What the demo's steps share: options, files, the command runners, and what to tear down at the end. */
interface DemoRun {
  o: DemoOptions;
  files: DemoFiles;
  step(text: string): void;
  /** Run `pgferry …` as a child process on the demo's files; returns its exit code. */
  pgferry(args: string[], opts?: { quiet?: boolean }): Promise<number>;
  /** Run `pgferry …`; a non-zero exit ends the demo with that code. */
  must(args: string[]): Promise<void>;
  clusters: LocalCluster[];
  writer: DemoWriter | undefined;
  keepClusters: boolean;
}

export async function runDemo(o: DemoOptions): Promise<number> {
  const { out } = o;
  const { binDir, files } = demoPrerequisites(o);
  const t0 = Date.now();
  const step = (text: string) => out.print(`\n${out.style('bold', `▶ ${text}`)}`);
  const run: DemoRun = { o, files, step, ...demoCommands(o, files), clusters: [], writer: undefined, keepClusters: false };
  const { pgferry, must } = run;

  try {
    out.print(out.style('bold', 'pgferry demo — a live migration between two throwaway PostgreSQL clusters'));
    const [source, target] = await startDemoClusters(run, binDir);
    await loadSample(run, source);

    step('Starting the application: it writes to the source for the rest of the demo');
    const writer = (run.writer = await startDemoWriter(source.conn(DB)));
    out.print('  new orders with items, status changes, cancellations (deletes), events, price changes, audit rows');

    step('1. validate — find every problem before anything is written');
    await must(['validate']);

    step('2. init — schema and data from one consistent snapshot, in parallel');
    await must(['init', '--jobs', '2']);

    step('3. sync — logical replication from exactly where the snapshot ended');
    await must(['sync']);

    await watchRows(run, source, target, writer);

    step('4. status — lag and health on one screen');
    await pgferry(['status']);

    await stopWritesAndCatchUp(run, writer);

    step('5. sequences — logical replication does not carry them: set them at cutover');
    await must(['sequences']);

    step('6. verify — checksums per table and chunk; its exit code gates the switch');
    const verifyCode = await pgferry(['verify']);

    if (o.keep) {
      keepDemoClusters(run, source, target);
    } else {
      step('7. cleanup — drop the subscription, publication and slot pgferry created');
      await pgferry(['cleanup']);
    }

    out.print('');
    if (verifyCode === 0) {
      out.print(`${out.symbol('ok')} demo finished in ${Math.round((Date.now() - t0) / 1000)} s: verify passed, the target equals the source.`);
    } else {
      out.print(`${out.symbol('fail')} demo finished: verify exited with ${verifyCode}.`);
    }
    return verifyCode;
  } catch (err) {
    const code = (err as { demoExit?: number }).demoExit;
    if (code !== undefined) return code;
    throw err;
  } finally {
    if (run.writer) await run.writer.stop().catch(() => {});
    if (!run.keepClusters) {
      await Promise.allSettled(run.clusters.map((c) => c.stop()));
      rmSync(o.workDir, { recursive: true, force: true });
    }
  }
}

/** The server binaries, and the demo's files; refuses to start over a kept demo. */
function demoPrerequisites(o: DemoOptions): { binDir: string; files: DemoFiles } {
  const binDir = findServerBinDir(o.pgBinDir);
  if (!binDir) {
    throw new UsageError(`PostgreSQL server binaries not found${o.pgBinDir ? ` in ${o.pgBinDir}` : ''}`, {
      hint: 'install PostgreSQL (Debian/Ubuntu: apt-get install postgresql) or pass --pg-bin-dir /usr/lib/postgresql/<major>/bin',
    });
  }
  const files = demoFiles(o.workDir);
  if (existsSync(files.clustersFile)) {
    throw new UsageError(`a kept demo is still running (${o.workDir})`, { hint: 'stop it first: pgferry demo --stop' });
  }
  return { binDir, files };
}

/** The real commands, as child processes that read the connection strings from the demo's 0600 files. */
function demoCommands(o: DemoOptions, files: DemoFiles): Pick<DemoRun, 'pgferry' | 'must'> {
  const { out, signal } = o;
  const pgferry = async (args: string[], opts: { quiet?: boolean } = {}): Promise<number> => {
    const full = [...args, '--source-file', files.sourceFile, '--target-file', files.targetFile, '--state-dir', files.stateDir, '--yes'];
    if (o.pgBinDir) full.push('--pg-bin-dir', o.pgBinDir);
    if (!opts.quiet) out.print(out.style('cyan', `$ pgferry ${args.join(' ')}`));
    const env = { ...process.env };
    delete env.PGFERRY_SOURCE;
    delete env.PGFERRY_TARGET;
    const r = await execa(process.execPath, [cliEntryPath(), ...full], {
      env,
      stdin: 'ignore',
      stdout: opts.quiet ? 'ignore' : 'inherit',
      stderr: opts.quiet ? 'ignore' : 'inherit',
      reject: false,
      cancelSignal: signal,
    });
    if (signal.aborted) throw new InterruptedError();
    return r.exitCode ?? 4;
  };
  const must = async (args: string[]) => {
    const code = await pgferry(args);
    if (code !== 0) {
      out.print(out.style('red', `pgferry ${args[0]} exited with code ${code}; the demo stops here.`));
      throw Object.assign(new Error(`pgferry ${args[0]} failed`), { demoExit: code });
    }
  };
  return { pgferry, must };
}

/** Start both clusters (registered for teardown) and write their connection strings to the 0600 files. */
async function startDemoClusters(run: DemoRun, binDir: string): Promise<[LocalCluster, LocalCluster]> {
  const { o, files, step, clusters } = run;
  const { out } = o;
  step('Starting a source and a target cluster');
  const [source, target] = await Promise.all([
    startCluster({ binDir, name: 'demo-source' }),
    startCluster({ binDir, name: 'demo-target' }),
  ]);
  clusters.push(source, target);
  out.print(`  source: PostgreSQL ${source.version} on 127.0.0.1:${source.port}`);
  out.print(`  target: PostgreSQL ${target.version} on 127.0.0.1:${target.port}`);
  mkdirSync(o.workDir, { recursive: true, mode: 0o700 });
  writeFileSync(files.sourceFile, `${source.url(DB)}\n`, { mode: 0o600 });
  writeFileSync(files.targetFile, `${target.url(DB)}\n`, { mode: 0o600 });
  return [source, target];
}

async function loadSample(run: DemoRun, source: LocalCluster): Promise<void> {
  const { o, step } = run;
  const { out } = o;
  step('Loading the sample shop into the source');
  const sample = o.sample ?? DEFAULT_SAMPLE;
  await source.query(`CREATE DATABASE ${DB}`);
  await source.query(sampleSchemaSql(sample), undefined, DB);
  out.print(
    `  customers ${fmt(sample.customers)} · products ${fmt(sample.products)} · orders ${fmt(sample.orders)} · ` +
      `order_items ${fmt(sample.orders * 3)} · events ${fmt(sample.events)} · audit_log 500 (no key, REPLICA IDENTITY FULL)`,
  );
}

/** Print the row counts of both sides once a second for --watch-seconds. */
async function watchRows(run: DemoRun, source: LocalCluster, target: LocalCluster, writer: DemoWriter): Promise<void> {
  const { o, step } = run;
  const { out, signal } = o;
  step(`Watching rows written on the source arrive on the target (${o.watchSeconds} s)`);
  const counts = async (c: LocalCluster) =>
    withClient(c.conn(DB), async (cl) => {
      const q = WATCHED_TABLES.map((t) => `(SELECT count(*) FROM ${t})::int AS ${t}`).join(', ');
      const { rows } = await cl.query<Record<string, number>>(`SELECT ${q}`);
      return rows[0]!;
    });
  for (let s = 0; s < o.watchSeconds; s++) {
    await sleep(1000, signal);
    const [a, b] = await Promise.all([counts(source), counts(target)]);
    out.print(
      `  ${WATCHED_TABLES.map((t) => `${t} ${fmt(a[t]!)}→${fmt(b[t]!)}`).join(' · ')}   (${fmt(writer.commits)} transactions so far)`,
    );
  }
}

/** Stop the writer, then wait (up to two minutes) until status reports no lag. */
async function stopWritesAndCatchUp(run: DemoRun, writer: DemoWriter): Promise<void> {
  const { o, step, pgferry } = run;
  const { out, signal } = o;
  step('Cutover: the application stops writing; wait until the target has everything');
  const commits = await writer.stop();
  run.writer = undefined;
  out.print(`  the writer committed ${fmt(commits)} transactions while pgferry was working`);
  const deadline = Date.now() + 120_000;
  while ((await pgferry(['status', '--max-lag', '0B'], { quiet: true })) !== 0) {
    if (Date.now() > deadline) break;
    await sleep(500, signal);
  }
  await pgferry(['status']);
}

/** --keep: detach both clusters, record them for `demo --stop`, and print how to use them. */
function keepDemoClusters(run: DemoRun, source: LocalCluster, target: LocalCluster): void {
  const { o, files, step, clusters } = run;
  const { out } = o;
  step('Keeping both clusters (--keep)');
  for (const c of clusters) c.detach();
  run.keepClusters = true;
  writeFileSync(files.clustersFile, JSON.stringify(clusters.map((c) => c.rootDir)));
  out.print(`  connection strings (with their passwords) are in ${files.sourceFile} and ${files.targetFile} (mode 0600)`);
  out.print('  try next:');
  const common = `--source-file ${files.sourceFile} --target-file ${files.targetFile} --state-dir ${files.stateDir}`;
  out.print(`    pgferry status ${common}`);
  out.print(`    pgferry verify ${common}`);
  out.print(`    pgferry list ${common}`);
  out.print(`    psql -h ${source.socketDir} -p ${source.port} -U postgres ${DB}     # the source (local socket, no password)`);
  out.print(`    psql -h ${target.socketDir} -p ${target.port} -U postgres ${DB}     # the target`);
  out.print(`    pgferry cleanup ${common} --yes && pgferry demo --stop`);
}
