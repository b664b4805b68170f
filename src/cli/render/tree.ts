/**
 * The task tree drawn by listr2 on a terminal (see tasks.ts). Its own module,
 * loaded only to draw: listr2, ora and what they pull in are 190 KB of the
 * bundle that a run without a terminal (--json, a pipe, CI, `watch pgferry
 * status`) never uses (measured: `--version` 232 → 222 ms of CPU).
 */
import { DefaultRenderer, Listr, ListrLogger, ListrTaskState, ProcessOutput } from 'listr2';
import { registerCleanup } from '../../lifecycle.js';
import { formatDuration } from '../../units.js';
import type { Output } from './output.js';
import type { ProgressEvent } from '../../pipeline/shared/progress.js';
import type { ProgressRenderer } from './tasks.js';

const LISTR_OPTIONS = {
  renderer: 'default',
  // listr2 picks its fallback renderer by TTY only; CI is our business (canDrawTree).
  fallbackRendererCondition: false,
  silentRendererCondition: false,
  // Ctrl-C belongs to pgferry's own handlers (exit 130, cleanups), not to listr2's exit(127).
  registerSignalListeners: false,
  exitOnError: false,
} as const;

/** Finished child tasks kept on screen per parent; older ones fold into a count. */
const KEEP_FINISHED = 6;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListr = Listr<any, any, any>;
type AnyTask = AnyListr['tasks'][number];

interface Node {
  task: AnyTask;
  title: string;
  children?: AnyListr;
  finishedHidden: number;
  startedAt: number;
}

function updateText(e: Extract<ProgressEvent, { kind: 'update' }>): string {
  if (e.done !== undefined && e.total) {
    const pct = Math.min(100, Math.floor((e.done / e.total) * 100));
    return `${e.detail} (${pct}%)`;
  }
  return e.detail;
}

/** A task tree on stderr, drawn by listr2's default renderer. */
export function treeProgress(out: Output): ProgressRenderer {
  const root: AnyListr = new Listr([], LISTR_OPTIONS);
  const nodes = new Map<string, Node>();
  const logs: string[] = [];
  // The tree is drawn on stderr; what is written to stdout meanwhile is held and printed after it.
  const renderer = new DefaultRenderer(
    root.tasks as never,
    {
      collapseSubtasks: true,
      collapseErrors: false,
      showErrorMessage: true,
      formatOutput: 'truncate',
      logger: new ListrLogger({ useIcons: true, processOutput: new ProcessOutput(process.stderr, process.stdout) }),
    } as never,
    root.events,
  );
  let rendering: Promise<void> | undefined;
  let finished = false;
  const ensureRendering = () => {
    rendering ??= renderer.render();
  };
  const unregister = registerCleanup(() => finish());

  function finish(): void {
    if (finished) return;
    finished = true;
    for (const n of nodes.values()) {
      if (n.task.isPending()) {
        n.task.message$ = { error: 'interrupted' };
        n.task.state$ = ListrTaskState.FAILED;
      }
    }
    if (rendering) renderer.end();
    for (const l of logs) out.warn(l);
  }

  function add(e: Extract<ProgressEvent, { kind: 'start' }>): void {
    const parent = e.parent !== undefined ? nodes.get(e.parent) : undefined;
    let list: AnyListr = root;
    if (parent) {
      if (!parent.children) {
        const children: AnyListr = new Listr([], { exitOnError: false, concurrent: true }, parent.task);
        parent.children = children;
        parent.task.subtasks = children.tasks;
      }
      list = parent.children;
    }
    list.add({ title: e.title, task: () => undefined });
    const task = list.tasks[list.tasks.length - 1]!;
    nodes.set(e.id, { task, title: e.title, finishedHidden: 0, startedAt: Date.now() });
    void task.check({}).then(() => {
      task.state$ = ListrTaskState.STARTED;
    });
    ensureRendering();
  }

  /** Keep long lists short: drop the oldest finished successful children beyond KEEP_FINISHED. */
  function fold(): void {
    for (const n of nodes.values()) {
      const kids = n.children?.tasks;
      if (!kids) continue;
      const done = kids.filter((t) => t.isCompleted());
      const extra = done.length - KEEP_FINISHED;
      if (extra <= 0) continue;
      for (const t of done.slice(0, extra)) kids.splice(kids.indexOf(t), 1);
      n.finishedHidden += extra;
      n.task.title$ = `${n.title} (+${n.finishedHidden} done)`;
    }
  }

  const sink = ((e: ProgressEvent) => {
    if (finished) return;
    switch (e.kind) {
      case 'start':
        add(e);
        break;
      case 'update': {
        const n = nodes.get(e.id);
        if (n) n.task.title$ = `${n.title}${n.finishedHidden ? ` (+${n.finishedHidden} done)` : ''} · ${updateText(e)}`;
        break;
      }
      case 'end': {
        const n = nodes.get(e.id);
        if (!n) break;
        const took = formatDuration(Date.now() - n.startedAt);
        // A finished task's own line no longer counts its folded children.
        n.task.title$ = `${n.title}${e.detail ? `: ${e.detail}` : ''} (${took})`;
        if (e.status === 'fail') {
          n.task.message$ = { error: e.detail ?? 'failed' };
          n.task.state$ = ListrTaskState.FAILED;
        } else if (e.status === 'skip') {
          n.task.message$ = { skip: `${n.title}${e.detail ? `: ${e.detail}` : ''}` };
          n.task.state$ = ListrTaskState.SKIPPED;
        } else {
          if (e.status === 'warn') n.task.title$ = `${n.title}: ⚠ ${e.detail ?? 'finished with warnings'} (${took})`;
          n.task.state$ = ListrTaskState.COMPLETED;
          fold();
        }
        break;
      }
      case 'log':
        // Printed after the tree: lines written while it redraws would be torn.
        if (e.level === 'warn') logs.push(e.message);
        else if (e.level === 'debug' && out.verbose) logs.push(e.message);
        break;
    }
  }) as ProgressRenderer;
  Object.assign(sink, {
    kind: 'tree' as const,
    done: () => {
      unregister();
      finish();
    },
  });
  return sink;
}

