/**
 * A fixed number of workers taking items from a list in order (callers sort
 * it, e.g. largest first). Each running worker has its own slot number
 * (0 … jobs-1), so callers can keep one connection pair per slot.
 *
 * The first failure stops the pool: no new item starts, the others are told
 * to stop through the signal passed to the worker, and runPool settles only
 * after every running worker has returned — so when it rejects, nothing is
 * still running. Interface note: the worker's third argument (the pool's
 * signal) is an addition to the interface in the design; two-argument
 * workers keep working.
 */
import { InterruptedError } from '../../errors.js';

export type PoolWorker<T> = (item: T, slot: number, signal: AbortSignal) => Promise<void>;

export async function runPool<T>(items: readonly T[], jobs: number, worker: PoolWorker<T>, signal?: AbortSignal): Promise<void> {
  if (!Number.isInteger(jobs) || jobs < 1) throw new RangeError(`jobs must be a positive integer, got ${jobs}`);
  const stop = new AbortController();
  const onOuterAbort = () => stop.abort(signal?.reason);
  if (signal?.aborted) onOuterAbort();
  else signal?.addEventListener('abort', onOuterAbort, { once: true });

  let next = 0;
  let firstError: unknown;
  let failed = false;

  const loop = async (slot: number): Promise<void> => {
    while (!stop.signal.aborted && next < items.length) {
      const item = items[next++] as T;
      try {
        await worker(item, slot, stop.signal);
      } catch (err) {
        if (!failed) {
          failed = true;
          firstError = err;
        }
        stop.abort(err);
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: Math.min(jobs, items.length) }, (_, slot) => loop(slot)));
  } finally {
    signal?.removeEventListener('abort', onOuterAbort);
  }
  // An interruption wins over the errors it caused in the workers.
  if (signal?.aborted) throw signal.reason instanceof InterruptedError ? signal.reason : new InterruptedError();
  if (failed) throw firstError;
}
