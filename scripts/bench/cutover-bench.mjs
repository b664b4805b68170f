#!/usr/bin/env node
/**
 * Benchmark of `pgferry cutover` (not a test; run it when the machine is quiet):
 * how long application writes are unavailable (writeUnavailableMs: from the
 * first refused write to the target being ready) under a steady write load.
 *
 *   1. two throwaway clusters; the benchmark database (generate.mjs) loaded once
 *      into a template on the source
 *   2. per run (each rate × each gate): a fresh copy of the template, pgferry
 *      init + sync, pgbench at a fixed rate (-R) writing to public.orders,
 *      public.events and small.t001 (an identity column: a sequence moves),
 *      10 s of load, then `pgferry cutover --yes --json --verify <gate>` while
 *      pgbench is still writing
 *   3. the JSON document's writeUnavailableMs, gateMs and phase timings
 *
 * Usage: npm run build && node scripts/bench/cutover-bench.mjs
 * Environment: SCALE (1 = the ~1.5 GB database), RATES (100,500,2000), GATES (none,quick),
 *              LOAD_SECONDS (10), PG_BIN (system 15), LATENCY_MS (0; ≥ 1: pgferry reaches both servers, and
 *              the target's subscription the source, through relays that delay each direction by that many
 *              milliseconds — latency-relay.mjs; pgbench, the application, stays next to the source).
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { generate } from './generate.mjs';
import { throughRelay } from './latency-relay.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startCluster } = await import(path.join(root, 'dist/local/cluster.js'));

const SCALE = Number(process.env.SCALE ?? 1);
const RATES = (process.env.RATES ?? '100,500,2000').split(',').map(Number);
const GATES = (process.env.GATES ?? 'none,quick').split(',');
const LOAD = Number(process.env.LOAD_SECONDS ?? 10);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const LATENCY = Number(process.env.LATENCY_MS ?? 0);
if (!(LATENCY === 0 || (Number.isInteger(LATENCY) && LATENCY >= 1))) throw new Error('LATENCY_MS must be 0 or a whole number of milliseconds');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

const work = mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-cutover-'));
const [src, tgt] = await Promise.all([
  startCluster({ name: 'bench-cut-src', settings: { max_connections: 50 } }),
  startCluster({ name: 'bench-cut-tgt', settings: { max_connections: 50 } }),
]);
let load;
const results = [];
const relays = [];
try {
  // How pgferry reaches each server: directly, or through a relay of its own (LATENCY_MS).
  const [srcAt, tgtAt] = LATENCY ? await Promise.all([throughRelay(src, LATENCY), throughRelay(tgt, LATENCY)]) : [src, tgt];
  if (LATENCY) relays.push(srcAt, tgtAt);
  await src.query('CREATE DATABASE bench_tpl');
  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: src.port, user: 'postgres', password: src.password, database: 'bench_tpl' });
    await c.connect();
    return c;
  };
  log(`generating the benchmark database at scale ${SCALE}`);
  const rows = await generate(connect, SCALE, { log });
  // pgbench's script: one order and one event updated, one small row inserted (a sequence moves).
  const script = path.join(work, 'cutover.sql');
  writeFileSync(
    script,
    `\\set id random(1, ${rows.orders})\n\\set k random(1, 1000)\nBEGIN;\n` +
      'UPDATE public.orders SET total = total + 1 WHERE id = :id;\n' +
      'UPDATE public.events SET value = value + 1 WHERE id = :id;\n' +
      "INSERT INTO small.t001 (name, qty, price, updated_at) VALUES ('bench', :k, 1.00, '2024-01-01 00:00:00+00');\nEND;\n",
  );
  // audit_log has no key: UPDATE/DELETE would fail once it is published.
  await src.query('ALTER TABLE public.audit_log REPLICA IDENTITY FULL', [], 'bench_tpl');
  const pgEnv = { ...process.env, PGPASSWORD: src.password };
  const pgArgs = ['-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres'];

  let n = 0;
  for (const rate of RATES) {
    for (const gate of GATES) {
      n++;
      const db = `bench_${n}`;
      const dir = path.join(work, `state${n}`);
      await src.query(`CREATE DATABASE ${db} TEMPLATE bench_tpl`);
      const cli = (...args) =>
        execa(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--source', srcAt.url(db), '--target', tgtAt.url(db), '--state-dir', dir], { reject: false });
      log(`[${rate} tx/s, --verify ${gate}] init`);
      let r = await cli('init', '--yes', '--no-roles');
      if (r.exitCode !== 0) throw new Error(`init failed: ${r.stderr}`);
      r = await cli('sync', '--wait-timeout', '600');
      if (r.exitCode !== 0) throw new Error(`sync failed: ${r.stderr}`);
      log(`[${rate} tx/s, --verify ${gate}] pgbench -R ${rate} for ${LOAD} s, then cutover`);
      load = execa(path.join(PG_BIN, 'pgbench'), ['-n', '-f', script, '-R', String(rate), '-T', String(LOAD + 600), '-c', '4', '-j', '2', ...pgArgs, db], { env: pgEnv, reject: false });
      await sleep(LOAD * 1000);
      r = await cli('cutover', '--yes', '--json', '--verify', gate);
      load.kill('SIGINT');
      await load.catch(() => {});
      load = undefined;
      const doc = JSON.parse(r.stdout);
      if (r.exitCode !== 0) throw new Error(`cutover exited ${r.exitCode}: ${r.stdout} ${r.stderr}`);
      const phases = Object.fromEntries(doc.phases.map((p) => [p.name, p.ms]));
      results.push({ rate, gate, writeUnavailableMs: doc.writeUnavailableMs, gateMs: doc.gateMs, phases, sessions: doc.databases[0].sessionsEnded });
      log(`  writeUnavailableMs ${doc.writeUnavailableMs} (gate ${doc.gateMs} ms) · ${doc.phases.map((p) => `${p.name} ${p.ms}`).join(' · ')}`);
      await src.query(`DROP DATABASE ${db} WITH (FORCE)`).catch(() => {});
      await tgt.query(`DROP DATABASE ${db} WITH (FORCE)`).catch(() => {});
    }
  }
  console.log(`pgferry cutover benchmark — PostgreSQL ${src.version} → ${tgt.version}, scale ${SCALE}, pgbench -c 4 -j 2 -R rate, ${LOAD} s of load before the cutover${LATENCY ? `, ${LATENCY} ms each way between pgferry (and the subscription) and the servers` : ''}`);
  console.log('| tx/s | --verify | writeUnavailableMs | gate ms | fence ms | catch-up ms | sequences ms | hand-over ms | sessions ended |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of results) {
    console.log(`| ${x.rate} | ${x.gate} | ${x.writeUnavailableMs} | ${x.gateMs} | ${x.phases.fence} | ${x.phases['catch-up']} | ${x.phases.sequences} | ${x.phases['hand-over']} | ${x.sessions} |`);
  }
} finally {
  for (const r of relays) r.kill();
  load?.kill('SIGINT');
  await load?.catch(() => {});
  await Promise.allSettled([src.stop(), tgt.stop()]);
  rmSync(work, { recursive: true, force: true });
}
