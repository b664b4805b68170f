/**
 * Shared cluster helpers for test files: start a source/target pair, make
 * throwaway databases, and always stop everything in afterAll.
 */
import { afterAll } from 'vitest';
import { embeddedBinDir } from '../../src/local/binaries.js';
import { startCluster, type ClusterOptions, type LocalCluster } from '../../src/local/cluster.js';

/** Start clusters for this test file; they are stopped in afterAll even when tests fail. */
export function useClusters(): {
  start: (opts?: ClusterOptions) => Promise<LocalCluster>;
  startMajor: (major: number, opts?: ClusterOptions) => Promise<LocalCluster>;
} {
  const started: LocalCluster[] = [];
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
