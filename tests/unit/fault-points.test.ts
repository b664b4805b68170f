/**
 * Fault point names cannot drift: every name in FAULT_POINTS is placed in the
 * code exactly once, every placed name is in the list, and an unknown name
 * (in the code or in PGFERRY_FAULT_POINT) throws instead of never firing.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FAULT_ENV, FAULT_POINTS, faultPoint, type FaultPointName } from '../../src/fault.js';
import { repoRoot } from '../support/cli.js';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const f = path.join(dir, e);
    return statSync(f).isDirectory() ? sourceFiles(f) : f.endsWith('.ts') ? [f] : [];
  });
}

const placed = sourceFiles(path.join(repoRoot, 'src')).filter((f) => !f.endsWith(`${path.sep}fault.ts`)).flatMap((f) =>
  [...readFileSync(f, 'utf8').matchAll(/faultPoint\('([^']+)'\)/g)].map((m) => ({ name: m[1]!, file: path.relative(repoRoot, f) })),
);

describe('fault points', () => {
  afterEach(() => {
    delete process.env[FAULT_ENV];
  });

  it('places every listed point exactly once, and lists every placed point', () => {
    for (const p of placed) expect(FAULT_POINTS, `${p.file}: ${p.name}`).toContain(p.name);
    for (const name of FAULT_POINTS) expect(placed.filter((p) => p.name === name).map((p) => p.file), name).toHaveLength(1);
    expect(FAULT_POINTS.length).toBeGreaterThanOrEqual(12);
  });

  it('throws on an unknown name, in the code or in the environment', () => {
    expect(() => faultPoint('init.nowhere' as FaultPointName)).toThrow(/unknown fault point "init.nowhere"/);
    process.env[FAULT_ENV] = 'init.typo';
    expect(() => faultPoint('init.roles')).toThrow(/names no fault point/);
  });

  it('does nothing for another point or without the variable', () => {
    expect(() => faultPoint('init.roles')).not.toThrow();
    process.env[FAULT_ENV] = 'init.analyze';
    expect(() => faultPoint('init.roles')).not.toThrow();
  });
});
