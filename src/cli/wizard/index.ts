/**
 * Interactive mode: the first run of validate, init or sync in a terminal asks
 * what to copy instead of expecting flags. It only reads the source; nothing
 * is written until the user confirms (and a TOML file only when asked to), so
 * Ctrl-C at any question leaves no trace (exit 130).
 *
 * Steps: databases (sizes; the one in the URL preselected) → per database,
 * tables to leave out (row estimates, sizes) → structure-only tables →
 * optional time filters (a timestamp column and a window) → summary →
 * confirm. It returns the very ScopeSpec the equivalent flags build, prints
 * those flags, and offers to save the choices as a configuration file.
 */
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { checkbox, confirm, input, select } from '@inquirer/prompts';
import { parseConfigText } from '../../config/file.js';
import { emptyScope, parseWindow, rulesFor, scopeHash, type ScopeSpec } from '../../config/scope.js';
import type { UsageError } from '../../errors.js';
import { formatColumns, formatRows } from '../render/format.js';
import { formatBytes } from '../../units.js';
import { listDatabases, listDatabaseTables, type TableEntry } from '../../pipeline/list/index.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';
import type { CommandContext } from '../context.js';
import { withoutPassword } from '../../postgres/redact.js';
import { withSpinner } from '../render/tasks.js';
import { markConfirmed, type WizardKind } from './outcome.js';
import { flagsForSpec, shellQuote, specFromChoices, specToToml, type DatabaseChoices, type WizardChoices } from './plan.js';
import { askAboutRefusals } from './refusals.js';

const CONFIRM: Record<WizardKind, string> = {
  validate: 'Run the checks with this scope?',
  init: 'Copy this to the target?',
  sync: 'Replicate this scope?',
};

interface PromptContext {
  signal: AbortSignal;
  output: NodeJS.WritableStream;
}

/** A row filter over these columns can be published without breaking UPDATE/DELETE on the source. */
function publishable(t: TableEntry, columns: string[]): boolean {
  return t.replicaIdentity === 'full' || columns.every((c) => t.replicaIdentityColumns.includes(c));
}

type Key = string;
const keyOf = (t: { schema: string; name: string }): Key => `${t.schema}\u0000${t.name}`;

function tableLabel(t: TableEntry): string[] {
  const notes = [t.key.kind === 'none' ? 'no key' : '', t.kind === 'partitioned' ? `${t.partitions} partitions` : '', t.unlogged ? 'unlogged' : '']
    .filter(Boolean)
    .join(', ');
  return [displayName(t.schema, t.name), formatRows(t.estimatedRows) + ' rows', formatBytes(t.bytes), notes];
}

/** Choices with aligned columns. */
function aligned<T>(items: T[], cells: (x: T) => string[]): string[] {
  return formatColumns(items.map(cells));
}


/** The command line that runs the same thing without questions (raw arguments minus --interactive, plus scope). */
export function equivalentCommand(rawArgs: readonly string[], kind: WizardKind, scopeArgs: string[]): string {
  const out: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const a = rawArgs[i]!;
    if (a === '--interactive' || a === '--no-interactive' || a === '--yes' || a === '-y') continue;
    const m = /^--(source|target)(=(.*))?$/.exec(a);
    if (m) {
      const value = m[2] !== undefined ? m[3]! : rawArgs[++i];
      if (value !== undefined) out.push(`--${m[1]}`, withoutPassword(value));
      continue;
    }
    out.push(a);
  }
  if (!out.includes(kind)) out.unshift(kind);
  out.push(...scopeArgs, '--no-interactive');
  if (kind !== 'validate') out.push('--yes');
  return ['pgferry', ...out].map(shellQuote).join(' ');
}

async function chooseDatabases(ctx: CommandContext, initial: ScopeSpec, context: PromptContext): Promise<string[]> {
  const source = ctx.conn('source');
  const listing = await withSpinner(ctx.out, 'Reading the databases of the source', () => listDatabases(source, initial));
  const rows = aligned(listing.databases, (d) => [d.name, formatBytes(d.bytes), d.connectionDatabase ? '(in the connection)' : '']);
  if (listing.databases.length === 1) return [listing.databases[0]!.name];
  return checkbox(
    {
      message: 'Databases to copy',
      choices: listing.databases.map((d, i) => ({ name: rows[i]!, value: d.name, checked: d.inScope, short: d.name })),
      required: true,
      pageSize: 15,
    },
    context,
  );
}

