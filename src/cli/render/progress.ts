/**
 * Progress as a stream of events. Pipeline functions emit them and never
 * print; the CLI chooses a renderer: plain lines (no TTY, CI, --json → to
 * stderr) here, a task tree on a terminal (listr2) elsewhere.
 */
import type { Output } from './output.js';

export type ProgressStatus = 'ok' | 'warn' | 'fail' | 'skip';

export type ProgressEvent =
  | { kind: 'start'; id: string; title: string; parent?: string }
  | { kind: 'update'; id: string; detail: string; done?: number; total?: number; unit?: 'rows' | 'bytes' | 'chunks' | 'tables' }
  | { kind: 'end'; id: string; status: ProgressStatus; detail?: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'debug'; message: string };

export type ProgressSink = (event: ProgressEvent) => void;

export const silentProgress: ProgressSink = () => {};

function fmtSeconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

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
        const took = s ? ` (${fmtSeconds(Date.now() - s.at)})` : '';
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

/** Warnings of a run: kept for its report and shown as they happen. */
export function warningCollector(progress: ProgressSink): { warnings: string[]; warn: (message: string) => void } {
  const warnings: string[] = [];
  return {
    warnings,
    warn(message) {
      warnings.push(message);
      progress({ kind: 'log', level: 'warn', message });
    },
  };
}
