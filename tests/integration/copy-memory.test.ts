/**
 * Backpressure: copying a table ten times larger must not make the process
 * ten times larger. Measured in a child process running the built engine
 * (dist/; `npm run build` first), sampling its RSS while it copies.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.join(root, 'dist');

const CHILD = `
const [{ copyTables }, { resolveTables, emptyRules }, { connect, CANONICAL_SETTINGS }] = await Promise.all([
  import(process.env.DIST + '/pipeline/init/copy.js'),
  import(process.env.DIST + '/config/scope.js'),
  import(process.env.DIST + '/postgres/connect.js'),
]);
const { source, target, sourceMajor, targetMajor } = JSON.parse(process.env.ARGS);
const holder = await connect(source, { settings: CANONICAL_SETTINGS });
await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
const snapshot = (await holder.query('SELECT pg_export_snapshot() AS s')).rows[0].s;
const tables = (await resolveTables(holder, source.dbname, emptyRules())).tables;
let peak = 0;
const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
const out = { baseline: process.memoryUsage().rss };
for (const name of ['small', 'big']) {
  peak = 0;
  const report = await copyTables({
    source, target, snapshot, sourceMajor, targetMajor, jobs: 1,
    tables: [{ table: tables.find((t) => t.name === name) }],
  });
  out[name] = { peak, bytes: report.bytes, rows: report.rows };
}
clearInterval(timer);
await holder.end();
console.log(JSON.stringify(out));
`;

const clusters = useClusters();
let src: LocalCluster;
let tgt: LocalCluster;

beforeAll(async () => {
  [src, tgt] = await Promise.all([clusters.start({ name: 'memsrc' }), clusters.start({ name: 'memtgt' })]);
});

describe('copy engine memory', () => {
  it('keeps RSS flat while copying a table 10× larger', async () => {
    expect(existsSync(path.join(dist, 'pipeline/init/copy.js')), 'run `npm run build` before this test').toBe(true);
    const ddl = 'CREATE TABLE small (id int, v text); CREATE TABLE big (id int, v text)';
    const db = await createDatabase(src, undefined, ddl);
    await createDatabase(tgt, db, ddl);
    // ~1 kB rows stored inline (below the TOAST threshold): ~12 MB and ~120 MB.
    await src.query(`INSERT INTO small SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 12000) g;
                     INSERT INTO big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 120000) g`, undefined, db);
    const args = JSON.stringify({ source: src.conn(db), target: tgt.conn(db), sourceMajor: src.major, targetMajor: tgt.major });
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', CHILD],
        { env: { ...process.env, DIST: pathToFileURL(dist).href, ARGS: args }, maxBuffer: 1 << 20 },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)),
      );
    });
    const r = JSON.parse(stdout) as Record<'small' | 'big', { peak: number; bytes: number; rows: number }> & { baseline: number };
    const MB = 1024 * 1024;
    expect(r.small.rows).toBe(12000);
    expect(r.big.rows).toBe(120000);
    expect(r.big.bytes).toBeGreaterThan(100 * MB);
    // Buffering rows would add at least the table's size (> 100 MB); streaming adds a roughly constant
    // amount (buffers, and garbage the collector has not returned yet): ~20 MB for 12 MB, ~45 MB for 120 MB here.
    console.log(`RSS baseline ${(r.baseline / MB).toFixed(0)} MB, peak small ${(r.small.peak / MB).toFixed(0)} MB, peak big ${(r.big.peak / MB).toFixed(0)} MB`);
    expect(r.big.peak - r.baseline).toBeLessThan(80 * MB);
    expect(r.big.peak - Math.max(r.baseline, r.small.peak)).toBeLessThan(60 * MB);
  });
});
