/**
 * yargs wiring: global options, one module per subcommand, errors mapped to
 * exit codes. `runCli` is what the binary calls; tests call it too.
 */
import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { ExitCode, InterruptedError, PgferryError, UsageError } from '../errors.js';
import { installSignalHandlers, interruptExitCode, runCleanups } from '../lifecycle.js';
import { sqlstate, type PgLikeError } from '../postgres/errors.js';
import { redact } from '../postgres/redact.js';
import { commands } from './commands/index.js';
import { createContext } from './context.js';
import type { CommandDefinition } from './define.js';
import { withGlobalOptions, type GlobalArgs } from './options.js';
import { Output } from './render/output.js';

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return '0.0.0';
  }
}

/** Map any error to an exit code, printing it (as JSON too with --json). */
export function reportError(err: unknown, out: Output): number {
  const name = (err as { name?: string } | undefined)?.name;
  if (name === 'ExitPromptError' || name === 'AbortPromptError') {
    out.error('interrupted');
    return ExitCode.interrupted;
  }
  if (err instanceof InterruptedError) {
    out.error(err.message);
    const code = interruptExitCode();
    if (out.json) out.emitJson({ ok: false, error: { message: err.message, hint: null, exitCode: code } });
    return code;
  }
  if (err instanceof PgferryError) {
    out.error(err.message, err.hint);
    if (out.json) out.emitJson({ ok: false, error: { message: err.message, hint: err.hint ?? null, exitCode: err.exitCode } });
    return err.exitCode;
  }
  // A server error no step put into words: still PostgreSQL's DETAIL and HINT, which often say what to do.
  const pgErr = sqlstate(err) ? (err as PgLikeError) : undefined;
  const message = [err instanceof Error ? err.message : String(err), ...(pgErr?.detail ? [`DETAIL: ${pgErr.detail}`] : [])].join('\n');
  const hint = pgErr?.hint;
  out.error(message, hint);
  if (out.verbose && err instanceof Error && err.stack) out.debug(redact(err.stack));
  if (out.json) out.emitJson({ ok: false, error: { message, hint: hint ?? null, exitCode: ExitCode.failed } });
  return ExitCode.failed;
}

function register(parser: Argv<GlobalArgs>, def: CommandDefinition<never>, setExit: (code: number) => void, env: NodeJS.ProcessEnv): void {
  parser.command(
    def.command,
    def.describe,
    (y) => {
      let b = def.builder ? def.builder(y as Argv<GlobalArgs>) : (y as Argv<GlobalArgs>);
      for (const [cmd, desc] of def.examples ?? []) b = b.example(cmd, desc);
      if (def.epilog) b = b.epilog(def.epilog);
      return b;
    },
    async (argv) => {
      const ctx = await createContext(argv as unknown as GlobalArgs, env);
      setExit(await def.run(ctx, argv as never));
    },
  );
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** yargs' messages, made precise: "unknown command", flags once (not also in camelCase), with the help to read. */
export function usageFromYargs(msg: string | undefined, args: string[]): UsageError {
  const text = msg ?? 'invalid command line';
  const cmd = args.find((a) => !a.startsWith('-'));
  const known = commands.map((c) => c.command.split(' ')[0]);
  const unknown = /^Unknown arguments?: (.*)$/.exec(text);
  if (unknown) {
    const names = [...new Set(unknown[1]!.split(', ').map((n) => (n.length === 1 ? n : kebab(n))))];
    if (cmd && names.includes(cmd) && !known.includes(cmd)) {
      return new UsageError(`unknown command "${cmd}"`, { hint: `commands: ${known.join(', ')} (pgferry --help)` });
    }
    const flags = names.filter((n) => n !== cmd).map((n) => (n.length === 1 ? `-${n}` : `--${n}`));
    return new UsageError(`unknown option${flags.length > 1 ? 's' : ''} ${flags.join(', ')}`, {
      hint: `see pgferry ${cmd && known.includes(cmd) ? cmd : '<command>'} --help`,
    });
  }
  return new UsageError(text, { hint: `see pgferry ${cmd && known.includes(cmd) ? cmd : '<command>'} --help` });
}

/**
 * yargs renders a command's whole help text right after starting its handler, synchronously, only to keep it
 * for a failure message with help, which showHelpOnFail(false) never prints: 100–250 ms of every command's
 * start-up (sync's help is long). `--help` itself renders it afresh. Skipped when yargs' internals differ.
 */
function skipHelpCache(parser: unknown): void {
  type Internals = { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } | undefined } };
  const usage = (parser as Internals).getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}

export async function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  installSignalHandlers();
  let exitCode: number = ExitCode.ok;
  const plainOut = () =>
    new Output({ json: args.includes('--json'), color: args.includes('--no-color') ? false : undefined, env });
  const width = Math.min(110, process.stdout.columns || 100);
  const parser = withGlobalOptions(yargs(args) as unknown as Argv<GlobalArgs>)
    .scriptName('pgferry')
    // Every message of pgferry is English: yargs' own words (headings, [default: …]) too, whatever LANG says.
    .locale('en')
    .usage(
      'pgferry <command> [options]\n\n' +
        'Move a live PostgreSQL database to another server with zero downtime, and prove the copy is right.\n' +
        'validate → init → sync → status → verify → cleanup',
    )
    .version(packageVersion())
    .help()
    .alias('help', 'h')
    .strict()
    .demandCommand(1, 'name a command (see pgferry --help)')
    .recommendCommands()
    .wrap(width)
    .parserConfiguration({ 'boolean-negation': true })
    .exitProcess(false)
    .showHelpOnFail(false)
    .fail((msg, err) => {
      // yargs' own errors (YError: a missing argument, a bad choice) are usage errors too.
      if (err && err.name !== 'YError') throw err;
      throw usageFromYargs(msg ?? err?.message, args);
    })
    .epilog('Exit codes: 0 ok · 1 problems found · 2 usage/configuration · 3 cannot connect · 4 failed midway · 130 interrupted');
  for (const def of commands) register(parser, def as CommandDefinition<never>, (c) => (exitCode = c), env);
  skipHelpCache(parser);
  try {
    await parser.parseAsync();
  } catch (err) {
    exitCode = reportError(err, plainOut());
  } finally {
    runCleanups();
  }
  return exitCode;
}
