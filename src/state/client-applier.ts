/**
 * The heartbeat of a running client applier (`client-applier.json` in the
 * state directory): its pid and, per source database, the position the target
 * has committed. Rewritten every few seconds while it runs; `status` calls it
 * running when the pid is alive and the file is fresh.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../lifecycle.js';
import { writeJsonAtomic } from './files.js';

export interface ClientApplierBeat {
  version: 1;
  pid: number;
  startedAt: string;
  updatedAt: string;
  /** Source database → position committed on the target ("X/Y"). */
  applied: Record<string, string>;
}

/** A heartbeat older than this means the applier is gone (or hung). */
export const HEARTBEAT_STALE_MS = 30_000;

export function clientApplierPath(stateDir: string): string {
  return path.join(stateDir, 'client-applier.json');
}

export async function loadClientApplier(stateDir: string): Promise<ClientApplierBeat | undefined> {
  try {
    const b = JSON.parse(await readFile(clientApplierPath(stateDir), 'utf8')) as ClientApplierBeat;
    return b && b.version === 1 && typeof b.pid === 'number' ? b : undefined;
  } catch {
    return undefined;
  }
}

export async function saveClientApplier(stateDir: string, beat: ClientApplierBeat): Promise<void> {
  await writeJsonAtomic(clientApplierPath(stateDir), beat);
}

export async function removeClientApplier(stateDir: string): Promise<void> {
  await rm(clientApplierPath(stateDir), { force: true });
}

export function clientApplierRunning(beat: ClientApplierBeat | undefined, now = Date.now()): boolean {
  return !!beat && processAlive(beat.pid) && now - Date.parse(beat.updatedAt) < HEARTBEAT_STALE_MS;
}
