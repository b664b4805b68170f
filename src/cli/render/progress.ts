/**
 * The plain renderer of progress events (src/pipeline/shared/progress.ts):
 * for no TTY, CI and --json (to stderr); a task tree on a terminal is in tasks.ts.
 */
import type { ProgressSink } from '../../pipeline/shared/progress.js';
import { formatDuration } from '../../units.js';
import type { Output } from './output.js';

/**
 * Plain line renderer: one line when a step starts and one when it ends,
 * updates at most every `updateEveryMs` per step. Writes to stderr so that
 * stdout stays clean for results and JSON. No escape sequences unless colour is on.
 */
export function plainProgress(out: Output, updateEveryMs = 5000): ProgressSink {
  const started = new Map<string, { title: string; at: number; lastUpdate: number }>();
  return (e) => {
    if (out.quiet && e.kind !== 'log') return;
    switch (e.kind) {
      case 'start':
        started.set(e.id, { title: e.title, at: Date.now(), lastUpdate: 0 });
        out.info(`… ${e.title}`);
        break;
      case 'update': {
        const s = started.get(e.id);
        if (!s) return;
        const now = Date.now();
        if (now - s.lastUpdate < updateEveryMs) return;
        s.lastUpdate = now;
        out.info(`  ${s.title}: ${e.detail}`);
        break;
      }
      case 'end': {
        const s = started.get(e.id);
        started.delete(e.id);
        const took = s ? ` (${formatDuration(Date.now() - s.at)})` : '';
        out.info(`${out.symbol(e.status)} ${s?.title ?? e.id}${e.detail ? `: ${e.detail}` : ''}${took}`);
        break;
      }
      case 'log':
        if (e.level === 'warn') out.warn(e.message);
        else if (e.level === 'debug') out.debug(e.message);
        else out.info(e.message);
        break;
    }
  };
}
