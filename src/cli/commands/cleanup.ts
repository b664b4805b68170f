/** `pgferry cleanup`: list what pgferry created for the migration, confirm, drop it on both sides. */
import type { Argv } from 'yargs';
import type { CleanupItem, CleanupReport } from '../../pipeline/cleanup/index.js';
import { confirm } from '../confirm.js';
import type { CommandContext } from '../context.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { createProgress } from '../render/tasks.js';
import { explicitScope, withDatabaseScopeOptions, type ScopeArgs } from '../scope-options.js';

interface CleanupArgs extends ScopeArgs {
  dryRun: boolean;
}

const KIND_TEXT: Record<CleanupItem['kind'], string> = {
  subscription: 'subscription',
  origin: 'replication origin',
  publication: 'publication',
  slot: 'replication slot',
  'tablesync-slot': 'table synchronisation slot',
  'mask-trigger': 'masking trigger on',
  'timestamp-state': 'timestamp sync state: schema',
  state: 'state file',
};

function itemLine(i: CleanupItem): string {
  if (i.side === 'local') return `${KIND_TEXT[i.kind]} ${i.name}`;
  return `${i.side} database "${i.database}": ${KIND_TEXT[i.kind]} ${i.name}`;
}

function render(out: Output, r: CleanupReport): void {
  if (!r.items.length) {
    out.print('Nothing to clean up: no pgferry object of this migration exists.');
    return;
  }
  out.print(r.dryRun ? 'Would drop:' : 'Dropped:');
  for (const i of r.items) out.print(`  ${itemLine(i)}`);
}

export const cleanupCommand = defineCommand<CleanupArgs>({
  command: 'cleanup',
  describe: 'Drop everything pgferry created for the migration: subscription, publication, slots, state files',
  builder: (y: Argv<GlobalArgs>) =>
    withDatabaseScopeOptions(y).option('dry-run', { type: 'boolean', default: false, describe: 'List what would be dropped; drop nothing' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry cleanup --yes', 'after cutover, from the folder with init\'s state'],
    ['pgferry cleanup --source "$SRC" --target "$DST" --dry-run', 'what pgferry left on this pair, by name'],
  ],
  epilog:
    'Objects are recognised by the names pgferry gives them, so nothing else is touched. The subscription is disabled and detached from ' +
    'its slot before it is dropped; then the publication and the slots go. Without a terminal, add --yes.',
  async run(ctx: CommandContext, argv) {
    const { runCleanup } = await import('../../pipeline/cleanup/index.js');
    const scope = await explicitScope(argv, ctx.config);
    const progress = createProgress(ctx);
    let report: CleanupReport;
    try {
      report = await runCleanup({
        source: ctx.conn('source'),
        target: ctx.conn('target'),
        stateDir: ctx.stateDir,
        scope,
        dryRun: argv.dryRun,
        progress,
        confirm: async (items) => {
          if (!ctx.out.json && !ctx.argv.yes) {
            ctx.out.print('pgferry will drop:');
            for (const i of items) ctx.out.print(`  ${itemLine(i)}`);
          }
          return confirm(ctx, `Drop these ${items.length} objects?`, '--yes');
        },
      });
    } finally {
      progress.done();
    }
    if (ctx.out.json) ctx.out.emitJson(report);
    else render(ctx.out, report);
    return 0;
  },
});
