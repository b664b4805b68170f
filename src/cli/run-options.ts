/**
 * How validate, init and sync get their scope: the interactive mode when a
 * person sits at a terminal and said nothing about the scope, otherwise the
 * configuration file and flags. Both paths give the same ScopeSpec for the
 * same choices.
 */
import { hasScopeFlags } from '../config/precedence.js';
import type { ScopeSpec } from '../config/scope.js';
import { UsageError } from '../errors.js';
import type { CommandContext } from './context.js';
import { scopeSpecFromArgs, type ScopeArgs } from './scope-options.js';
import { WizardCancelled, type WizardKind } from './wizard/outcome.js';

export type RunKind = WizardKind;
export { confirmedByWizard, wizardRunOptions } from './wizard/outcome.js';

/** Whether interactive mode runs: a terminal (ctx.interactive), and no scope flag or --config unless --interactive insists. */
export function wantsWizard(ctx: CommandContext, argv: ScopeArgs & { interactive?: boolean }): boolean {
  if (argv.interactive === true && !ctx.interactive) {
    throw new UsageError('--interactive needs a terminal on stdin and stdout (and no --json, --yes or CI)', {
      hint: 'leave out --interactive and give the scope as flags or --config FILE; add --yes where a confirmation is needed',
    });
  }
  if (!ctx.interactive) return false;
  return argv.interactive === true || (!argv.config && !hasScopeFlags(argv));
}

/**
 * The ScopeSpec of a run. Asks when `wantsWizard`; declining at the end exits
 * 130 with nothing done. Never prompts without a terminal.
 */
export async function resolveRunScope(ctx: CommandContext, argv: ScopeArgs & { interactive?: boolean }, kind: RunKind): Promise<ScopeSpec> {
  const fromArgs = await scopeSpecFromArgs(argv, undefined, ctx.config);
  if (!wantsWizard(ctx, argv)) return fromArgs;
  // Loaded here: the prompt library costs startup time that non-interactive runs need not pay.
  const { runWizard } = await import('./wizard/index.js');
  const spec = await runWizard(ctx, kind, fromArgs);
  if (!spec) throw new WizardCancelled();
  return spec;
}
