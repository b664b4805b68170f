#!/usr/bin/env node
/**
 * verify benchmark (not a test). Side by side, in one run, on a source and a
 * target holding the same data:
 *
 *   floor     SELECT count(*) over every table, both sides at once
 *   hashtext  sum(hashtext(t::text)) per table, both sides at once
 *   md5agg    md5(string_agg(t::text, '' ORDER BY every column)) per table, both sides at once
 *   verify    pgferry verify --jobs N over every table
 *   clean     verify of the largest keyed table alone
 *   locate    the same after deleting 10 rows of it on the target (put back afterwards)
 *
 * and prints the ratios against the goals. The baselines use the same number
 * of sessions per side as verify (--jobs), taking tables from a shared queue.
 *
 *   scripts/bench/verify-bench.sh --source URL --target URL [--jobs 2] [--inject]
 *   scripts/bench/verify-bench.sh --scale 0.05          # the shared benchmark database (generate.mjs,
 *                                                       # scale 1 ≈ 1.5 GB) on two throwaway local clusters
 *   scripts/bench/verify-bench.sh --scale 0.05 --data own   # this script's own smaller tables instead
 *   scripts/bench/verify-bench.sh --scale 0.25 --data shapes  # one table (or group) per data shape, each
 *                                                       # measured on its own against the whole-table hash
 *
 * With --source/--target nothing is written unless --inject is given (then 10
 * rows of the largest keyed table are deleted on the target and re-inserted
 * after the measurement). Uses the build in dist/ (the .sh wrapper builds first).
 */
import { clusterCpuSeconds } from './cpu.mjs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { SHAPES, analysedShape, shapesSql } from './shapes.mjs';
import pg from 'pg';
import { startCluster } from '../../dist/local/cluster.js';
import { parseConnInfo, resolveConnInfo } from '../../dist/postgres/conninfo.js';
import { emptyScope } from '../../dist/config/scope.js';
import { verify } from '../../dist/pipeline/verify/index.js';

