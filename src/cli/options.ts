/**
 * Options shared by every command. Each command file adds its own; nothing
 * here touches a database.
 */
import type { Argv, Options } from 'yargs';

export interface GlobalArgs {
  source?: string;
  target?: string;
  sourceFile?: string;
  targetFile?: string;
  pgBinDir?: string;
  stateDir: string;
  json: boolean;
  verbose: boolean;
  quiet: boolean;
  color?: boolean;
  yes: boolean;
  interactive?: boolean;
  /** --config FILE.toml: scope and settings; flags and PGFERRY_* variables override it. */
  config?: string;
}

const defaulted = new WeakMap<object, ReadonlySet<string>>();

/**
 * Options whose value is yargs' default rather than given on the command
 * line: those a configuration file or PGFERRY_* variable may still set.
 */
export function defaultedOptions(argv: object): ReadonlySet<string> {
  return defaulted.get(argv) ?? new Set();
}

export const CONNECTION_GROUP = 'Connections:';
export const OUTPUT_GROUP = 'Output and behaviour:';
export const SCOPE_GROUP = 'Scope:';

export function withGlobalOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('source', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'Source connection: postgres URL or libpq keyword string [env: PGFERRY_SOURCE]',
    })
    .option('target', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'Target connection: postgres URL or libpq keyword string [env: PGFERRY_TARGET]',
    })
    .option('source-file', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'Read the source connection string from this file (keeps secrets out of shell history)',
    })
    .option('target-file', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'Read the target connection string from this file',
    })
    .option('config', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'TOML file with the scope and settings (see replication-config.example.toml); flags and PGFERRY_* override it',
    })
    .option('pg-bin-dir', {
      type: 'string',
      group: CONNECTION_GROUP,
      describe: 'Folder with pg_dump, pg_restore, pg_dumpall and psql [env: PGFERRY_PG_BIN_DIR]',
    })
    .option('state-dir', {
      type: 'string',
      group: OUTPUT_GROUP,
      describe: 'Where pgferry keeps run state [env: PGFERRY_STATE_DIR]',
      default: undefined as string | undefined,
      defaultDescription: './.pgferry',
    })
    .option('json', { type: 'boolean', group: OUTPUT_GROUP, default: false, describe: 'Print one JSON document on stdout, nothing else' })
    .option('verbose', { alias: 'v', type: 'boolean', group: OUTPUT_GROUP, default: false, describe: 'Show more detail (on stderr)' })
    .option('quiet', { alias: 'q', type: 'boolean', group: OUTPUT_GROUP, default: false, describe: 'Only results and errors' })
    .option('color', {
      type: 'boolean',
      group: OUTPUT_GROUP,
      describe: 'Colours on a terminal; --no-color (or NO_COLOR=1) turns them off',
    })
    .option('yes', { alias: 'y', type: 'boolean', group: OUTPUT_GROUP, default: false, describe: 'Answer yes to every confirmation' })
    .option('interactive', {
      type: 'boolean',
      group: OUTPUT_GROUP,
      describe: '--no-interactive never prompts; a needed confirmation without --yes exits 2',
    })
    // yargs hands middleware the parser too (its typings say otherwise): it knows which values are defaults.
    .middleware(((argv: object, y: { parsed?: { defaulted?: Record<string, boolean> } } | undefined) => {
      defaulted.set(argv, new Set(Object.keys(y?.parsed?.defaulted ?? {})));
    }) as never) as unknown as Argv<T>;
}

/**
 * --jobs of a command. No yargs type: "abc" reaches parseJobs as typed (in
 * applyOptionLayers, with the other layers), so the error can echo it; yargs'
 * number type would turn it into NaN first.
 */
export function jobsOption(defaultJobs: number, group: string, describe: string): Options {
  return { alias: 'j', default: defaultJobs, group, describe, requiresArg: true };
}
