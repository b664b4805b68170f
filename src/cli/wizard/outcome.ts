/**
 * What the interactive mode leaves for the command that ran it. Kept apart
 * from the wizard so that commands load the prompt library only when a
 * person is actually asked something.
 */
import { ExitCode, PgferryError } from '../../errors.js';
import type { CommandContext } from '../context.js';

export type WizardKind = 'validate' | 'init' | 'sync';

/** The user answered "no" at the final question: nothing was done. */
export class WizardCancelled extends PgferryError {
  constructor() {
    super('cancelled: nothing was changed', ExitCode.interrupted);
  }
}

const confirmed = new WeakSet<CommandContext>();

/** Record that the user said "go ahead" at the end of the interactive mode. */
export function markConfirmed(ctx: CommandContext): void {
  confirmed.add(ctx);
}

/** True when the interactive mode already asked the user to go ahead (commands need not ask again). */
export function confirmedByWizard(ctx: CommandContext): boolean {
  return confirmed.has(ctx);
}

/** Options the interactive mode's answers set on top of the flags (see refusals.ts). */
export interface WizardRunOptions {
  setReplicaIdentityFull?: boolean;
  /** init only: copy once, without a replication slot. */
  noSync?: boolean;
}

const runOptions = new WeakMap<CommandContext, WizardRunOptions>();

export function setWizardRunOptions(ctx: CommandContext, options: WizardRunOptions): void {
  runOptions.set(ctx, options);
}

/** What the interactive mode decided for this run (empty when it did not run or asked nothing). */
export function wizardRunOptions(ctx: CommandContext): WizardRunOptions {
  return runOptions.get(ctx) ?? {};
}
