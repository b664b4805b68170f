/**
 * Named fault points for crash tests. `faultPoint('cutover.after-fence')` does
 * nothing unless the environment variable PGFERRY_FAULT_POINT names exactly
 * that point; then the process kills itself with SIGKILL on the spot, as a
 * power cut or `kill -9` would: no finally blocks, no exit hooks, no state
 * written after this line.
 */
export const FAULT_ENV = 'PGFERRY_FAULT_POINT';

export function faultPoint(name: string): void {
  const want = process.env[FAULT_ENV];
  if (!want || want !== name) return;
  process.kill(process.pid, 'SIGKILL');
}
