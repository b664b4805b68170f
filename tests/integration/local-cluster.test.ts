import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedBinDir } from '../../src/local/binaries.js';
import { startCluster, type LocalCluster } from '../../src/local/cluster.js';

describe('local clusters', () => {
  const started: LocalCluster[] = [];
  afterAll(async () => {
    await Promise.all(started.map((c) => c.stop()));
  });

  it('starts the system PostgreSQL with logical WAL on a free port, and removes it on stop', async () => {
    const c = await startCluster({ name: 'sys' });
    started.push(c);
    const [row] = await c.query<{ wal_level: string; port: string }>(
      "SELECT current_setting('wal_level') AS wal_level, current_setting('port') AS port",
    );
    expect(row).toEqual({ wal_level: 'logical', port: String(c.port) });
    expect(c.major).toBeGreaterThanOrEqual(12);
    await c.stop();
    expect(existsSync(c.rootDir)).toBe(false);
  });

  for (const major of [13, 17]) {
    it(`starts an embedded PostgreSQL ${major}`, async () => {
      const bin = embeddedBinDir(major);
      expect(bin, `embedded PostgreSQL ${major} is a dev dependency`).toBeTruthy();
      const c = await startCluster({ name: `pg${major}`, binDir: bin! });
      started.push(c);
      const [row] = await c.query<{ server_version_num: string }>('SHOW server_version_num');
      expect(Math.floor(Number(row!.server_version_num) / 10000)).toBe(major);
      expect(c.major).toBe(major);
    });
  }
});
