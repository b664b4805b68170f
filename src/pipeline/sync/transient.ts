/**
 * Errors of a server that is restarting or a connection that dropped: sync's
 * wait rides them out (reconnecting at each poll) for as long as a broken
 * replication is tolerated, instead of exiting at once.
 */
import { isRetryable } from '../../postgres/errors.js';

/** How long the wait tolerates a side it cannot reach, or a replication that is broken. */
export const TOLERATED_BREAK_MS = 60_000;

/** A connection refused or lost, or a server starting up or shutting down (also as the cause of a wrapped error). */
export function isTransientServerError(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (isRetryable(e)) return true;
  }
  return false;
}
