/**
 * Scope flags shared by validate, init, sync, status, verify, cleanup and
 * list, and the one function that turns them into a ScopeSpec.
 */
import type { Argv } from 'yargs';
import { applyScopeFlags, hasScopeFlags } from '../config/precedence.js';
import { scopeFromFlags, type ScopeFlags, type ScopeSpec } from '../config/scope.js';
import type { PgferryConfig } from '../config/file.js';
import { loadConfig } from './context.js';
import { SCOPE_GROUP } from './options.js';

export function withDatabaseScopeOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('include-databases', {
      type: 'string',
      array: true,
      group: SCOPE_GROUP,
      describe: 'Databases to include (comma-separated or repeated); default: the database in the source connection',
    })
    .option('exclude-databases', { type: 'string', array: true, group: SCOPE_GROUP, describe: 'Databases to leave out' })
    .option('all-databases', {
      type: 'boolean',
      group: SCOPE_GROUP,
      describe: 'Every non-template database of the source server',
    }) as unknown as Argv<T>;
}

export function withTableScopeOptions<T>(y: Argv<T>): Argv<T> {
  return withDatabaseScopeOptions(y)
    .option('include-tables', {
      type: 'string',
      array: true,
      group: SCOPE_GROUP,
      describe: 'Only these tables: schema.table, * and ? wildcards; unqualified means schema public',
    })
    .option('exclude-tables', { type: 'string', array: true, group: SCOPE_GROUP, describe: 'Leave these tables out (same patterns)' })
    .option('schema-only-tables', {
      type: 'string',
      array: true,
      group: SCOPE_GROUP,
      describe: 'Copy the structure of these tables, not their rows',
    })
    .option('table-filter', {
      type: 'string',
      array: true,
      group: SCOPE_GROUP,
      describe: 'Copy only matching rows: "schema.table:SQL predicate" (repeatable)',
    })
    .option('time-filter', {
      type: 'string',
      array: true,
      group: SCOPE_GROUP,
      describe: 'Copy only recent rows: "schema.table:column:6 months" (cutoff fixed once by init)',
    }) as unknown as Argv<T>;
}

export type ScopeArgs = ScopeFlags & { config?: string };

/**
 * Flags (and --config) → ScopeSpec. Lowest first: `base` (e.g. the scope a
 * run recorded), then the configuration file, which replaces it, then the
 * flags (applyScopeFlags says how they override a file).
 */
export async function scopeSpecFromArgs(args: ScopeArgs, base?: ScopeSpec, loaded?: PgferryConfig): Promise<ScopeSpec> {
  if (args.config) {
    // A command has it already (CommandContext.config): the file is read once per run.
    const file = loaded ?? (await loadConfig(args.config));
    return applyScopeFlags(file.scope, args, file.displayPath);
  }
  if (base) return scopeFromFlags(args, base);
  return scopeFromFlags(args);
}

/**
 * The scope the user gave (--config or a scope flag), or undefined: then
 * status, sync and cleanup work on the scope the state directory recorded.
 */
export async function explicitScope(args: ScopeArgs, loaded?: PgferryConfig): Promise<ScopeSpec | undefined> {
  return args.config || hasScopeFlags(args) ? scopeSpecFromArgs(args, undefined, loaded) : undefined;
}
