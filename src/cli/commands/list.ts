/** `pgferry list [database]`: what the source holds, and what of it is in scope. */
import { scopeHash } from '../../config/scope.js';
import { UsageError } from '../../errors.js';
import { formatColumns, formatRows } from '../render/format.js';
import { formatBytes } from '../../units.js';
import type { DatabaseListing, TableEntry, TableListing } from '../../pipeline/list/index.js';
import { displayName } from '../../postgres/identifiers.js';
import type { CommandContext } from '../context.js';
import { defineCommand } from '../define.js';
import { withTableScopeOptions, scopeSpecFromArgs, type ScopeArgs } from '../scope-options.js';
import type { Output } from '../render/output.js';
import { withSpinner } from '../render/tasks.js';

interface ListArgs extends ScopeArgs {
  database?: string;
}

function scopeLabel(t: TableEntry): string {
  if (!t.inScope) return 'excluded';
  if (t.schemaOnly) return 'schema only';
  if (t.filter !== null) return 'filtered';
  if (t.timeFilter) return 'recent rows';
  return 'copied';
}

function keyLabel(t: TableEntry): string {
  return t.key.kind === 'none' ? 'none' : `${t.key.kind} (${t.key.columns.join(', ')})`;
}

function identityLabel(t: TableEntry): string {
  return t.replicaIdentityUsable ? t.replicaIdentity : `${t.replicaIdentity} (no row identity: UPDATE/DELETE fail once published)`;
}

function printDatabases(out: Output, l: DatabaseListing): void {
  out.print(`Databases on ${l.endpoint.replace(/\/[^/]*$/, '')} (PostgreSQL ${l.serverVersion})`);
  out.print();
  const rows = [['in scope', 'database', 'size', 'owner', 'encoding']];
  for (const d of l.databases) {
    rows.push([d.inScope ? '✓' : '', d.name + (d.connectionDatabase ? ' (connection)' : ''), formatBytes(d.bytes), d.owner, d.encoding]);
  }
  for (const line of formatColumns(rows)) out.print(`  ${line}`);
  const n = l.databases.filter((d) => d.inScope).length;
  out.print();
  out.print(`${n} of ${l.databases.length} database${l.databases.length === 1 ? '' : 's'} in scope. The tables of one: pgferry list DATABASE`);
}

function printTables(out: Output, l: TableListing): void {
  out.print(`Tables of "${l.database}" on ${l.endpoint}`);
  if (!l.databaseInScope) out.print(`(the database itself is not in scope: add --include-databases ${l.database})`);
  out.print();
  if (!l.tables.length) {
    out.print('  no user tables');
    return;
  }
  const rows = [['scope', 'table', 'rows', 'size', 'key', 'replica identity', 'filter']];
  for (const t of l.tables) {
    const name = displayName(t.schema, t.name) + (t.kind === 'partitioned' ? ` (${t.partitions} partitions)` : '') + (t.unlogged ? ' (unlogged)' : '');
    const filter = t.filter !== null ? `WHERE ${t.filter}` : t.timeFilter ? `${t.timeFilter.column}: last ${t.timeFilter.window}` : '';
    rows.push([scopeLabel(t), name, formatRows(t.estimatedRows), formatBytes(t.bytes), keyLabel(t), identityLabel(t), filter]);
  }
  for (const line of formatColumns(rows)) out.print(`  ${line}`);
  for (const t of l.tables.filter((x) => x.masked.length)) out.print(`  masked: ${displayName(t.schema, t.name)}: ${t.masked.join(', ')}`);
  const count = (label: string) => l.tables.filter((t) => scopeLabel(t) === label).length;
  const parts = ['copied', 'filtered', 'recent rows', 'schema only', 'excluded'].map((k) => [k, count(k)] as const).filter(([, n]) => n > 0);
  const bytes = l.tables.filter((t) => t.inScope && !t.schemaOnly).reduce((a, t) => a + t.bytes, 0);
  out.print();
  out.print(`${l.tables.length} table${l.tables.length === 1 ? '' : 's'}: ${parts.map(([k, n]) => `${n} ${k}`).join(', ')}; ${formatBytes(bytes)} of rows in scope (before filters)`);
}

export const listCommand = defineCommand<ListArgs>({
  command: 'list [database]',
  describe: 'List the databases of the source, or the tables of one, and what is in scope',
  builder: (y) =>
    withTableScopeOptions(y)
      .positional('database', { type: 'string', describe: 'List the tables of this database (also: --database NAME)' })
      .option('database', { type: 'string', describe: 'List the tables of this database (also: --database NAME)' }),
  examples: [
    ['pgferry list --source postgresql://me@old-db/shop', 'databases with sizes; the one in the URL is in scope'],
    ['pgferry list shop --exclude-tables "public.tmp_*" --json', 'tables of shop with keys, sizes and scope, as JSON'],
    ['pgferry list shop --config replication.toml', 'what the file puts in scope'],
  ],
  async run(ctx: CommandContext, argv) {
    const { listDatabases, listDatabaseTables } = await import('../../pipeline/list/index.js');
    const spec = await scopeSpecFromArgs(argv, undefined, ctx.config);
    // The fingerprint init records: the same choices made by flags, a file or the interactive mode give the same one.
    const scopeFingerprint = scopeHash(spec);
    const source = ctx.conn('source');
    const database = argv.database;
    if (database !== undefined && !database.trim()) throw new UsageError('list: empty database name');
    if (database === undefined) {
      const l = await withSpinner(ctx.out, 'Reading databases', () => listDatabases(source, spec));
      if (ctx.out.json) ctx.out.emitJson({ command: 'list', scopeFingerprint, ...l });
      else printDatabases(ctx.out, l);
      return 0;
    }
    const l = await withSpinner(ctx.out, `Reading tables of ${database}`, () => listDatabaseTables(source, database, spec));
    if (ctx.out.json) ctx.out.emitJson({ command: 'list', scopeFingerprint, ...l });
    else printTables(ctx.out, l);
    return 0;
  },
});
