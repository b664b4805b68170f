/**
 * cutover.json in the state directory: what the cutover has done so far, and
 * above all whether the source is fenced. Every change to the source's fence
 * is recorded here *before* it is made (status `fencing` / `unfencing`), so a
 * process killed at any point leaves a file that says the source may be
 * fenced, and a rerun or `--abort` knows exactly what to undo.
 */
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../../state/files.js';
import type { SyncMethod } from '../shared/final-apply.js';

export const CUTOVER_STATE_VERSION = 1 as const;

/** A CONNECT privilege on the source database that the fence revoked (grantee null = PUBLIC). */
export interface RevokedConnect {
  grantee: string | null;
  grantable: boolean;
}

export interface FenceRecord {
  /**
   * fencing: the fence is being put up (may be partly in place); fenced: in place;
   * unfencing: being taken down (may be partly in place); unfenced: gone.
   */
  status: 'fencing' | 'fenced' | 'unfencing' | 'unfenced';
  /** Schema that holds the refusing trigger function (its triggers go with it). */
  schema: string;
  /** CONNECT privileges revoked, to give back. */
  revoked: RevokedConnect[];
  /** Roles granted CONNECT so that pgferry and the subscription's walsender keep access; revoked again when unfencing. */
  granted: string[];
  /** Tables that got the refusing trigger ("schema.table", display form). */
  tables: string[];
  /** When application writes started to be refused (first change to the source). */
  startedAt: string;
  fencedAt: string | null;
  sessionsEnded: number;
  sessionsInTransaction: number;
}

export type HandOverStatus = 'none' | 'subscription-dropped' | 'slot-dropped' | 'done';

export interface CutoverDatabaseRecord {
  sourceDatabase: string;
  targetDatabase: string;
  fence: FenceRecord | null;
  /** Source WAL position read after the fence: the target must have applied at least this much. */
  fenceLsn: string | null;
  /** The slot's confirmed position when catch-up ended (null with the timestamp method). */
  appliedLsn: string | null;
  handOver: HandOverStatus;
  /** Reverse replication objects (--reverse): publication on the target, subscription on the source. */
  reverse: { publication: string; subscription: string; slot: string; created: boolean } | null;
}

export type CutoverPhase =
  | 'preconditions' | 'stop-applier' | 'refresh-views' | 'fence' | 'catch-up' | 'final-round' | 'sequences' | 'large-objects' | 'extension-data' | 'gate' | 'hand-over' | 'reverse' | 'done' | 'aborted';

export interface CutoverState {
  version: typeof CUTOVER_STATE_VERSION;
  startedAt: string;
  updatedAt: string;
  /** The furthest phase reached. */
  phase: CutoverPhase;
  /** Options that shape what a rerun must do; `method` absent: native (files written before the other methods). */
  options: { reverse: boolean; verify: 'quick' | 'full' | 'none'; method?: SyncMethod };
  /** ms since startedAt at which the target was ready (sequences set, gate passed); null until then. */
  readyAt: string | null;
  databases: Record<string, CutoverDatabaseRecord>;
}

export function cutoverStatePath(stateDir: string): string {
  return path.join(stateDir, 'cutover.json');
}

export async function loadCutoverState(stateDir: string): Promise<CutoverState | undefined> {
  const file = cutoverStatePath(stateDir);
  if (!existsSync(file)) return undefined;
  const s = JSON.parse(await readFile(file, 'utf8')) as CutoverState;
  if (s.version !== CUTOVER_STATE_VERSION) throw new Error(`${file}: unknown version ${String(s.version)}`);
  return s;
}

/** Writes are serialised: the file always holds one complete state, written in call order. */
export class CutoverStore {
  private queue: Promise<void> = Promise.resolve();
  constructor(
    readonly stateDir: string,
    readonly state: CutoverState,
  ) {}

  save(): Promise<void> {
    this.state.updatedAt = new Date().toISOString();
    const snapshot = JSON.parse(JSON.stringify(this.state)) as CutoverState;
    this.queue = this.queue.then(() => writeJsonAtomic(cutoverStatePath(this.stateDir), snapshot));
    return this.queue;
  }

  db(sourceDatabase: string): CutoverDatabaseRecord {
    const d = this.state.databases[sourceDatabase];
    if (!d) throw new Error(`no cutover record for database ${sourceDatabase}`);
    return d;
  }
}

export async function removeCutoverState(stateDir: string): Promise<void> {
  await rm(cutoverStatePath(stateDir), { force: true });
}

/** True when the record says the source may carry some part of the fence. */
export function mayBeFenced(f: FenceRecord | null): boolean {
  return !!f && f.status !== 'unfenced';
}
