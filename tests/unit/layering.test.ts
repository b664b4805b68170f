/**
 * The layering rule of docs/architecture.md, read from the import graph:
 * cli → pipeline steps → pipeline/shared → postgres, state, config, local.
 * A step never imports another step; nothing below the CLI imports the CLI.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/cli.js';

const SRC = path.join(repoRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const f = path.join(dir, e);
    return statSync(f).isDirectory() ? sourceFiles(f) : f.endsWith('.ts') ? [f] : [];
  });
}

/** Every relative import of a file (static, type-only, re-export and dynamic), as paths under src/. */
export function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  return specs.map((s) => path.relative(SRC, path.resolve(path.dirname(file), s)).replace(/\.js$/, '.ts'));
}

/** The layer of a path under src/: "cli", "step:<name>", "shared", or the lower layer's folder. */
export function layerOf(rel: string): string {
  const parts = rel.split(path.sep);
  if (parts[0] === 'pipeline') return parts.length === 2 ? 'shared' : parts[1] === 'shared' ? 'shared' : `step:${parts[1]}`;
  return parts.length === 1 ? 'root' : parts[0]!;
}

/** Why an import breaks the layering, or null when it is allowed. */
export function violation(from: string, to: string): string | null {
  const a = layerOf(from);
  const b = layerOf(to);
  if (a === 'cli') return null;
  if (b === 'cli') return 'only the CLI may import src/cli';
  if (a.startsWith('step:') && b.startsWith('step:') && a !== b) return 'a step imports another step (move the shared part to src/pipeline/shared)';
  if (a === 'shared' && b.startsWith('step:')) return 'src/pipeline/shared imports a step';
  if (!a.startsWith('step:') && a !== 'shared' && (b.startsWith('step:') || b === 'shared')) return 'a lower layer imports the pipeline';
  return null;
}

describe('layering', () => {
  it('classifies paths and imports', () => {
    expect(layerOf('pipeline/init/run.ts')).toBe('step:init');
    expect(layerOf('pipeline/shared/pairs.ts')).toBe('shared');
    expect(layerOf('postgres/connect.ts')).toBe('postgres');
    expect(violation('pipeline/init/run.ts', 'pipeline/sync/run.ts')).toMatch(/another step/);
    expect(violation('pipeline/init/run.ts', 'pipeline/init/copy.ts')).toBeNull();
    expect(violation('pipeline/init/run.ts', 'pipeline/shared/pairs.ts')).toBeNull();
    expect(violation('pipeline/shared/pairs.ts', 'pipeline/verify/plan.ts')).toMatch(/shared imports a step/);
    expect(violation('pipeline/verify/verify.ts', 'cli/render/output.ts')).toMatch(/CLI/);
    expect(violation('postgres/tools.ts', 'pipeline/shared/progress.ts')).toMatch(/lower layer/);
    expect(violation('cli/commands/init.ts', 'pipeline/init/run.ts')).toBeNull();
    expect(importsOf(path.join(SRC, 'pipeline/x/a.ts'), "import type { A } from '../shared/b.js';\nconst m = await import('../../cli/c.js');"))
      .toEqual([path.join('pipeline', 'shared', 'b.ts'), path.join('cli', 'c.ts')]);
  });

  it('holds for every file under src/', () => {
    const broken: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = path.relative(SRC, file);
      for (const to of importsOf(file)) {
        const why = violation(from, to);
        if (why) broken.push(`${from} → ${to}: ${why}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
