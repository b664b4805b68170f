#!/usr/bin/env node
/**
 * Randomized soak of pgferry's recovery (not a test; run it when the machine is quiet):
 * ROUNDS rounds, each on a fresh database pair under a running writer, with one fault
 * picked at random:
 *
 *   - kill -9 at a random init or sync fault point (PGFERRY_FAULT_POINT, src/fault.ts),
 *   - the source crashed (`pg_ctl -m immediate`) and restarted at a random moment of init,
 *   - the target crashed and restarted at a random moment of sync's wait.
 *
 * A command that died or failed is run again (as a user would) until it finishes, at most
 * three times. Then: caught up, writer stopped, caught up again, `pgferry sequences`, and an
 * exact comparison of every table (row count and ordered hash) and sequence; `cleanup` must
 * leave no slot, publication, subscription or origin. Prints one line per round and, at the
 * end, rounds run and differences found (exit 1 if any).
 *
 * Usage: npm run build && node scripts/bench/soak.mjs
 * Environment: ROUNDS (5), SEED (random; the same seed gives the same faults).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { startCluster } = await import(path.join(root, 'dist/local/cluster.js'));
const { FAULT_POINTS, FAULT_ENV } = await import(path.join(root, 'dist/fault.js'));

const ROUNDS = Number(process.env.ROUNDS ?? 5);
let seed = Number(process.env.SEED ?? Math.floor(Math.random() * 2 ** 31));
const firstSeed = seed;
// A small deterministic generator (mulberry32), so that a seed replays the same faults.
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(random() * xs.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (m) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`);

const FAULTS = [
  ...FAULT_POINTS.filter((p) => (p.startsWith('init.') && p !== 'init.roles') || p.startsWith('sync.')).map((p) => ({ kind: 'kill', point: p })),
  { kind: 'crash-source-during-init' },
  { kind: 'crash-target-during-sync' },
];

const SCHEMA = `
  CREATE TABLE items (id bigserial PRIMARY KEY, qty int NOT NULL, note text);
  INSERT INTO items (qty, note) SELECT g % 100, repeat(md5(g::text), 4) FROM generate_series(1, 5000) g;
  CREATE TABLE log (at timestamptz NOT NULL DEFAULT clock_timestamp(), actor int NOT NULL, msg text NOT NULL);
  ALTER TABLE log REPLICA IDENTITY FULL;
  INSERT INTO log (actor, msg) SELECT g % 5, 'seed ' || g FROM generate_series(1, 500) g;
  CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, rev int NOT NULL DEFAULT 0);
  INSERT INTO docs SELECT g, repeat(md5(g::text), 100), 0 FROM generate_series(1, 50) g;`;

/** One transaction after another until stopped; survives a source crash by reconnecting. */
function startWriter(conn) {
  let stopping = false;
  let commits = 0;
  const run = (async () => {
    for (let i = 0; !stopping; ) {
      const c = new pg.Client(conn);
      c.on('error', () => {});
      try {
        await c.connect();
        for (; !stopping; i++) {
          await c.query('BEGIN');
          await c.query('INSERT INTO items (qty, note) VALUES ($1, $2)', [i % 100, `n${i}`]);
          await c.query('UPDATE items SET qty = qty + 1 WHERE id = (SELECT max(id) - $1 FROM items)', [i % 40]);
          if (i % 3 === 0) await c.query('DELETE FROM items WHERE id = (SELECT min(id) + $1 FROM items)', [i % 20]);
          await c.query('INSERT INTO log (actor, msg) VALUES ($1, $2)', [i % 5, `step ${i}`]);
          if (i % 4 === 0) await c.query("UPDATE log SET msg = msg || '+' WHERE ctid = (SELECT ctid FROM log WHERE actor = $1 LIMIT 1)", [i % 5]);
          if (i % 5 === 0) await c.query('UPDATE docs SET rev = rev + 1, body = body || $1 WHERE id = $2', [String(i % 10), 1 + (i % 50)]);
          await c.query('COMMIT');
          commits++;
          await sleep(5);
        }
      } catch {
        await sleep(300); // the source restarting: connect again
      } finally {
        await c.end().catch(() => {});
      }
    }
  })();
  return { commits: () => commits, stop: async () => ((stopping = true), await run, commits) };
}

