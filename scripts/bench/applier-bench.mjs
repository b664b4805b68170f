#!/usr/bin/env node
/**
 * Benchmark of the two appliers of `pgferry sync` (not a test; run it when the machine is quiet).
 * For each applier, on fresh clusters with the same data:
 *
 *   1. pgbench -i -s SCALE on the source (pgbench_history set to REPLICA IDENTITY FULL); pgferry init
 *   2. pgbench -n -t (TX / 4) -c 4 on the source while nothing reads the slot: a backlog of TX
 *      TPC-B-like transactions (3 UPDATEs + 1 INSERT each)
 *   3. drain it: `pgferry sync --no-wait` (native subscription) or
 *      `pgferry sync --applier client --until-caught-up`, timed until the slot has confirmed the
 *      source position recorded after the backlog
 *   4. a sanity check that the pgbench tables are equal on both sides (count and sums)
 *
 * Reported: seconds, row changes per second, peak RSS of whoever applied (the target's apply
 * worker for native, the pgferry process for client; VmHWM from /proc), and how long the source
 * takes to decode the backlog through pgoutput with nobody applying (peek, before the drain): the
 * floor under either applier. SHOW=1 prints the client applier's progress lines as they come.
 *
 * Usage: npm run build && node scripts/bench/applier-bench.mjs
 * Also: CPU seconds of the walsender, of the target process that applies (the client's backend, or the apply
 * worker) and of the pgferry process, read from /proc while they run (on a shared machine wall time depends on
 * the neighbours, CPU time much less); and the ceiling: pg_recvlogical reading a copy of the slot
 * (pgoutput, proto_version 1) to /dev/null, i.e. the walsender decoding and sending the backlog with no applier.
 *
 * Environment: SCALE (10), TX (100000), PG_BIN (system 15), APPLIERS ("native,client"), PROFILE (a directory:
 * V8 CPU profile of the client applier), PERF (a file: perf profile of the client's target backend); NO_CEILING=1 skips the decode peek and the pg_recvlogical ceiling (for the
 * memory modes, where decoding a multi-GB transaction twice more only costs time); BATCH_BYTES (the client's
 * --batch-bytes); NODE_FLAGS (node flags for the pgferry process, e.g. "--trace-gc");
 * BIG_TX=1: instead of the pgbench backlog, one transaction updating every row of pgbench_accounts.
 * Memory (peak RSS against the size of what is drained): BULK_MB=n, a backlog of about n MB of WAL made of
 * transactions of 1000 inserted rows (~420 bytes each) into a table "bulk"; BIG_TX_MB=n, one transaction
 * inserting about n MB of WAL of such rows (streamed by the source, spooled by the client applier).
 */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterCpuSeconds, procCpuSeconds } from './cpu.mjs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startCluster } = await import(path.join(root, 'dist/local/cluster.js'));
const { objectNames } = await import(path.join(root, 'dist/state/object-names.js'));

const SCALE = Number(process.env.SCALE ?? 10);
const TX = Number(process.env.TX ?? 100_000);
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const APPLIERS = (process.env.APPLIERS ?? 'native,client').split(',');
const BIG_TX = process.env.BIG_TX === '1';
const BULK_MB = Number(process.env.BULK_MB ?? 0);
const BIG_TX_MB = Number(process.env.BIG_TX_MB ?? 0);
/** WAL per "bulk" row, measured on 15 (heap + primary key), to size BIG_TX_MB's single statement. */
const BULK_ROW_WAL = 560;
const DB = 'bench';
const CLIENTS = 4;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

/** Peak resident set size of a process in MB (0 once it is gone). */
function peakRssMb(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}


/** CPU seconds of processes found while something runs, by role (a pid's last reading before it exits). */
class CpuTracker {
  pids = new Map();
  note(role, pid) {
    if (!pid) return;
    const key = `${role}:${pid}`;
    this.pids.set(key, Math.max(this.pids.get(key) ?? 0, procCpuSeconds(pid)));
  }
  seconds(role) {
    let n = 0;
    for (const [k, v] of this.pids) if (k.startsWith(`${role}:`)) n += v;
    return n;
  }
}

