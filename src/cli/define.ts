/** The shape of one subcommand: yargs wiring plus a handler that returns an exit code. */
import type { Argv } from 'yargs';
import type { CommandContext } from './context.js';
import type { GlobalArgs } from './options.js';

export interface CommandDefinition<A = Record<string, unknown>> {
  /** yargs command string, e.g. "validate" or "list [database]". */
  command: string;
  describe: string;
  builder?: (y: Argv<GlobalArgs>) => Argv<GlobalArgs>;
  examples?: [string, string][];
  /** Text after the options in --help. */
  epilog?: string;
  run: (ctx: CommandContext, argv: GlobalArgs & A) => Promise<number>;
}

export function defineCommand<A>(def: CommandDefinition<A>): CommandDefinition<A> {
  return def;
}