const { values: args } = parseArgs({
  options: {
    source: { type: 'string' },
    target: { type: 'string' },
    scale: { type: 'string' },
    jobs: { type: 'string', default: '2' },
    inject: { type: 'boolean', default: false },
    data: { type: 'string', default: 'shared' },
    shape: { type: 'string', multiple: true },
    'skip-md5': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (args.help || (!args.scale && !(args.source && args.target))) {
  console.log('usage: verify-bench.sh (--source URL --target URL [--inject] | --scale S [--data shared|own|shapes [--shape NAME…] [--rounds N]]) [--jobs N] [--skip-md5]');
  process.exit(args.help ? 0 : 2);
}
const jobs = Number(args.jobs);

/** --data own: deterministic data (no random()), so that loading it twice gives equal databases. Scale 1 ≈ 4 M rows in bench_big. */
function generatorSql(scale) {
  const n = (x) => Math.max(1000, Math.round(x * scale));
  return `
CREATE TABLE bench_big (id bigint PRIMARY KEY, account int NOT NULL, amount numeric(14, 2), label text,
                        created timestamptz NOT NULL, flags int[], attrs jsonb, ratio float8);
INSERT INTO bench_big
SELECT i, i % 10007, (i % 100000) / 7.0, 'label ' || md5(i::text), '2020-01-01'::timestamptz + i * interval '1.000001 second',
       ARRAY[i % 3, i % 5], jsonb_build_object('k', i % 97, 's', left(md5(i::text), 8)), i / 3.0
  FROM generate_series(1, ${n(4_000_000)}) i;
CREATE TABLE bench_text (code text PRIMARY KEY, body text, n int);
INSERT INTO bench_text SELECT md5(i::text), repeat(md5((i * 7)::text), 3), i FROM generate_series(1, ${n(500_000)}) i;
CREATE TABLE bench_composite (tenant int, seq int, payload text, at date, PRIMARY KEY (tenant, seq));
INSERT INTO bench_composite SELECT i % 50, i, md5(i::text), '2020-01-01'::date + i % 1000 FROM generate_series(1, ${n(500_000)}) i;
CREATE TABLE bench_nokey (a int, b text, c timestamptz);
INSERT INTO bench_nokey SELECT i % 1000, md5(i::text), '2021-01-01'::timestamptz + i * interval '1 minute' FROM generate_series(1, ${n(200_000)}) i;`;
}

const clusters = [];


/** Wall and CPU seconds of fn (CPU: both local clusters plus this process), when the clusters are ours. */
async function measure(fn) {
  // Let sessions closed by the previous phase exit and be reaped first: a process that vanishes
  // between two readings would otherwise move its whole CPU time into this phase.
  await new Promise((r) => setTimeout(r, 1000));
  const cpu0 = clusters.length ? clusters.reduce((n, c) => n + clusterCpuSeconds(c), 0) : NaN;
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const own = process.cpuUsage(own0);
  await new Promise((r) => setTimeout(r, 1000));
  const cpu = clusters.length ? clusters.reduce((n, c) => n + clusterCpuSeconds(c), 0) - cpu0 + (own.user + own.system) / 1e6 : NaN;
  return { ...result, seconds, cpu };
}

async function setup() {
  if (!args.scale) return { source: args.source, target: args.target, ours: false };
  const scale = Number(args.scale);
  // No autovacuum: a worker woken by the load would bill its CPU to whichever measurement runs then.
  const settings = { shared_buffers: "'1GB'", max_wal_size: "'4GB'", checkpoint_timeout: "'30min'", autovacuum: 'off' };
  const [s, t] = await Promise.all([startCluster({ name: 'bsrc', settings }), startCluster({ name: 'btgt', settings })]);
  clusters.push(s, t);
  process.stderr.write(`generating ${args.data} data at scale ${scale} on two local clusters (PostgreSQL ${s.version})…\n`);
  await Promise.all([s.query('CREATE DATABASE bench'), t.query('CREATE DATABASE bench')]);
  if (args.data === 'shared') {
    // The project's benchmark database: deterministic, so two loads are equal row for row.
    const { generate } = await import('./generate.mjs');
    const connect = (c) => async () => {
      const cl = new pg.Client({ connectionString: c.url('bench') });
      await cl.connect();
      return cl;
    };
    await Promise.all([generate(connect(s), scale), generate(connect(t), scale)]);
  } else {
    const sql = args.data === 'shapes' ? shapesSql(scale) : generatorSql(scale);
    await Promise.all([s.query(sql, [], 'bench'), t.query(sql, [], 'bench')]);
    // Frozen, so that no measurement pays for setting hint bits.
    await Promise.all([s.query('VACUUM (FREEZE, ANALYZE)', [], 'bench'), t.query('VACUUM (FREEZE, ANALYZE)', [], 'bench')]);
  }
  // The shapes that stay unanalysed (shapes.mjs, "many") get a database of their own, never vacuumed (the warm-up
  // pass sets their hint bits): in "bench" their thousands of tables would lengthen every other shape's table list.
  const late = args.data === 'shapes' ? shapesSql(scale, false) : '';
  if (late) {
    await Promise.all([s.query('CREATE DATABASE bench_late'), t.query('CREATE DATABASE bench_late')]);
    await Promise.all([s.query(late, [], 'bench_late'), t.query(late, [], 'bench_late')]);
  }
  await Promise.all([s.query('CHECKPOINT'), t.query('CHECKPOINT')]);
  return {
    source: s.url('bench'), target: t.url('bench'), ours: true,
    ...(late ? { late: { source: s.url('bench_late'), target: t.url('bench_late'), ours: true } } : {}),
  };
}

function resolve(url) {
  return resolveConnInfo(parseConnInfo(url));
}

async function client(url) {
  const r = resolve(url);
  const c = new pg.Client({ host: r.host, port: r.port, user: r.user, password: r.password, database: r.dbname, ssl: false });
  await c.connect();
  return c;
}

const TABLES_SQL = `
SELECT n.nspname AS schema, c.relname AS name, c.reltuples::float8 AS rows,
       (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       (SELECT string_agg(format('%I', a.attname), ', ' ORDER BY k.ord)
          FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
 ORDER BY c.reltuples DESC`;

/** Run one SQL per table on both sides, `jobs` sessions per side, tables from a shared queue per side. */
function perTable(urls, tables, sqlFor) {
  return measure(() => perTableRun(urls, tables, sqlFor));
}

async function perTableRun(urls, tables, sqlFor) {
  const errors = [];
  await Promise.all(
    urls.map(async (url) => {
      let next = 0;
      const sessions = await Promise.all(Array.from({ length: jobs }, () => client(url)));
      try {
        await Promise.all(
          sessions.map(async (c) => {
            while (next < tables.length) {
              const t = tables[next++];
              try {
                await c.query(sqlFor(t));
              } catch (err) {
                errors.push(`${t.schema}.${t.name}: ${err.message}`);
              }
            }
          }),
        );
      } finally {
        await Promise.all(sessions.map((c) => c.end()));
      }
    }),
  );
  return { errors };
}

const q = (t) => `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)}`;

/** Peak resident memory of this process while fn runs. */
async function withPeakRss(fn) {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
  try {
    const result = await fn();
    return { result, peakMb: Math.round(Math.max(peak, process.memoryUsage().rss) / 1048576) };
  } finally {
    clearInterval(timer);
  }
}

function runVerify(env, tables, extra = {}) {
  return measure(() => runVerifyOnce(env, tables, extra));
}

async function runVerifyOnce(env, tables, extra = {}) {
  const { result, peakMb } = await withPeakRss(() =>
    verify({
      source: resolve(env.source),
      target: resolve(env.target),
      scope: emptyScope(),
      tables,
      jobs,
      chunkRows: 10_000,
      maxDiffs: 20,
      recheck: 3,
      lagTimeoutMs: 60_000,
      sequences: true,
      ...extra,
    }),
  );
  return { report: result, peakMb };
}

/** Delete 10 rows spread over the table on the target; returns a function that puts them back. */
async function inject(env, t) {
  const c = await client(env.target);
  const cols = (
    await c.query(
      `SELECT string_agg(format('%I', attname), ', ' ORDER BY attnum) AS cols FROM pg_attribute
        WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`,
      [q(t)],
    )
  ).rows[0].cols;
  const pk = t.pk;
  await c.query(`CREATE TEMP TABLE pgferry_bench_saved AS SELECT ${cols} FROM ${q(t)}
                  WHERE (${pk}) IN (SELECT ${pk} FROM ${q(t)} TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT 10)`);
  const { rowCount } = await c.query(`DELETE FROM ${q(t)} WHERE (${pk}) IN (SELECT ${pk} FROM pgferry_bench_saved)`);
  return {
    count: rowCount,
    restore: async () => {
      await c.query(`INSERT INTO ${q(t)} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM pgferry_bench_saved`);
      await c.end();
    },
  };
}

function ratio(a, b) {
  return b > 0 ? a / b : NaN;
}

async function main() {
  const env = await setup();
  const src = await client(env.source);
  const tables = (await src.query(TABLES_SQL)).rows;
  const sizes = (await src.query(`SELECT pg_size_pretty(pg_database_size(current_database())) AS size`)).rows[0].size;
  await src.end();
  const big = tables.find((t) => t.pk);
  process.stderr.write(`${tables.length} tables, ${sizes}; largest keyed table ${big ? `${big.schema}.${big.name} (~${Math.round(big.rows)} rows)` : 'none'}; jobs ${jobs}\n`);
  const urls = [env.source, env.target];

  // Warm the caches once so that the first measurement is not penalised.
  await perTable(urls, tables, (t) => `SELECT count(*) FROM ${q(t)}`);

  const results = {};
  results.floor = await perTable(urls, tables, (t) => `SELECT count(*) FROM ${q(t)}`);
  process.stderr.write(`floor (count)        ${results.floor.seconds.toFixed(2)}s\n`);
  results.hashtext = await perTable(urls, tables, (t) => `SELECT sum(hashtext(x::text)) FROM ${q(t)} x`);
  process.stderr.write(`sum(hashtext)        ${results.hashtext.seconds.toFixed(2)}s\n`);
  if (!args['skip-md5']) {
    results.md5 = await perTable(urls, tables, (t) => `SELECT md5(string_agg(x::text, '' ORDER BY ${t.columns})) FROM ${q(t)} x`);
    process.stderr.write(`md5(string_agg)      ${results.md5.seconds.toFixed(2)}s${results.md5.errors.length ? ` (${results.md5.errors.length} failed: ${results.md5.errors[0]})` : ''}\n`);
  }
  const full = await runVerify(env, []);
  process.stderr.write(`verify --jobs ${jobs}      ${full.seconds.toFixed(2)}s (${full.report.status}, ${full.report.summary.rowsCompared} rows, ${full.report.summary.chunksCompared} chunks, peak RSS ${full.peakMb} MB)\n`);

  let clean;
  let locate;
  if (big && (env.ours || args.inject)) {
    const name = `${pg.escapeIdentifier(big.schema)}.${pg.escapeIdentifier(big.name)}`;
    clean = await runVerify(env, [name]);
    process.stderr.write(`clean pass ${big.name}   ${clean.seconds.toFixed(2)}s\n`);
    const inj = await inject(env, big);
    try {
      locate = await runVerify(env, [name]);
    } finally {
      await inj.restore();
    }
    const found = locate.report.summary.rowDifferences;
    process.stderr.write(`locate ${inj.count} diffs      ${locate.seconds.toFixed(2)}s (${found} located)\n`);
  }

  const fmt = (v) => (Number.isFinite(v) ? `${v.toFixed(2).padStart(6)}×` : '    n/a');
  const line = (label, a, b, goal) => {
    const wall = ratio(a.seconds, b.seconds);
    const cpu = ratio(a.cpu, b.cpu);
    const ok = Number.isFinite(wall) ? (wall <= goal ? 'meets' : 'misses') : 'n/a';
    console.log(`${label.padEnd(40)} wall ${fmt(wall)}  cpu ${fmt(cpu)}   goal ≤ ${goal}×   ${ok} (wall)`);
  };
  console.log(`\nverify benchmark: ${tables.length} tables, ${sizes}, jobs ${jobs}; load average ${(await import('node:os')).loadavg()[0].toFixed(1)}`);
  line('verify / count floor', full, results.floor, 2.0);
  line('verify / sum(hashtext(row::text))', full, results.hashtext, 1.0);
  if (results.md5 && !results.md5.errors.length) line('verify / md5(string_agg(row ORDER BY all))', full, results.md5, 0.4);
  if (locate && clean) line('locate 10 diffs / clean pass', locate, clean, 1.3);
  console.log(
    `seconds: floor ${results.floor.seconds.toFixed(2)}, hashtext ${results.hashtext.seconds.toFixed(2)}` +
      `${results.md5 ? `, md5agg ${results.md5.seconds.toFixed(2)}` : ''}, verify ${full.seconds.toFixed(2)}` +
      `${clean ? `, clean ${clean.seconds.toFixed(2)}, locate ${locate.seconds.toFixed(2)}` : ''}; peak RSS ${full.peakMb} MB`,
  );
  if (clusters.length) {
    console.log(
      `cpu seconds: floor ${results.floor.cpu.toFixed(2)}, hashtext ${results.hashtext.cpu.toFixed(2)}` +
        `${results.md5 ? `, md5agg ${results.md5.cpu.toFixed(2)}` : ''}, verify ${full.cpu.toFixed(2)}` +
        `${clean ? `, clean ${clean.cpu.toFixed(2)}, locate ${locate.cpu.toFixed(2)}` : ''} (both clusters and this process)`,
    );
  }
  if (full.report.status !== 'equal') console.log(`note: verify found the databases ${full.report.status}`);
}

/** --data shapes: per shape, the whole-table hash against verify of just those tables (best of --rounds). */
async function shapesMain() {
  const env = await setup();
  // The analysed shapes share one database; the unanalysed ones have their own (setup).
  const dbs = { main: { env }, ...(env.late ? { late: { env: env.late } } : {}) };
  let sizes;
  for (const d of Object.values(dbs)) {
    const src = await client(d.env.source);
    d.all = (await src.query(TABLES_SQL)).rows;
    sizes ??= (await src.query(`SELECT pg_size_pretty(pg_database_size(current_database())) AS size`)).rows[0].size;
    await src.end();
    await perTable([d.env.source, d.env.target], d.all, (t) => `SELECT sum(hashtext(x::text)) FROM ${q(t)} x`); // warm both caches
  }
  const rounds = Number(args.rounds);
  const picked = Object.entries(SHAPES).filter(([name]) => !args.shape?.length || args.shape.includes(name));
  const rows = [];
  for (const [name, shape] of picked) {
    const { env: shapeEnv, all } = dbs[analysedShape(name) ? 'main' : 'late'];
    const urls = [shapeEnv.source, shapeEnv.target];
    const tables = all.filter((t) => (shape.schema ? t.schema === shape.schema : shape.tables.includes(`${t.schema}.${t.name}`)));
    const names = tables.map((t) => `${pg.escapeIdentifier(t.schema)}.${pg.escapeIdentifier(t.name)}`);
    const best = (a, b) => (!a ? b : { ...b, seconds: Math.min(a.seconds, b.seconds), cpu: Math.min(a.cpu, b.cpu) });
    let hash;
    let ver;
    let gate;
    for (let r = 0; r < rounds; r++) {
      hash = best(hash, await perTable(urls, tables, (t) => `SELECT sum(hashtext(x::text)) FROM ${q(t)} x`));
      ver = best(ver, await runVerify(shapeEnv, names));
      // As cutover's gate runs it: the source fenced, so each table is hashed whole first.
      gate = best(gate, await runVerify(shapeEnv, names, { sourceQuiet: true, sequences: false, recheck: 0 }));
    }
    if (ver.report.status !== 'equal') process.stderr.write(`note: verify found ${name} ${ver.report.status}\n`);
    const row = { shape: name, what: shape.what, rows: ver.report.summary.rowsCompared, chunks: ver.report.summary.chunksCompared, hash, ver, gate };
    rows.push(row);
    process.stderr.write(`${name.padEnd(11)} hashtext ${hash.seconds.toFixed(2)}s / ${hash.cpu.toFixed(2)} cpu · verify ${ver.seconds.toFixed(2)}s / ${ver.cpu.toFixed(2)} cpu · gate ${gate.seconds.toFixed(2)}s / ${gate.cpu.toFixed(2)} cpu\n`);
  }
  const sum = (f) => rows.reduce((n, r) => n + f(r), 0);
  const fmt = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a');
  console.log(`\nverify by data shape: ${sizes}, jobs ${jobs}, best of ${rounds}; load average ${(await import('node:os')).loadavg()[0].toFixed(1)}`);
  console.log('| shape | rows | chunks | whole-table hash s (CPU s) | verify s (CPU s) | verify / hash, wall (CPU) | gate s (CPU s) | gate / hash, wall (CPU) |');
  console.log('|---|---|---|---|---|---|---|---|');
  const cells = (label, rows_, chunks, h, v, g) =>
    `| ${label} | ${rows_} | ${chunks} | ${h.seconds.toFixed(2)} (${h.cpu.toFixed(2)}) | ${v.seconds.toFixed(2)} (${v.cpu.toFixed(2)}) | ` +
    `${fmt(ratio(v.seconds, h.seconds))} (${fmt(ratio(v.cpu, h.cpu))}) | ${g.seconds.toFixed(2)} (${g.cpu.toFixed(2)}) | ${fmt(ratio(g.seconds, h.seconds))} (${fmt(ratio(g.cpu, h.cpu))}) |`;
  for (const r of rows) console.log(cells(r.shape, r.rows, r.chunks, r.hash, r.ver, r.gate));
  const total = (k) => ({ seconds: sum((r) => r[k].seconds), cpu: sum((r) => r[k].cpu) });
  console.log(cells('**total**', sum((r) => r.rows), sum((r) => r.chunks), total('hash'), total('ver'), total('gate')));
}

try {
  if (args.data === 'shapes') await shapesMain();
  else await main();
} finally {
  await Promise.allSettled(clusters.map((c) => c.stop()));
}
