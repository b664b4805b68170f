import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { reapStalePassfiles } from '../../src/postgres/tools.js';

describe('password directories left by a killed process', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'reap-test-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('removes directories of dead owners and keeps live ones', () => {
    // pid 2^22+1 is above the default pid_max of 4194304: never alive.
    const dead = path.join(tmp, `pgferry-pgpass-${2 ** 22 + 1}-abc`);
    const live = path.join(tmp, `pgferry-pgpass-${process.ppid}-def`);
    const foreign = path.join(tmp, 'pgferry-pgpass-xyz');
    for (const d of [dead, live, foreign]) {
      mkdirSync(d, { mode: 0o700 });
      writeFileSync(path.join(d, 'pgpass'), '*:*:*:u:secret\n', { mode: 0o600 });
    }
    expect(reapStalePassfiles(tmp)).toBe(1);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(existsSync(foreign)).toBe(true);
  });
});
