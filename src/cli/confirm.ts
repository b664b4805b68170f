/**
 * Yes/no questions before something that cannot be undone. --yes answers
 * yes; on a terminal the question is asked; without one (scripts, CI) it is
 * never asked: the command stops with exit 2 naming the flag to add.
 */
import { UsageError } from '../errors.js';
import type { CommandContext } from './context.js';

export async function confirm(ctx: Pick<CommandContext, 'argv' | 'interactive' | 'signal'>, question: string, flagHint = '--yes'): Promise<boolean> {
  if (ctx.argv.yes) return true;
  if (!ctx.interactive) {
    throw new UsageError(`${question.replace(/\?\s*$/, '')}: this needs a confirmation, and there is no terminal to ask`, {
      hint: `add ${flagHint} to confirm`,
    });
  }
  // Loaded only when a question is asked. Prompts go to stderr: stdout carries only results.
  const { confirm: ask } = await import('@inquirer/prompts');
  return ask({ message: question, default: false }, { signal: ctx.signal, output: process.stderr });
}