async function chooseTables(ctx: CommandContext, database: string, initial: ScopeSpec, context: PromptContext): Promise<{ choices: DatabaseChoices; tables: TableEntry[] }> {
  const source = ctx.conn('source');
  const listing = await withSpinner(ctx.out, `Reading the tables of ${database}`, () =>
    listDatabaseTables(source, database, { ...emptyScope(), perDatabase: { [database]: rulesFor(initial, database) } }),
  );
  const tables = listing.tables;
  const choices: DatabaseChoices = { database, exclude: [], schemaOnly: [], timeFilters: [] };
  if (!tables.length) {
    ctx.out.info(`${database}: no user tables (its schema is copied)`);
    return { choices, tables };
  }
  const labels = aligned(tables, tableLabel);
  const excluded = new Set(
    await checkbox(
      {
        message: `${database}: tables to leave out (space to mark, enter when done; none marked copies all ${tables.length})`,
        choices: tables.map((t, i) => ({ name: labels[i]!, value: keyOf(t), checked: !t.inScope, short: displayName(t.schema, t.name) })),
        pageSize: 15,
      },
      context,
    ),
  );
  choices.exclude = tables.filter((t) => excluded.has(keyOf(t)));
  const kept = tables.filter((t) => !excluded.has(keyOf(t)));
  if (!kept.length) return { choices, tables };

  const keptLabels = aligned(kept, tableLabel);
  const structureOnly = new Set(
    await checkbox(
      {
        message: `${database}: tables to copy as structure only, without rows`,
        choices: kept.map((t, i) => ({ name: keptLabels[i]!, value: keyOf(t), checked: t.schemaOnly, short: displayName(t.schema, t.name) })),
        pageSize: 15,
      },
      context,
    ),
  );
  choices.schemaOnly = kept.filter((t) => structureOnly.has(keyOf(t)));
  // Row filters given with --interactive stay (on tables still copied with rows): there is no question for predicates.
  choices.tableFilters = kept
    .filter((t) => !structureOnly.has(keyOf(t)) && t.filter !== null)
    .map((t) => ({ schema: t.schema, name: t.name, where: t.filter! }));

  const timed = kept.filter((t) => !structureOnly.has(keyOf(t)) && t.filter === null && t.timeColumns.length > 0);
  const preset = timed.filter((t) => t.timeFilter);
  for (const t of preset) choices.timeFilters.push({ schema: t.schema, name: t.name, column: t.timeFilter!.column, window: t.timeFilter!.window });
  if (!timed.length) return { choices, tables };
  if (!(await confirm({ message: `${database}: copy only recent rows of some tables (time filter)?`, default: preset.length > 0 }, context))) {
    choices.timeFilters = [];
    return { choices, tables };
  }
  for (;;) {
    const open = timed.filter((t) => !choices.timeFilters.some((f) => f.schema === t.schema && f.name === t.name));
    if (!open.length) break;
    const openLabels = aligned(open, (t) => [...tableLabel(t).slice(0, 3), t.timeColumns.join(', '), publishable(t, t.timeColumns) ? '' : 'needs REPLICA IDENTITY FULL to replicate']);
    const pick = await select(
      {
        message: `${database}: table to filter by time${choices.timeFilters.length ? ` (${choices.timeFilters.length} so far)` : ''}`,
        choices: [
          { name: 'done: no more time filters', value: '' },
          ...open.map((t, i) => ({ name: openLabels[i]!, value: keyOf(t), short: displayName(t.schema, t.name) })),
        ],
        default: choices.timeFilters.length ? '' : keyOf(open[0]!),
        pageSize: 15,
      },
      context,
    );
    if (!pick) break;
    const t = open.find((x) => keyOf(x) === pick)!;
    const column =
      t.timeColumns.length === 1
        ? t.timeColumns[0]!
        : await select({ message: `${displayName(t.schema, t.name)}: timestamp column`, choices: t.timeColumns.map((c) => ({ name: c, value: c })) }, context);
    const window = await input(
      {
        message: `${displayName(t.schema, t.name)}: copy rows whose ${column} is within the last (e.g. 6 months, 30 days)`,
        default: '6 months',
        validate: (v) => {
          try {
            parseWindow(v);
            return true;
          } catch (err) {
            return (err as UsageError).hint ?? (err as Error).message;
          }
        },
      },
      context,
    );
    choices.timeFilters.push({ schema: t.schema, name: t.name, column, window: parseWindow(window) });
    if (!publishable(t, [column])) {
      ctx.out.warn(
        `${displayName(t.schema, t.name)}: ${column} is not part of the replica identity, so the filter cannot be replicated as it is: ` +
          `run ALTER TABLE ${qualifiedName(t.schema, t.name)} REPLICA IDENTITY FULL on the source first, or copy once with init --no-sync`,
      );
    }
  }
  return { choices, tables };
}

