/**
 * The README starts with the two commands a newcomer runs. This test reads
 * them from the README and runs the demo command exactly as written in a
 * fresh clone of the repository; the test command is what CI (.ci/run) runs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

function quickStart(): string[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const block = /```sh\n([\s\S]*?)```/.exec(readme);
  if (!block) throw new Error('README has no ```sh block');
  // The first code block must come before any section: it is what a newcomer sees first.
  expect(readme.indexOf(block[0])).toBeLessThan(readme.indexOf('\n## '));
  return block[1]!
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

describe('README quick start', () => {
  const clone = mkdtempSync(path.join(os.tmpdir(), 'pgferry-readme-'));
  afterAll(() => rmSync(clone, { recursive: true, force: true }));

  it('names exactly two commands: the demo and the tests, and CI runs the test command', () => {
    const cmds = quickStart();
    expect(cmds).toHaveLength(2);
    expect(cmds[0]).toMatch(/npm run demo$/);
    expect(cmds[1]).toMatch(/npm test$/);
    const ci = readFileSync(path.join(repoRoot, '.ci/run'), 'utf8');
    for (const part of cmds[1]!.split('&&').map((s) => s.trim())) expect(ci).toContain(part);
  });

  it.skipIf(!existsSync(path.join(repoRoot, '.git')))(
    'runs the demo command as written in a fresh clone',
    async () => {
      const demo = quickStart()[0]!;
      await execa('git', ['clone', '--quiet', '--no-hardlinks', repoRoot, clone]);
      const r = await execa('bash', ['-c', demo], {
        cwd: clone,
        reject: false,
        env: { ...process.env, CI: 'true', NO_COLOR: '1', PGFERRY_SOURCE: undefined, PGFERRY_TARGET: undefined },
        stdin: 'ignore',
        timeout: 600_000,
      });
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.exitCode, output.slice(-4000)).toBe(0);
      expect(r.stdout).toContain('verify passed, the target equals the source');
      // The demo leaves nothing behind.
      expect(existsSync(path.join(clone, '.pgferry-demo'))).toBe(false);
    },
    660_000,
  );
});