const activePid = async (src, slot) => (await src.query('SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [slot]).catch(() => []))[0]?.pid ?? null;

/**
 * The ceiling: the source's walsender decoding the backlog over a replication connection
 * (pg_recvlogical, pgoutput protocol 1, to /dev/null) from a copy of the slot, nothing applied.
 */
async function recvlogicalCeiling(src, names, lsn) {
  const copy = `${names.slot}_ceiling`.slice(0, 63);
  await src.query('SELECT pg_copy_logical_replication_slot($1, $2)', [names.slot, copy], DB);
  const cpu0 = clusterCpuSeconds(src);
  const t0 = performance.now();
  const cpuOf = new CpuTracker();
  const recv = execa(path.join(PG_BIN, 'pg_recvlogical'), [
    '-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres', '-d', DB, '--slot', copy, '--start', '--no-loop', '-E', lsn,
    '-o', 'proto_version=1', '-o', `publication_names=${names.publication}`, '-f', '/dev/null',
  ], { env: { ...process.env, PGPASSWORD: src.password } });
  let exited = false;
  recv.finally(() => (exited = true)).catch(() => {});
  while (!exited) {
    cpuOf.note('walsender', await activePid(src, copy));
    await sleep(100);
  }
  await recv;
  const seconds = (performance.now() - t0) / 1000;
  await sleep(500); // the walsender's exit reaped, its time in the postmaster's total
  const cpu = clusterCpuSeconds(src) - cpu0;
  await src.query('SELECT pg_drop_replication_slot($1)', [copy], DB);
  return { seconds, cpu, walsender: cpuOf.seconds('walsender') };
}

/** The memory modes' load: a backlog of many transactions (bulkMb) or one transaction (bigTxMb); returns the rows inserted. */
async function bulkLoad(src, bulkMb, bigTxMb) {
  const row = "SELECT g, repeat(md5(g::text), 12) FROM generate_series(1, $1::int) g";
  if (bigTxMb) {
    log(`one transaction of about ${bigTxMb} MB of WAL (slot not read)`);
    await src.query(`INSERT INTO bulk (v, pad) ${row}`, [Math.round((bigTxMb * 1024 * 1024) / BULK_ROW_WAL)], DB);
  } else {
    log(`a backlog of about ${bulkMb} MB of WAL in transactions of 1000 rows (slot not read)`);
    await src.query(`CREATE PROCEDURE bulk_fill(mb bigint) LANGUAGE plpgsql AS $$
      DECLARE start pg_lsn := pg_current_wal_insert_lsn();
      BEGIN
        LOOP
          INSERT INTO bulk (v, pad) ${row.replace('$1::int', '1000')};
          COMMIT;
          EXIT WHEN pg_wal_lsn_diff(pg_current_wal_insert_lsn(), start) >= mb * 1024 * 1024;
        END LOOP;
      END $$`, [], DB);
    await src.query(`CALL bulk_fill(${Number(bulkMb)})`, undefined, DB); // simple protocol: the procedure commits
  }
  return Number((await src.query('SELECT count(*)::bigint AS n FROM bulk', [], DB))[0].n);
}

async function runOnce(applier) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-bench-applier-'));
  const [src, tgt] = await Promise.all([startCluster({ name: `ab-src-${applier}` }), startCluster({ name: `ab-tgt-${applier}` })]);
  try {
    await src.query(`CREATE DATABASE ${DB}`);
    const pgEnv = { ...process.env, PGPASSWORD: src.password };
    const pgArgs = ['-h', '127.0.0.1', '-p', String(src.port), '-U', 'postgres'];
    log(`${applier}: pgbench -i -s ${SCALE}`);
    await execa(path.join(PG_BIN, 'pgbench'), ['-i', '-q', '-s', String(SCALE), ...pgArgs, DB], { env: pgEnv });
    await src.query('ALTER TABLE pgbench_history REPLICA IDENTITY FULL', [], DB);
    const sysid = async (c) => (await c.query('SELECT system_identifier::text AS id FROM pg_control_system()'))[0].id;
    const names = objectNames({ sourceSystemIdentifier: await sysid(src), sourceDatabase: DB, targetSystemIdentifier: await sysid(tgt), targetDatabase: DB });
    const cliArgs = (...args) => [path.join(root, 'dist/cli/main.js'), ...args, '--source', src.url(DB), '--target', tgt.url(DB), '--state-dir', dir];
    log(`${applier}: pgferry init`);
    await src.query('CREATE TABLE bulk (id bigserial PRIMARY KEY, v int NOT NULL, pad text NOT NULL)', [], DB);
    const init = await execa(process.execPath, cliArgs('init', '--yes', '--no-roles'), { reject: false });
    if (init.exitCode !== 0) throw new Error(`init failed: ${init.stderr}`);

    let changes = Math.ceil(TX / CLIENTS) * CLIENTS * 4;
    if (BULK_MB || BIG_TX_MB) {
      changes = await bulkLoad(src, BULK_MB, BIG_TX_MB);
    } else if (BIG_TX) {
      // One transaction updating every account (SCALE × 100 000 rows): memory must not grow with it.
      log(`${applier}: one transaction updating ${SCALE * 100_000} accounts (slot not read)`);
      await src.query('UPDATE pgbench_accounts SET abalance = abalance + 1', [], DB);
      changes = SCALE * 100_000;
    } else {
      log(`${applier}: backlog of ${TX} pgbench transactions (slot not read)`);
      await execa(path.join(PG_BIN, 'pgbench'), ['-n', '-t', String(Math.ceil(TX / CLIENTS)), '-c', String(CLIENTS), '-j', '2', ...pgArgs, DB], { env: pgEnv });
    }
    const lsn = (await src.query('SELECT pg_current_wal_lsn()::text AS l'))[0].l;
    const backlog = (await src.query('SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn)::bigint AS b FROM pg_replication_slots WHERE slot_name = $2', [lsn, names.slot]))[0].b;

    // The floor under either applier: the source decoding the backlog through pgoutput, read by nobody (nothing consumed).
    const NO_CEILING = process.env.NO_CEILING === '1';
    const d0 = performance.now();
    if (!NO_CEILING) await src.query(`SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`, [names.slot, `"${names.publication}"`], DB);
    const decodeSeconds = (performance.now() - d0) / 1000;
    const ceiling = NO_CEILING ? { seconds: 0, cpu: 0, walsender: 0 } : await recvlogicalCeiling(src, names, lsn);
    log(`${applier}: pg_recvlogical ceiling ${ceiling.seconds.toFixed(2)} s, source ${ceiling.cpu.toFixed(2)} CPU s`);
    const [srcCpu0, tgtCpu0] = [clusterCpuSeconds(src), clusterCpuSeconds(tgt)];
    log(`${applier}: draining ${(Number(backlog) / 1024 / 1024).toFixed(0)} MB of WAL`);
    const t0 = performance.now();
    const batch = process.env.BATCH_BYTES ? ['--batch-bytes', process.env.BATCH_BYTES] : [];
    const args = applier === 'client' ? cliArgs('sync', '--applier', 'client', '--until-caught-up', ...batch) : cliArgs('sync', '--no-wait');
    // PROFILE=dir: a V8 CPU profile of the pgferry process (client) in dir.
    const nodeArgs = [...(process.env.PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.PROFILE}`] : []), ...(process.env.NODE_FLAGS?.split(' ').filter(Boolean) ?? [])];
    const child = execa(process.execPath, [...nodeArgs, ...args], { reject: false });
    // SHOW=1: the applier's progress lines with the time since the drain started.
    if (process.env.SHOW) child.stderr.on('data', (d) => process.stderr.write(String(d).split('\n').filter(Boolean).map((l) => `  +${((performance.now() - t0) / 1000).toFixed(2)} s ${l}\n`).join('')));
    let peak = 0;
    let workerPid = null;
    let nodeCpu = 0;
    const cpuOf = new CpuTracker();
    let exitedAt = null;
    let perf = null;
    child.finally(() => (exitedAt = performance.now())).catch(() => {});
    for (;;) {
      if (applier === 'client' && exitedAt !== null && performance.now() - exitedAt > 30_000) {
        const r = await child;
        throw new Error(`sync (client) exited ${r.exitCode} 30 s ago and the slot has not confirmed the backlog's end: ${r.stderr.slice(-2000)}`);
      }
      cpuOf.note('walsender', await activePid(src, names.slot));
      if (applier === 'client') {
        const rows = await tgt.query("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgferry sync (client applier)%'", [], DB).catch(() => []);
        for (const row of rows) {
          cpuOf.note('backend', row.pid);
          // PERF=file: a perf profile of the client's target backend (perf record -p), for where its CPU goes.
          if (process.env.PERF && !perf) perf = execa('perf', ['record', '-q', '-F', '999', '-o', process.env.PERF, '-p', String(row.pid)], { reject: false });
        }
      } else cpuOf.note('backend', workerPid);
      if (applier === 'client') {
        peak = Math.max(peak, peakRssMb(child.pid));
        nodeCpu = Math.max(nodeCpu, procCpuSeconds(child.pid));
      }
      else {
        workerPid ??= (await tgt.query('SELECT pid FROM pg_stat_subscription WHERE relid IS NULL AND pid IS NOT NULL', [], DB).catch(() => []))[0]?.pid ?? null;
        if (workerPid) peak = Math.max(peak, peakRssMb(workerPid));
      }
      const ok = (await src.query('SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2', [lsn, names.slot]))[0]?.ok;
      if (ok) break;
      await sleep(100);
    }
    const seconds = (performance.now() - t0) / 1000;
    if (perf) {
      perf.kill('SIGINT');
      await perf;
    }
    const [srcCpu, tgtCpu] = [clusterCpuSeconds(src) - srcCpu0, clusterCpuSeconds(tgt) - tgtCpu0];
    const r = await child;
    if (r.exitCode !== 0) throw new Error(`sync (${applier}) exited ${r.exitCode}: ${r.stderr}`);

    const check = `SELECT (SELECT count(*)::text || '/' || sum(v)::text || '/' || max(md5(pad)) FROM bulk) AS bulk, (SELECT sum(abalance)::text FROM pgbench_accounts) AS a, (SELECT sum(tbalance)::text FROM pgbench_tellers) AS t,
                          (SELECT sum(bbalance)::text FROM pgbench_branches) AS b, (SELECT count(*)::text || '/' || sum(delta)::text FROM pgbench_history) AS h`;
    const [s, t] = [(await src.query(check, [], DB))[0], (await tgt.query(check, [], DB))[0]];
    const equal = JSON.stringify(s) === JSON.stringify(t);
    return { applier, seconds, changes, rate: changes / seconds, peakMb: peak, backlogMb: Number(backlog) / 1024 / 1024, equal, decodeSeconds, ceiling, srcCpu, tgtCpu, nodeCpu, walsenderCpu: cpuOf.seconds('walsender'), backendCpu: cpuOf.seconds('backend') };
  } finally {
    await Promise.allSettled([src.stop(), tgt.stop()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (const a of APPLIERS) results.push(await runOnce(a));
const shape = BIG_TX_MB ? `one transaction of ~${BIG_TX_MB} MB of WAL (inserts)` : BULK_MB ? `a backlog of ~${BULK_MB} MB of WAL (1000-row insert transactions)`
  : BIG_TX ? `pgbench -s ${SCALE}, one transaction updating ${SCALE * 100_000} accounts` : `pgbench -s ${SCALE}, backlog of ${TX} transactions (${CLIENTS} clients)`;
console.log(`pgferry applier benchmark — ${shape}, ${os.cpus().length} cores`);
for (const r of results) {
  console.log(
    `  ${r.applier.padEnd(6)} ${r.seconds.toFixed(1)} s  ${Math.round(r.rate)} changes/s  peak RSS ${r.peakMb.toFixed(0)} MB  (backlog ${r.backlogMb.toFixed(0)} MB of WAL, decoding it alone ${r.decodeSeconds.toFixed(1)} s; tables equal: ${r.equal})`,
  );
  console.log(
    `         CPU s: walsender ${r.walsenderCpu.toFixed(2)}, ${r.applier === 'client' ? 'target backend' : 'apply worker'} ${r.backendCpu.toFixed(2)}` +
      `${r.applier === 'client' ? `, pgferry ${r.nodeCpu.toFixed(2)}` : ''} (whole clusters: source ${r.srcCpu.toFixed(2)}, target ${r.tgtCpu.toFixed(2)})`,
  );
  console.log(
    `         ceiling, pg_recvlogical to /dev/null: ${r.ceiling.seconds.toFixed(2)} s, walsender ${r.ceiling.walsender.toFixed(2)} CPU s (source cluster ${r.ceiling.cpu.toFixed(2)})`,
  );
}
const n = results.find((r) => r.applier === 'native');
const c = results.find((r) => r.applier === 'client');
if (n && c) console.log(`  client / native speed: ${(n.seconds / c.seconds).toFixed(2)}×`);
