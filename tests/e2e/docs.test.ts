/** The documentation cannot drift: the flags reference is generated from --help, and README links resolve. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

describe('documentation', () => {
  it('docs/configuration.md lists every flag of every command as --help shows it', async () => {
    const r = await execa(process.execPath, [path.join(repoRoot, 'scripts/gen-flags-doc.mjs'), '--check'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('every relative link in README.md and docs/*.md points at a file that exists', () => {
    const files = ['README.md', 'docs/architecture.md', 'docs/configuration.md', 'docs/cutover-runbook.md', 'docs/reliability.md'];
    for (const f of files) {
      const text = readFileSync(path.join(repoRoot, f), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        expect(existsSync(path.resolve(repoRoot, path.dirname(f), target)), `${f} links to ${target}`).toBe(true);
      }
    }
  });
});
