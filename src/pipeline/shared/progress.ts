/**
 * The progress contract: pipeline functions emit these events and never
 * print; the CLI chooses a renderer (plain lines, a task tree, nothing).
 */
export type ProgressStatus = 'ok' | 'warn' | 'fail' | 'skip';

export type ProgressEvent =
  | { kind: 'start'; id: string; title: string; parent?: string }
  | { kind: 'update'; id: string; detail: string; done?: number; total?: number; unit?: 'rows' | 'bytes' | 'chunks' | 'tables' }
  | { kind: 'end'; id: string; status: ProgressStatus; detail?: string }
  | { kind: 'log'; level: 'info' | 'warn' | 'debug'; message: string };

export type ProgressSink = (event: ProgressEvent) => void;

export const silentProgress: ProgressSink = () => {};

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
