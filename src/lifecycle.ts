/**
 * Process lifecycle: one AbortSignal that every long operation watches, and
 * synchronous cleanups (temporary password files, throwaway clusters) that
 * run on normal exit, on error, and on SIGINT / SIGTERM.
 */
import { InterruptedError } from './errors.js';

const cleanups = new Set<() => void>();
const controller = new AbortController();

/** Aborted when the user presses Ctrl-C or the process receives SIGTERM. */
export const shutdownSignal: AbortSignal = controller.signal;

/** Register a synchronous cleanup; returns a function that runs it now and unregisters it. */
export function registerCleanup(fn: () => void): () => void {
  cleanups.add(fn);
  installExitHook();
  return () => {
    if (cleanups.delete(fn)) fn();
  };
}

export function runCleanups(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
}

let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', runCleanups);
}

let receivedSignal: NodeJS.Signals | undefined;

/** 130 after SIGINT (or when no signal was seen), 143 after SIGTERM, 129 after SIGHUP. */
export function interruptExitCode(): number {
  return receivedSignal === 'SIGTERM' ? 143 : receivedSignal === 'SIGHUP' ? 129 : 130;
}

let signalsInstalled = false;
/**
 * First signal: abort the shared signal so that running work unwinds through
 * its finally blocks; give it `graceMs`, then clean up and exit. A second
 * signal exits at once (after the synchronous cleanups).
 */
export function installSignalHandlers(graceMs = 10_000): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  installExitHook();
  let received = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    received++;
    receivedSignal ??= sig;
    const code = interruptExitCode();
    if (received === 1) {
      controller.abort(new InterruptedError(`interrupted by ${sig}`));
      setTimeout(() => {
        runCleanups();
        process.exit(code);
      }, graceMs).unref();
      return;
    }
    runCleanups();
    process.exit(code);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

/** Throw InterruptedError if shutdown was requested. */
export function throwIfShuttingDown(signal: AbortSignal = shutdownSignal): void {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new InterruptedError();
}

/** Is a process with this pid running (ours or another user's)? */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
