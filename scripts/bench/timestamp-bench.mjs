#!/usr/bin/env node
/**
 * Benchmark of `sync --method timestamp` (not a test; run it when the machine is quiet):
 *
 *   1. two throwaway clusters, the source with wal_level = replica; the benchmark database
 *      (generate.mjs) at SCALE; every keyed table gets `updated_at timestamptz NOT NULL` and a
 *      trigger stamping it with now() (audit_log has no key and is left out of the scope)
 *   2. `pgferry init --method timestamp` through the built CLI: the full re-copy to compare with
 *   3. CHANGED (1 %) of the rows of orders and events updated (one transaction each), then one
 *      `sync --method timestamp --once` round, then one with `--detect-deletes`: seconds and rows/s
 *   4. the round's result checked: orders and events equal on both sides (md5 of the ordered rows)
 *   5. unless STANDBY=0: a hot standby of the source (pg_basebackup), CHANGED of the rows changed again on
 *      the primary, and one round reading the standby (by transaction ID: a full scan per table), checked
 *
 * Usage: npm run build && node scripts/bench/timestamp-bench.mjs
 * Each step's CPU seconds: the CLI process (with the tools it ran), the source and the target cluster.
 * Environment: SCALE (0.2), CHANGED (0.01); the system PostgreSQL. Passwords go through PGFERRY_SOURCE /
 * PGFERRY_TARGET, never argv.
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import { clusterCpuSeconds } from './cpu.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startCluster } = await import(path.join(root, 'dist/local/cluster.js'));
const { generate } = await import('./generate.mjs');

const STANDBY = process.env.STANDBY !== '0';
const SCALE = Number(process.env.SCALE ?? 0.2);
const CHANGED = Number(process.env.CHANGED ?? 0.01);
const DB = 'bench';
const SETTINGS = { shared_buffers: "'512MB'", max_wal_size: "'8GB'", checkpoint_timeout: "'30min'", maintenance_work_mem: "'512MB'" };

const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);
const secs = (t0) => (performance.now() - t0) / 1000;
/** CPU seconds of this process's reaped children (each CLI run, with the pg_dump/pg_restore it waited for). */
function childrenCpuSeconds() {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
}

async function client(cluster, db) {
  const c = new pg.Client({ host: cluster.host, port: cluster.port, user: 'postgres', password: cluster.password, database: db });
  c.on('error', () => {});
  await c.connect();
  return c;
}

const STAMP = `
  CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
  DO $$ DECLARE r record; BEGIN
    FOR r IN SELECT c.oid::regclass AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND n.nspname IN ('public', 'small') AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
    LOOP
      IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = r.t AND attname = 'updated_at' AND NOT attisdropped) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN updated_at timestamptz NOT NULL DEFAULT ''2020-01-01 00:00:00+00''', r.t);
      END IF;
      EXECUTE format('CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION stamp()', r.t);
      EXECUTE format('CREATE INDEX ON %s (updated_at)', r.t);
    END LOOP;
  END $$;`;

