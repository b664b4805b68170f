/**
 * Run the built CLI as a user would: `node dist/cli/main.js …`, no TTY,
 * capturing stdout, stderr and the exit code. `npm test` builds first.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(repoRoot, 'dist/cli/main.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
}

function baseEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, NO_COLOR: undefined, FORCE_COLOR: undefined, ...extra };
  // Never let the developer's own settings leak into a test.
  for (const k of ['PGFERRY_SOURCE', 'PGFERRY_TARGET', 'PGPASSWORD', 'PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGPASSFILE', 'PGSSLMODE']) {
    if (!(k in extra)) delete env[k];
  }
  return env;
}

export function startCli(args: string[], opts: CliOptions = {}): ResultPromise {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run npm run build (npm test does)`);
  return execa(process.execPath, [cliPath, ...args], {
    env: baseEnv(opts.env),
    extendEnv: false,
    cwd: opts.cwd ?? repoRoot,
    reject: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : 'pipe',
    timeout: opts.timeoutMs ?? 170_000,
    stripFinalNewline: false,
  } as never) as unknown as ResultPromise;
}

export async function runCliProcess(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const r = (await startCli(args, opts)) as unknown as { exitCode?: number; stdout: string; stderr: string };
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}
