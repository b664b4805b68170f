/**
 * Shared cluster helpers for test files: start a source/target pair, make
 * throwaway databases, and always stop everything in afterAll.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach } from 'vitest';
import { embeddedBinDir } from '../../src/local/binaries.js';
import { startCluster, type ClusterOptions, type LocalCluster } from '../../src/local/cluster.js';
import { waitFor } from './wait.js';

/** Start clusters for this test file; they are stopped in afterAll even when tests fail. */
export function useClusters(): {
  start: (opts?: ClusterOptions) => Promise<LocalCluster>;
  startMajor: (major: number, opts?: ClusterOptions) => Promise<LocalCluster>;
} {
  const started: LocalCluster[] = [];
  // A failed test shows what the servers said (an apply worker's error is only in the log).
  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    for (const c of started) {
      const tail = serverLogTail(c);
      if (tail) console.error(`--- ${c.name} (port ${c.port}) server.log, last lines ---\n${tail}`);
    }
  });
  afterAll(async () => {
    await Promise.allSettled(started.map((c) => c.stop()));
  });
  const start = async (opts: ClusterOptions = {}) => {
    const c = await startCluster(opts);
    started.push(c);
    return c;
  };
  const startMajor = async (major: number, opts: ClusterOptions = {}) => {
    const binDir = embeddedBinDir(major);
    if (!binDir) throw new Error(`embedded PostgreSQL ${major} is not installed (npm ci installs it as a dev dependency)`);
    return start({ ...opts, binDir, name: opts.name ?? `pg${major}` });
  };
  return { start, startMajor };
}

function serverLogTail(c: LocalCluster, lines = 40): string {
  const file = path.join(c.rootDir, 'server.log');
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

let dbCounter = 0;
/** A fresh database name, unique within the cluster. */
export function uniqueDbName(prefix = 'db'): string {
  dbCounter++;
  return `${prefix}_${process.pid}_${dbCounter}`;
}

/** Create a database and return its name. */
export async function createDatabase(c: LocalCluster, name = uniqueDbName(), sql?: string): Promise<string> {
  await c.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  if (sql) await c.query(sql, undefined, name);
  return name;
}

/**
 * Transactions committed in database `db` (pg_stat_database.xact_commit), once no session whose
 * application_name is LIKE `sessions` is left: a session's counts reach the statistics as it exits.
 */
export async function committedTransactions(c: LocalCluster, db: string, sessions: string): Promise<number> {
  await waitFor(`sessions ${sessions} to end`, async () => {
    const [r] = await c.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE $2', [db, sessions]);
    return r!.n === '0';
  });
  const [r] = await c.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = $1', [db]);
  return Number(r!.n);
}
