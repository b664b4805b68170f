/**
 * A server crash for tests: `pg_ctl stop -m immediate` (no shutdown
 * checkpoint, every connection cut, crash recovery on the next start), then
 * the server started again on the same port.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import type { LocalCluster } from '../../src/local/cluster.js';

/** Stop a cluster at once, synchronously (as the account that owns its data directory). */
export function stopImmediately(c: LocalCluster): void {
  const { uid, gid } = statSync(c.dataDir);
  const r = spawnSync(path.join(c.binDir, 'pg_ctl'), ['stop', '-D', c.dataDir, '-m', 'immediate', '-w', '-t', '30'], {
    ...(process.getuid?.() === 0 ? { uid, gid } : {}),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`pg_ctl stop: ${r.stdout}${r.stderr}`);
}

/** Crash the server and start it again (crash recovery); resolves once it accepts connections. */
export async function crashRestart(c: LocalCluster): Promise<void> {
  stopImmediately(c);
  await c.restart();
}
