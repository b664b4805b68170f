/**
 * The one rule for --jobs, whichever layer gives it (flag, PGFERRY_JOBS, the
 * file's `jobs`, or code calling a pipeline function): a whole number from 1
 * to MAX_JOBS. Each job is a session on each server, and pg_restore forks one
 * process per job, so a typo such as 100000 must not reach either.
 */
import { UsageError } from '../errors.js';

export const MAX_JOBS = 64;

/** The number of jobs, or a usage error that echoes what was written. */
export function parseJobs(value: unknown, what = '--jobs'): number {
  const text = typeof value === 'string' ? value.trim() : String(value);
  const n = typeof value === 'number' ? value : text === '' ? NaN : Number(text);
  if (!Number.isInteger(n) || n < 1 || n > MAX_JOBS) {
    throw new UsageError(`${what} must be a whole number from 1 to ${MAX_JOBS} (got "${text}")`, {
      hint: 'each job is one session on the source and one on the target; the number of CPU cores of the smaller server is a good start',
    });
  }
  return n;
}
