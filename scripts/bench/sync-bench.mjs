#!/usr/bin/env node
/**
 * Benchmark of `pgferry sync` (not a test; run it when the machine is quiet):
 *
 *   1. two throwaway clusters; pgbench -i on the source; pgferry init + sync through the built CLI
 *   2. pgbench at a fixed rate (-R) on the source; `pgferry status --json` sampled every second:
 *      steady-state lag p50 / p99 in seconds (and bytes), as status reports it
 *   3. the subscription disabled for PAUSE seconds under the same load, then enabled:
 *      catch-up rate = row changes applied per second until the target has confirmed
 *      the source's position at the moment it was enabled
 *
 * Usage: npm run build && node scripts/bench/sync-bench.mjs
 * Environment: RATE (500 tx/s), SCALE (10), STEADY_SECONDS (180), PAUSE_SECONDS (120), PG_BIN (system 15).
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startCluster } = await import(path.join(root, 'dist/local/cluster.js'));
const { objectNames } = await import(path.join(root, 'dist/state/object-names.js'));

const RATE = Number(process.env.RATE ?? 500);
const SCALE = Number(process.env.SCALE ?? 10);
const STEADY = Number(process.env.STEADY_SECONDS ?? 180);
const PAUSE = Number(process.env.PAUSE_SECONDS ?? 120);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const DB = 'bench';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};
const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

const dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-sync-'));
const [src, tgt] = await Promise.all([startCluster({ name: 'bench-src' }), startCluster({ name: 'bench-tgt' })]);
let load;
try {
  await src.query(`CREATE DATABASE ${DB}`);
  const pgEnv = { ...process.env, PGPASSWORD: src.password };
  const pgArgs = ['-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres'];
  log(`pgbench -i -s ${SCALE}`);
  await execa(path.join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(SCALE), ...pgArgs, DB], { env: pgEnv });
  // pgbench_history has no key: UPDATE/DELETE would fail once it is published.
  await src.query('ALTER TABLE pgbench_history REPLICA IDENTITY FULL', [], DB);

  const sysid = async (c) => (await c.query('SELECT system_identifier::text AS id FROM pg_control_system()'))[0].id;
  const names = objectNames({ sourceSystemIdentifier: await sysid(src), sourceDatabase: DB, targetSystemIdentifier: await sysid(tgt), targetDatabase: DB });
  const cli = (...args) =>
    execa(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--source', src.url(DB), '--target', tgt.url(DB), '--state-dir', dir], { reject: false });
  log('pgferry init');
  let r = await cli('init', '--yes', '--no-roles');
  if (r.exitCode !== 0) throw new Error(`init failed: ${r.stderr}`);
  log('pgferry sync');
  r = await cli('sync', '--wait-timeout', '300');
  if (r.exitCode !== 0) throw new Error(`sync failed: ${r.stderr}`);

  const total = STEADY + PAUSE + 600;
  log(`pgbench -R ${RATE} for up to ${total} s`);
  load = execa(path.join(PG_BIN, 'pgbench'), ['-n', '-R', String(RATE), '-T', String(total), '-c', '4', '-j', '2', ...pgArgs, DB], { env: pgEnv, reject: false });

  const sample = async () => JSON.parse((await cli('status', '--json', '--max-lag', '1GB')).stdout);
  log(`sampling status --json every second for ${STEADY} s`);
  const secs = [];
  const bytes = [];
  const took = [];
  const wall = [];
  await sleep(5000);
  const steadyEnd = Date.now() + STEADY * 1000;
  while (Date.now() < steadyEnd) {
    const t0 = Date.now();
    const s = await sample();
    wall.push((Date.now() - t0) / 1000);
    took.push(s.seconds);
    if (!s.databases) throw new Error(`status failed: ${JSON.stringify(s.error ?? s)}`);
    const d = s.databases[0];
    if (d.lag.seconds !== null) secs.push(d.lag.seconds);
    if (d.lag.bytes !== null) bytes.push(d.lag.bytes);
    await sleep(Math.max(0, 1000 - (Date.now() - t0)));
  }

  const count = async () => Number((await src.query('SELECT count(*) AS n FROM pgbench_history', [], DB))[0].n);
  log(`subscription disabled for ${PAUSE} s under load`);
  await tgt.query(`ALTER SUBSCRIPTION ${names.subscription} DISABLE`, [], DB);
  const before = await count();
  await sleep(PAUSE * 1000);
  const lsn = (await src.query('SELECT pg_current_wal_lsn()::text AS l'))[0].l;
  const after = await count();
  const tx = after - before;
  const t0 = performance.now();
  await tgt.query(`ALTER SUBSCRIPTION ${names.subscription} ENABLE`, [], DB);
  for (;;) {
    const ok = (await src.query('SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2', [lsn, names.slot]))[0]?.ok;
    if (ok) break;
    await sleep(100);
  }
  const catchUp = (performance.now() - t0) / 1000;
  // pgbench's TPC-B-like transaction: 3 UPDATEs and 1 INSERT.
  const rows = tx * 4;

  const fmt = (n) => (Number.isFinite(n) ? n.toFixed(3) : 'n/a');
  console.log(`pgferry sync benchmark — PostgreSQL ${src.version} → ${tgt.version}, pgbench -s ${SCALE} -R ${RATE} (-c 4 -j 2)`);
  console.log(`steady state (${secs.length} samples over ${STEADY} s):`);
  console.log(`  lag seconds  p50 ${fmt(quantile(secs, 0.5))}  p99 ${fmt(quantile(secs, 0.99))}  max ${fmt(Math.max(...secs))}`);
  console.log(`  lag bytes    p50 ${quantile(bytes, 0.5)}  p99 ${quantile(bytes, 0.99)}`);
  console.log(`  status itself took p50 ${fmt(quantile(took, 0.5))} s, p99 ${fmt(quantile(took, 0.99))} s (its own "seconds")`);
  console.log(`  the CLI process, node startup included: p50 ${fmt(quantile(wall, 0.5))} s, p99 ${fmt(quantile(wall, 0.99))} s`);
  console.log(`catch-up after ${PAUSE} s disabled: ${tx} transactions (${rows} row changes) applied in ${catchUp.toFixed(1)} s = ${Math.round(rows / catchUp)} rows/s (${Math.round(tx / catchUp)} tx/s)`);
} finally {
  load?.kill('SIGINT');
  await load?.catch(() => {});
  await Promise.allSettled([src.stop(), tgt.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