function printSummary(ctx: CommandContext, kind: WizardKind, picked: { choices: DatabaseChoices; tables: TableEntry[] }[]): void {
  const out = ctx.out;
  out.print();
  out.print(out.style('bold', `Scope for ${kind}`));
  for (const { choices: c, tables } of picked) {
    const ex = new Set(c.exclude.map(keyOf));
    const so = new Set(c.schemaOnly.map(keyOf));
    const copied = tables.filter((t) => !ex.has(keyOf(t)));
    const rowsBytes = copied.filter((t) => !so.has(keyOf(t))).reduce((a, t) => a + t.bytes, 0);
    out.print(`  ${c.database}: ${copied.length} of ${tables.length} tables, ${formatBytes(rowsBytes)} of rows${c.timeFilters.length ? ' at most' : ''}`);
    if (c.exclude.length) out.print(`    left out:       ${c.exclude.map((t) => displayName(t.schema, t.name)).join(', ')}`);
    if (c.schemaOnly.length) out.print(`    structure only: ${c.schemaOnly.map((t) => displayName(t.schema, t.name)).join(', ')}`);
    for (const f of c.timeFilters) out.print(`    recent rows:    ${displayName(f.schema, f.name)} where ${f.column} is within the last ${f.window}`);
    for (const f of c.tableFilters ?? []) out.print(`    rows where:     ${displayName(f.schema, f.name)}: ${f.where}`);
  }
  out.print();
}

async function offerToSave(ctx: CommandContext, kind: WizardKind, spec: ScopeSpec, context: PromptContext): Promise<string | undefined> {
  const needed = flagsForSpec(spec) === undefined;
  const save = await confirm(
    {
      message: needed
        ? 'Different rules per database need a configuration file to be repeated. Save these choices as a TOML file?'
        : 'Save these choices as a TOML file (for --config)?',
      default: needed,
    },
    context,
  );
  if (!save) return undefined;
  for (;;) {
    const file = await input({ message: 'File name', default: 'pgferry-scope.toml', validate: (v) => (v.trim() ? true : 'a file name, please') }, context);
    const target = path.resolve(file.trim());
    if (existsSync(target) && !(await confirm({ message: `${file.trim()} exists. Replace it?`, default: false }, context))) continue;
    const text = specToToml(spec, [
      `pgferry scope, saved by the interactive mode of \`pgferry ${kind}\`.`,
      'Use it with --config; see replication-config.example.toml for every key.',
    ]);
    // The file must mean exactly what was chosen: read it back before writing it.
    if (scopeHash(parseConfigText(text, file.trim()).scope) !== scopeHash(spec)) throw new Error('internal error: the saved scope would differ from the chosen one');
    writeFileSync(target, text);
    ctx.out.info(`saved ${file.trim()}`);
    return file.trim();
  }
}

/**
 * Ask what to copy. Returns the ScopeSpec, or undefined when the user
 * declines at the end (nothing was done). `initial` preselects (e.g. from
 * flags given together with --interactive).
 */
export async function runWizard(ctx: CommandContext, kind: WizardKind, initial: ScopeSpec = emptyScope()): Promise<ScopeSpec | undefined> {
  // Questions go to stderr, like every confirmation: stdout carries results.
  const context = { signal: ctx.signal, output: process.stderr };
  const source = ctx.conn('source');
  const databases = await chooseDatabases(ctx, initial, context);
  const picked: { choices: DatabaseChoices; tables: TableEntry[] }[] = [];
  for (const db of databases) picked.push(await chooseTables(ctx, db, initial, context));
  // What init or sync would refuse is asked about now, before the summary and the confirmation.
  const extra = await askAboutRefusals(ctx, kind, picked, context);
  const wizardChoices: WizardChoices = { connectionDatabase: source.dbname, databases: picked.map((p) => p.choices) };
  const spec = specFromChoices(wizardChoices);

  printSummary(ctx, kind, picked);
  if (extra.length) ctx.out.print(`  with ${extra.join(' ')}\n`);
  const dryRun = (ctx.argv as { dryRun?: boolean }).dryRun === true;
  if (!(await confirm({ message: dryRun ? 'Show the plan for this scope?' : CONFIRM[kind], default: true }, context))) return undefined;
  markConfirmed(ctx);

  const flags = flagsForSpec(spec);
  const saved = await offerToSave(ctx, kind, spec, context);
  const raw = process.argv.slice(2);
  ctx.out.print();
  ctx.out.print('The same without questions:');
  if (flags) ctx.out.print(`  ${equivalentCommand(raw, kind, [...flags, ...extra])}`);
  if (saved) ctx.out.print(`  ${equivalentCommand(raw, kind, ['--config', saved, ...extra])}`);
  if (!flags && !saved) ctx.out.print('  (different rules per database: save them to a file and pass --config FILE)');
  ctx.out.print(ctx.out.style('dim', `  scope fingerprint ${scopeHash(spec)}`));
  ctx.out.print();
  return spec;
}