let standby = null;
const dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-ts-'));
const [src, tgt] = await Promise.all([
  startCluster({ name: 'bench-ts-src', settings: { ...SETTINGS, wal_level: 'replica' } }),
  startCluster({ name: 'bench-ts-tgt', settings: SETTINGS }),
]);
try {
  await src.query(`CREATE DATABASE ${DB}`);
  let t0 = performance.now();
  await generate(() => client(src, DB), SCALE, { log: (m) => log(`generate: ${m}`) });
  await src.query(STAMP, [], DB);
  await src.query('VACUUM ANALYZE', [], DB);
  const size = Number((await src.query(`SELECT pg_database_size('${DB}') AS b`))[0].b);
  const rowsOf = async (t) => Number((await src.query(`SELECT count(*) AS n FROM ${t}`, [], DB))[0].n);
  const totalRows = (await src.query(
    "SELECT sum(c.reltuples)::bigint AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname IN ('public', 'small') AND c.relname <> 'audit_log'", [], DB,
  ))[0].n;
  log(`generated ${(size / 2 ** 20).toFixed(0)} MB (scale ${SCALE}) in ${secs(t0).toFixed(0)} s`);

  const env = { ...process.env, PGFERRY_SOURCE: src.url(DB), PGFERRY_TARGET: tgt.url(DB) };
  const run = (...args) => execa(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--state-dir', dir, '--exclude-tables', 'public.audit_log'], { env, reject: false });
  if (STANDBY) {
    t0 = performance.now();
    standby = await startCluster({ name: 'bench-ts-standby', standbyOf: src, settings: { ...SETTINGS, hot_standby_feedback: 'on' } });
    log(`standby started (pg_basebackup) in ${secs(t0).toFixed(0)} s`);
  }
  /** Run the CLI; `cpu` is the CPU seconds of the CLI process, the source cluster and the target cluster meanwhile. */
  const cli = async (...args) => {
    const c0 = [childrenCpuSeconds(), clusterCpuSeconds(src), clusterCpuSeconds(tgt)];
    const x = await run(...args);
    const c1 = [childrenCpuSeconds(), clusterCpuSeconds(src), clusterCpuSeconds(tgt)];
    x.cpu = { cli: +(c1[0] - c0[0]).toFixed(2), source: +(c1[1] - c0[1]).toFixed(2), target: +(c1[2] - c0[2]).toFixed(2) };
    return x;
  };

  t0 = performance.now();
  let r = await cli('init', '--method', 'timestamp', '--yes', '--no-roles', '--jobs', '2');
  const initSeconds = secs(t0);
  if (r.exitCode !== 0) throw new Error(`init failed: ${r.stderr}`);
  const initCpu = r.cpu;
  log(`init --method timestamp: ${initSeconds.toFixed(1)} s, CPU ${JSON.stringify(initCpu)}`);

  const orders = await rowsOf('public.orders');
  const events = await rowsOf('public.events');
  const every = Math.round(1 / CHANGED);
  await src.query(`UPDATE public.orders SET total = total + 1 WHERE id % ${every} = 0`, [], DB);
  await src.query(`UPDATE public.events SET id = id WHERE id % ${every} = 0`, [], DB);
  const changed = Math.floor(orders / every) + Math.floor(events / every);
  log(`changed ${changed} rows of orders (${orders}) and events (${events})`);
  await new Promise((res) => setTimeout(res, 1500));

  const round = async (...extra) => {
    const t = performance.now();
    const x = await cli('sync', '--method', 'timestamp', '--once', '--json', ...extra);
    const s = secs(t);
    if (x.exitCode !== 0) throw new Error(`round failed: ${x.stderr}`);
    const doc = JSON.parse(x.stdout);
    return { seconds: s, upserted: doc.databases[0].upserted, deleted: doc.databases[0].deleted, cpu: x.cpu };
  };
  const plain = await round();
  log(`round: ${plain.seconds.toFixed(2)} s, ${plain.upserted} upserted, CPU ${JSON.stringify(plain.cpu)}`);
  const idle = await round();
  log(`idle round: ${idle.seconds.toFixed(2)} s, ${idle.upserted} upserted`);
  const deletes = await round('--detect-deletes');
  log(`--detect-deletes round: ${deletes.seconds.toFixed(2)} s`);

  const digest = async (cluster, t) => (await cluster.query(`SELECT md5(string_agg(x::text, ',' ORDER BY x.id)) AS h FROM ${t} x`, [], DB))[0].h;
  for (const t of ['public.orders', 'public.events']) {
    if ((await digest(src, t)) !== (await digest(tgt, t))) throw new Error(`${t} differs after the round`);
  }
  let standbyRound = null;
  if (standby) {
    await src.query(`UPDATE public.orders SET total = total + 1 WHERE id % ${every} = 1`, [], DB);
    await src.query(`UPDATE public.events SET id = id WHERE id % ${every} = 1`, [], DB);
    const lsn = (await src.query('SELECT pg_current_wal_lsn()::text AS l'))[0].l;
    while (!(await standby.query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]))[0].ok) await new Promise((res) => setTimeout(res, 200));
    env.PGFERRY_SOURCE = standby.url(DB);
    const sb0 = clusterCpuSeconds(standby);
    const x = await round();
    standbyRound = { ...x, cpu: { ...x.cpu, standby: +(clusterCpuSeconds(standby) - sb0).toFixed(2) } };
    log(`round on the standby: ${x.seconds.toFixed(2)} s, ${x.upserted} upserted, CPU ${JSON.stringify(standbyRound.cpu)}`);
    for (const t of ['public.orders', 'public.events']) {
      if ((await digest(src, t)) !== (await digest(tgt, t))) throw new Error(`${t} differs after the round on the standby`);
    }
  }
  const result = {
    scale: SCALE, sizeMb: Math.round(size / 2 ** 20), rowsInScope: Number(totalRows), changedRows: changed,
    init: { seconds: +initSeconds.toFixed(2), rowsPerSecond: Math.round(Number(totalRows) / initSeconds), cpu: initCpu },
    round: { seconds: +plain.seconds.toFixed(2), upserted: plain.upserted, changedRowsPerSecond: Math.round(changed / plain.seconds), cpu: plain.cpu },
    idleRound: { seconds: +idle.seconds.toFixed(2), upserted: idle.upserted, cpu: idle.cpu },
    ...(standbyRound ? { standbyRound: { seconds: +standbyRound.seconds.toFixed(2), upserted: standbyRound.upserted, changedRowsPerSecond: Math.round(changed / standbyRound.seconds), cpu: standbyRound.cpu } } : {}),
    detectDeletesRound: { seconds: +deletes.seconds.toFixed(2), rowsComparedPerSecond: Math.round(Number(totalRows) / deletes.seconds), cpu: deletes.cpu },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
} finally {
  await Promise.allSettled([src.stop(), tgt.stop(), standby?.stop()]);
  rmSync(dir, { recursive: true, force: true });
}