function crash(c) {
  const { uid, gid } = statSync(c.dataDir);
  const r = spawnSync(path.join(c.binDir, 'pg_ctl'), ['stop', '-D', c.dataDir, '-m', 'immediate', '-w', '-t', '30'], {
    ...(process.getuid?.() === 0 ? { uid, gid } : {}),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`pg_ctl stop: ${r.stdout}${r.stderr}`);
  return c.restart();
}

async function tableHashes(c, db) {
  const tables = await c.query(
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public' ORDER BY 1",
    [], db,
  );
  const out = {};
  for (const { t } of tables) {
    const rows = await c.query(`SELECT t::text AS r FROM ${t} t ORDER BY t::text COLLATE "C"`, [], db);
    out[t] = `${rows.length} ${createHash('sha256').update(rows.map((r) => r.r).join('\n')).digest('hex').slice(0, 16)}`;
  }
  const seqs = await c.query("SELECT schemaname || '.' || sequencename AS s, last_value::text AS v FROM pg_sequences ORDER BY 1", [], db);
  for (const s of seqs) out[`sequence ${s.s}`] = s.v;
  return out;
}

async function caughtUp(src, db) {
  const lsn = (await src.query('SELECT pg_current_wal_lsn()::text AS l'))[0].l;
  for (let i = 0; i < 600; i++) {
    const r = await src.query(
      "SELECT bool_and(confirmed_flush_lsn >= $1::pg_lsn) AS ok FROM pg_replication_slots WHERE database = $2 AND slot_name LIKE 'pgferry%'",
      [lsn, db],
    ).catch(() => [{ ok: false }]);
    if (r[0]?.ok) return;
    await sleep(250);
  }
  throw new Error('not caught up after 150 s');
}

/** Run a pgferry command until it exits 0 (at most 3 runs); the first with `env`. */
async function until0(cli, args, env, what, notes) {
  for (let run = 1; run <= 3; run++) {
    const r = await cli(args, run === 1 ? env : {});
    if (r.exitCode === 0) return;
    const line = (r.stderr.split('\n').find((l) => l.startsWith('error:')) ?? r.signal ?? `exit ${r.exitCode}`).slice(0, 140);
    notes.push(`${what} run ${run}: ${r.signal ?? `exit ${r.exitCode}`} (${line})`);
  }
  throw new Error(`${what} did not finish in 3 runs`);
}

const [src, tgt] = await Promise.all([startCluster({ name: 'soak-src' }), startCluster({ name: 'soak-tgt' })]);
let differences = 0;
let rounds = 0;
log(`soak: ${ROUNDS} rounds, SEED=${firstSeed}`);
try {
  for (let round = 1; round <= ROUNDS; round++) {
    const fault = pick(FAULTS);
    const db = `soak_${round}`;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-soak-'));
    const notes = [];
    const started = Date.now();
    await src.query(`CREATE DATABASE ${db}`);
    await src.query(SCHEMA, [], db);
    const cli = (args, env = {}) =>
      execa(process.execPath, [path.join(root, 'dist/cli/main.js'), ...args, '--source', src.url(db), '--target', tgt.url(db), '--state-dir', dir], {
        reject: false, env: { ...env }, timeout: 300_000,
      });
    const writer = startWriter({ host: '127.0.0.1', port: src.port, user: 'postgres', password: src.password, database: db });
    let verdict;
    try {
      const initArgs = ['init', '--yes', '--no-roles', '--jobs', '2', '--split-tables-larger-than', '256kB'];
      const syncArgs = ['sync', '--wait-timeout', '200'];
      const killEnv = fault.kind === 'kill' ? { [FAULT_ENV]: fault.point } : {};
      let crashing;
      if (fault.kind === 'crash-source-during-init') crashing = sleep(200 + random() * 2500).then(() => crash(src));
      await until0(cli, initArgs, fault.point?.startsWith('init.') ? killEnv : {}, 'init', notes);
      await crashing;
      if (fault.kind === 'crash-target-during-sync') crashing = sleep(300 + random() * 2000).then(() => crash(tgt));
      await until0(cli, syncArgs, fault.point?.startsWith('sync.') ? killEnv : {}, 'sync', notes);
      await crashing;
      await caughtUp(src, db);
      await writer.stop();
      await caughtUp(src, db);
      await until0(cli, ['sequences', '--yes'], {}, 'sequences', notes);
      const [a, b] = await Promise.all([tableHashes(src, db), tableHashes(tgt, db)]);
      const diff = Object.keys({ ...a, ...b }).filter((k) => a[k] !== b[k]);
      await until0(cli, ['cleanup', '--yes'], {}, 'cleanup', notes);
      const left = [
        ...(await src.query("SELECT slot_name AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgferry%' OR slot_name ~ '^pg_[0-9]+_sync_'")),
        ...(await tgt.query('SELECT subname AS n FROM pg_subscription')),
        ...(await tgt.query('SELECT roname AS n FROM pg_replication_origin')),
        ...(await src.query("SELECT pubname AS n FROM pg_publication WHERE pubname LIKE 'pgferry%'", [], db)),
      ].map((r) => r.n);
      differences += diff.length + left.length;
      verdict = diff.length || left.length ? `DIFFERENT: ${diff.join(', ')}${left.length ? ` left behind: ${left.join(', ')}` : ''}` : `equal (${writer.commits()} writer commits)`;
    } catch (err) {
      differences++;
      verdict = `FAILED: ${err.message}`;
      await writer.stop().catch(() => {});
    }
    rounds++;
    const what = fault.kind === 'kill' ? `kill -9 at ${fault.point}` : fault.kind;
    console.log(`round ${round}: ${what}: ${verdict}; ${((Date.now() - started) / 1000).toFixed(0)} s${notes.length ? `\n    ${notes.join('\n    ')}` : ''}`);
    rmSync(dir, { recursive: true, force: true });
  }
} finally {
  await Promise.allSettled([src.stop(), tgt.stop()]);
}
console.log(`rounds run: ${rounds}, differences found: ${differences} (SEED=${firstSeed})`);
process.exitCode = differences ? 1 : 0;
