/**
 * What cutover does differently when the target is not fed by a native
 * subscription (see docs/architecture.md, "Cutover"):
 *
 * - client applier: a `sync --applier client` running in the background holds
 *   the state directory's lock and reads the slot. Once the user has
 *   confirmed, cutover stops it (SIGTERM: it commits what is complete, keeps
 *   its position in the target's replication origin and exits), takes the
 *   lock, and after the fence runs the applier itself up to the fence LSN.
 *   One path whether or not an applier was running, and the lock is held for
 *   every write, as in every other command.
 * - timestamp method: no stream at all. The precondition is a finished init
 *   and the round state on the target; the fence covers the scope's tables.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { OperationError, UsageError } from '../../errors.js';
import { processAlive } from '../../lifecycle.js';
import { withClient } from '../../postgres/connect.js';
import type { RunState } from '../../state/checkpoint.js';
import { clientApplierRunning, loadClientApplier } from '../../state/client-applier.js';
import type { SyncMethod } from '../shared/final-apply.js';
import type { ReplicationPair } from '../shared/pairs.js';
import { hasState } from '../shared/timestamp-state.js';

/** The pid of a client applier running on this state directory, or null. */
export async function runningApplier(stateDir: string): Promise<number | null> {
  const beat = await loadClientApplier(stateDir);
  return clientApplierRunning(beat) ? beat!.pid : null;
}

/** SIGTERM to the client applier and wait until its process is gone (it saves its position on the way out). */
export async function stopApplier(pid: number, timeoutMs = 60_000, signal?: AbortSignal): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw new UsageError(`cannot stop the client applier (pid ${pid}): ${(err as Error).message}`, { hint: `stop it yourself (kill ${pid}), then run pgferry cutover again` });
  }
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new OperationError(`the client applier (pid ${pid}) did not exit within ${Math.round(timeoutMs / 1000)} s of SIGTERM; nothing was fenced`, {
        hint: `stop it (kill ${pid}), then run pgferry cutover again`,
      });
    }
    await sleep(50);
  }
}

/** --reverse replicates back through a native subscription on the old source: only where the forward stream was one. */
export function refuseReverse(method: SyncMethod): void {
  if (method === 'native') return;
  throw new UsageError(
    method === 'client'
      ? '--reverse is not available with the client applier: reverse replication is a native subscription on the old source, which would have to reach the target (the client applier exists for where it cannot)'
      : '--reverse is not available with --method timestamp: reverse replication needs logical replication on both servers',
    { hint: 'leave out --reverse; nothing was changed' },
  );
}

/**
 * Rounds may read a hot standby, but the fence (revoking CONNECT, ending sessions, the triggers) must be set
 * where the application writes: a standby refuses all of it, and fencing a standby would stop nothing.
 */
async function refuseStandby(p: ReplicationPair): Promise<void> {
  const r = await withClient(
    p.sourceConn,
    async (c) => (await c.query<{ standby: boolean; primary: string | null }>(
      `SELECT pg_catalog.pg_is_in_recovery() AS standby,
              (SELECT coalesce(sender_host, '?') || ':' || coalesce(sender_port::text, '?') FROM pg_catalog.pg_stat_wal_receiver WHERE sender_host IS NOT NULL LIMIT 1) AS primary`,
    )).rows[0]!,
    { label: 'the source', applicationName: 'pgferry cutover' },
  );
  if (!r.standby) return;
  const primary = r.primary ? `its primary (it streams from ${r.primary})` : 'its primary';
  throw new UsageError(`source database "${p.sourceDatabase}" is on a standby (in recovery): cutover must fence ${primary}, where the application writes; nothing was fenced`, {
    hint: 'run pgferry cutover with --source pointing at the primary (same database, same role); the rounds may keep reading the standby until then',
  });
}

/** The timestamp method's precondition: init finished for every database, and the round state is in each target database. */
export async function timestampReady(init: RunState | undefined, pairs: ReplicationPair[]): Promise<string> {
  const unfinished = pairs.filter((p) => init?.databases[p.sourceDatabase]?.phase !== 'done').map((p) => p.sourceDatabase);
  if (unfinished.length) {
    throw new UsageError(`init --method timestamp has not finished for ${unfinished.map((d) => `"${d}"`).join(', ')}, so nothing was fenced`, {
      hint: 'run the same pgferry init command again to finish it, then pgferry sync --method timestamp, then cutover',
    });
  }
  for (const p of pairs) await refuseStandby(p);
  for (const p of pairs) {
    const ok = await withClient(p.targetConn, (c) => hasState(c), { label: 'the target', applicationName: 'pgferry cutover' });
    if (!ok) {
      throw new UsageError(`target database "${p.targetDatabase}" has no timestamp round state (schema pgferry), so nothing was fenced`, {
        hint: 'run pgferry init --method timestamp (and sync --method timestamp) for this migration first',
      });
    }
  }
  return `init finished, round state in ${pairs.length} target database${pairs.length === 1 ? '' : 's'}`;
}

/** What follows an unfenced source, by method: where the target's updates come from now. */
export function afterUnfence(method: SyncMethod): string {
  if (method === 'client') return 'start pgferry sync --applier client again, it continues from the position saved on the target';
  if (method === 'timestamp') return 'pgferry sync --method timestamp continues with rounds';
  return 'replication keeps running';
}
