/**
 * Progress renderers chosen in one place (`createProgress`): a listr2 task
 * tree on a terminal (nested per database and table, several tasks running at
 * once where the work is concurrent), plain lines otherwise (no TTY, CI set,
 * TERM=dumb, --json), and ora spinners for short waits (`withSpinner`).
 *
 * listr2 normally runs task functions it knows up front; pipeline code instead
 * emits ProgressEvents as work appears. So the tree is driven from the
 * events: tasks are created as `start` events arrive and their state is set
 * by `update` / `end`. listr2 only draws them.
 */
import { registerCleanup } from '../../lifecycle.js';
import type { CommandContext } from '../context.js';
import type { Output } from './output.js';
import type { ProgressSink } from '../../pipeline/shared/progress.js';
import { plainProgress } from './progress.js';

export type ProgressRenderer = ProgressSink & {
  /** Draw the final state and give the terminal back. Call it in `finally`. */
  done(): void;
  readonly kind: 'tree' | 'plain';
};

/** A terminal that can take redrawing: stdout and stderr are TTYs, CI is unset, no --json. */
export function canDrawTree(out: Output, env: NodeJS.ProcessEnv = process.env): boolean {
  return out.tty && !out.json && !out.quiet && !env.CI && !!process.stderr.isTTY;
}

/** Plain lines on stderr (no escape sequences unless colour is on). */
export function linesProgress(out: Output): ProgressRenderer {
  const sink = plainProgress(out) as ProgressRenderer;
  Object.assign(sink, { kind: 'plain' as const, done: () => undefined });
  return sink;
}

let tree: { treeProgress(out: Output): ProgressRenderer } | undefined;

/**
 * Load the tree renderer when this run can draw one (createContext calls it;
 * so must any other caller of createProgress). Elsewhere listr2 is never loaded.
 */
export async function preloadProgress(ctx: Pick<CommandContext, 'out' | 'env'>): Promise<void> {
  if (canDrawTree(ctx.out, ctx.env)) tree ??= await import('./tree.js');
}

/** The renderer for this run: a task tree on a terminal (once preloaded), plain lines otherwise. */
export function createProgress(ctx: Pick<CommandContext, 'out' | 'env'>): ProgressRenderer {
  return canDrawTree(ctx.out, ctx.env) && tree ? tree.treeProgress(ctx.out) : linesProgress(ctx.out);
}

/**
 * A spinner on stderr while `fn` runs (terminals only; elsewhere nothing is
 * drawn). For short waits: reading a catalog, connecting.
 */
export async function withSpinner<T>(out: Output, text: string, fn: () => Promise<T>, env: NodeJS.ProcessEnv = process.env): Promise<T> {
  if (!canDrawTree(out, env)) return fn();
  // discardStdin would put stdin in raw mode and fight the prompts that may follow.
  const { default: ora } = await import('ora');
  const spinner = ora({ text, stream: process.stderr, discardStdin: false }).start();
  const unregister = registerCleanup(() => spinner.stop());
  try {
    return await fn();
  } finally {
    unregister();
  }
}
