/** `pgferry sequences`: set the target's sequences to the source's values (a cutover step). */
import type { Argv } from 'yargs';
import { ExitCode } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';
import { scopeSpecFromArgs, withDatabaseScopeOptions, type ScopeArgs } from '../scope-options.js';

interface SequencesArgs extends ScopeArgs {
  dryRun: boolean;
}

export const sequencesCommand = defineCommand<SequencesArgs>({
  command: 'sequences',
  describe: 'Set every sequence on the target to its value on the source (run at cutover, after writes stopped)',
  builder: (y: Argv<GlobalArgs>) =>
    withDatabaseScopeOptions(y).option('dry-run', {
      type: 'boolean',
      default: false,
      describe: 'Show what would be set; change nothing',
    }) as unknown as Argv<GlobalArgs>,
  examples: [['pgferry sequences --source "$SRC" --target "$DST"', 'after the application stopped writing to the source']],
  epilog:
    'Logical replication does not carry sequences. A target sequence is only ever moved forward, so running this again is harmless. ' +
    'Exit 0 when every source sequence exists on the target, 1 when some are missing there.',
  async run(ctx, argv) {
    const { runSequences } = await import('../../pipeline/sequences/index.js');
    const spec = await scopeSpecFromArgs(argv, undefined, ctx.config);
    const { databases: report, missing } = await runSequences({ source: ctx.conn('source'), target: ctx.conn('target'), scope: spec, dryRun: argv.dryRun });
    if (ctx.out.json) {
      ctx.out.emitJson({ command: 'sequences', dryRun: argv.dryRun, ok: missing === 0, databases: report });
    } else {
      for (const d of report) {
        ctx.out.print(`Sequences in ${d.database}${argv.dryRun ? ' (dry run)' : ''}:`);
        if (!d.sequences.length) ctx.out.print('  none');
        for (const s of d.sequences) {
          const name = displayName(s.schema, s.name);
          if (s.action === 'set') ctx.out.print(`  ${ctx.out.symbol('ok')} ${name}: ${s.targetBefore ?? 'unset'} → ${s.source}`);
          else if (s.action === 'unchanged') ctx.out.print(`  ${ctx.out.symbol('ok')} ${name}: ${s.targetBefore ?? 'unset'} (already at or past ${s.source ?? 'unset'})`);
          else ctx.out.print(`  ${ctx.out.symbol('fail')} ${name}: missing on the target`);
        }
      }
    }
    return missing ? ExitCode.problems : ExitCode.ok;
  },
});
