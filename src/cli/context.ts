/**
 * What a command handler gets: parsed flags, the Output, the shutdown signal,
 * whether it may prompt, and the two connections (resolved lazily, so
 * commands that need only one side never ask for the other).
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { PgferryConfig } from '../config/file.js';
import { applyOptionLayers, pickSetting, SETTING_ENV } from '../config/precedence.js';
import { UsageError } from '../errors.js';
import { shutdownSignal } from '../lifecycle.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../postgres/conninfo.js';
import { defaultedOptions, type GlobalArgs } from './options.js';
import { Output } from './render/output.js';
import { preloadProgress } from './render/tasks.js';

export type Side = 'source' | 'target';

export interface CommandContext {
  argv: GlobalArgs;
  out: Output;
  signal: AbortSignal;
  env: NodeJS.ProcessEnv;
  /** May we ask questions? (TTY on stdin and stdout, no CI, no --no-interactive / --yes) */
  interactive: boolean;
  stateDir: string;
  pgBinDir: string | undefined;
  /** The connection string of a side, or undefined when none was given. */
  connectionString(side: Side): string | undefined;
  /** The resolved connection of a side; exits 2 naming the flag when none was given. */
  conn(side: Side): ResolvedConnInfo;
  hasConn(side: Side): boolean;
  /** The --config file, when one was given (its settings sit between defaults and PGFERRY_*). */
  config?: PgferryConfig;
}

function readConnFile(file: string, flag: string, out: Output): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    if ((statSync(file).mode & 0o077) !== 0) out.warn(`${flag} "${file}" is readable by other users; chmod 600 it`);
  } catch {
    /* stat raced with removal: reading worked, go on */
  }
  const line = text.split(/\r?\n/).map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
  if (!line) throw new UsageError(`${flag}: "${file}" holds no connection string`);
  return line;
}

/**
 * The configuration file module, loaded only when a file is given: its
 * schema library is a good part of the CLI's startup time.
 */
export async function loadConfig(file: string): Promise<PgferryConfig> {
  const { loadConfigFile } = await import('../config/file.js');
  return loadConfigFile(file);
}

export async function createContext(argv: GlobalArgs, env: NodeJS.ProcessEnv = process.env): Promise<CommandContext> {
  const out = new Output({ json: argv.json, verbose: argv.verbose, quiet: argv.quiet, color: argv.color, env });
  const stdinTty = !!process.stdin.isTTY;
  const interactive = argv.interactive !== false && !argv.yes && !env.CI && stdinTty && !!process.stdout.isTTY && !argv.json;
  const resolved = new Map<Side, ResolvedConnInfo>();
  const config = argv.config ? await loadConfig(argv.config) : undefined;
  for (const w of config?.warnings ?? []) out.warn(`${config!.displayPath}: ${w}`);
  // Options that commands define (--jobs, --max-lag, --applier): PGFERRY_* and the file fill those not given as flags.
  applyOptionLayers(argv as { jobs?: unknown; maxLag?: unknown; applier?: unknown }, env, config?.settings, defaultedOptions(argv));

  // Each setting: flag > PGFERRY_* > the file > default (src/config/precedence.ts).
  const connectionString = (side: Side): string | undefined => {
    const direct = side === 'source' ? argv.source : argv.target;
    const file = side === 'source' ? argv.sourceFile : argv.targetFile;
    if (direct !== undefined && file !== undefined) {
      throw new UsageError(`give either --${side} or --${side}-file, not both`);
    }
    const fileSetting = config?.settings[side === 'source' ? 'sourceFile' : 'targetFile'];
    const fileValue = fileSetting !== undefined ? { read: fileSetting } : config?.settings[side];
    const { value } = pickSetting<string | { read: string } | undefined>({
      flag: file !== undefined ? { read: file } : direct,
      env: env[SETTING_ENV[side]] || undefined,
      file: fileValue,
      default: undefined,
    });
    if (typeof value !== 'object') return value;
    return readConnFile(value.read, value.read === file ? `--${side}-file` : `${config!.displayPath}: ${side}_file`, out);
  };

  // A password file is looked up per side; the same problem with it is said once.
  const warned = new Set<string>();
  const warnOnce = (message: string) => {
    if (warned.has(message)) return;
    warned.add(message);
    out.warn(message);
  };
  const ctx: CommandContext = {
    argv,
    out,
    signal: shutdownSignal,
    env,
    interactive,
    stateDir: path.resolve(
      pickSetting({ flag: argv.stateDir, env: env[SETTING_ENV.stateDir] || undefined, file: config?.settings.stateDir, default: './.pgferry' }).value,
    ),
    pgBinDir: pickSetting({ flag: argv.pgBinDir, env: env[SETTING_ENV.pgBinDir] || undefined, file: config?.settings.pgBinDir, default: undefined }).value,
    config,
    connectionString,
    hasConn: (side) => connectionString(side) !== undefined,
    conn(side) {
      const cached = resolved.get(side);
      if (cached) return cached;
      const s = connectionString(side);
      if (s === undefined) {
        throw new UsageError(`no ${side} connection given`, {
          hint: `pass --${side} postgresql://user@host/db, --${side}-file FILE, or set PGFERRY_${side.toUpperCase()}`,
        });
      }
      const r = resolveConnInfo(parseConnInfo(s, `--${side}`), env, warnOnce);
      resolved.set(side, r);
      return r;
    },
  };
  await preloadProgress(ctx);
  return ctx;
}
