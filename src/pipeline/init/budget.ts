/**
 * The --jobs budget that init's copy workers and its per-table post-data
 * share: at most `jobs` pieces of work (a part's COPY, one pg_restore of a
 * table's indexes) run on the target at once, as with `pg_restore -j`.
 * Waiters are served first come, first served; a table's post-data asks as
 * soon as the table is in, so it goes ahead of the copy's next part.
 */
import { InterruptedError } from '../../errors.js';

export interface Budget {
  /** Run `fn` holding one permit; waits for a free one first (rejects if `signal` aborts meanwhile). */
  run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export function createBudget(permits: number): Budget {
  if (!Number.isInteger(permits) || permits < 1) throw new RangeError(`permits must be a positive integer, got ${permits}`);
  let free = permits;
  const waiters: (() => void)[] = [];

  const acquire = (signal?: AbortSignal): Promise<void> => {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (free > 0 && !waiters.length) {
      free--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = waiters.indexOf(grant);
        if (i >= 0) waiters.splice(i, 1);
        reject(abortError(signal!));
      };
      waiters.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  };

  const release = () => {
    const next = waiters.shift();
    if (next) next();
    else free++;
  };

  return {
    async run(fn, signal) {
      await acquire(signal);
      try {
        return await fn();
      } finally {
        release();
      }
    },
  };
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason instanceof Error ? signal.reason : new InterruptedError();
}
