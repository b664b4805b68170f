/**
 * The checkpoint of one migration, kept in the state directory (`--state-dir`,
 * default ./.pgferry) as `state.json`: who the two sides are, the scope, the
 * options, and per source database the slot, the filters as actually applied
 * and the progress of every table. init writes it; sync, status, verify and
 * cleanup read it. Written atomically (temporary file, fsync, rename, fsync of
 * the directory), so a crash leaves the previous or the next version, never a
 * torn file. Never holds a password: endpoints come from describeConn().
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ScopeSpec } from '../config/scope.js';
import { UsageError } from '../errors.js';
import { writeJsonAtomic } from './files.js';

export const STATE_VERSION = 1 as const;
export { acquireLock } from './lock.js';

export const INIT_PHASES = ['pending', 'schema', 'data', 'post-data', 'sequences', 'analyze', 'done'] as const;
export type InitPhase = (typeof INIT_PHASES)[number];

/** True when phase `a` comes before phase `b`. */
export function phaseBefore(a: InitPhase, b: InitPhase): boolean {
  return INIT_PHASES.indexOf(a) < INIT_PHASES.indexOf(b);
}

export interface SideRecord {
  systemIdentifier: string;
  /** user@host:port/db as given, never a password. */
  endpoint: string;
  major: number;
}

export interface RunOptionsRecord {
  noSync: boolean;
  noOwner: boolean;
  noPrivileges: boolean;
  noRoles: boolean;
  fkNotValid: boolean;
  /** init --keep-tablespaces (absent: false). */
  keepTablespaces?: boolean;
  /** init --method timestamp (absent: logical). */
  method?: 'timestamp';
  /** May change between runs. */
  jobs: number;
}

export interface RunState {
  version: typeof STATE_VERSION;
  createdAt: string;
  updatedAt: string;
  source: SideRecord;
  target: SideRecord;
  /** scopeHash(spec) from src/config/scope.ts. */
  scopeHash: string;
  /** The scope as given. */
  scope: ScopeSpec;
  options: RunOptionsRecord;
  /** Roles are copied once per target server. */
  roles: 'pending' | 'done' | 'skipped';
  databases: Record<string /* source database */, DatabaseState>;
}

export interface SlotRecord {
  name: string;
  /** The slot's consistent point: every change committed after it is in the slot. */
  consistentLsn: string;
  /** The snapshot exported when the slot was created (dead once its connection closed). */
  snapshotName: string;
  createdAt: string;
}

/** A foreign key that init created NOT VALID although the source has it validated. */
export interface NotValidForeignKey {
  schema: string;
  table: string;
  name: string;
  /** 'filter': --fk-not-valid, a filter leaves it violated; 'resume': tables copied under different snapshots. */
  reason: 'filter' | 'resume';
}

export interface DatabaseState {
  sourceDatabase: string;
  targetDatabase: string;
  /** null with --no-sync. */
  slot: SlotRecord | null;
  /** init created (or re-created with --drop-existing) the target database, or found it empty. */
  targetPrepared: boolean;
  /** Time-filter cutoffs fixed at the first run: "schema.table" → timestamptz text. Reused by sync and verify. */
  timeFilterCutoffs: Record<string, string>;
  /** The SQL predicate actually used per filtered table ("schema.table" → predicate with constants). */
  filters: Record<string, string>;
  phase: InitPhase;
  /** How many snapshots rows were copied under (1 unless a run was resumed after some tables had finished). */
  snapshotsUsed: number;
  tables: Record<string /* "schema.table" */, TableState>;
  largeObjects: 'pending' | 'done' | 'none';
  notValidForeignKeys: NotValidForeignKey[];
  /** Seconds spent per phase, summed over runs. */
  phaseSeconds: Partial<Record<InitPhase | 'roles' | 'large-objects' | 'extension-data' | 'properties', number>>;
  finishedAt: string | null;
}

export interface TablePartState {
  id: string;
  status: 'pending' | 'done';
  rows: number;
  bytes: number;
}

export interface TableState {
  schema: string;
  name: string;
  status: 'pending' | 'copying' | 'done';
  schemaOnly: boolean;
  /**
   * true when the rows were copied under the slot's exported snapshot; false when copied later
   * (after a resume) — sync must then re-synchronise this table through PostgreSQL's table
   * synchronisation. With --no-sync: copied under the first snapshot of the run.
   */
  consistentWithSlot: boolean;
  /**
   * Set by the client applier once it copied a table that is not consistent with the slot again, under a snapshot
   * taken at this source position ("X/Y"): the table's changes in transactions that committed before it are skipped.
   */
  resyncedFrom?: string;
  rows: number;
  bytes: number;
  seconds: number;
  parts: TablePartState[];
}

/** The key of a table in the state: "schema.table" as written in the catalog (no quoting). */
export function tableKey(schema: string, name: string): string {
  return `${schema}.${name}`;
}

export function statePaths(stateDir: string): { dir: string; state: string; lock: string; work: string } {
  return {
    dir: stateDir,
    state: path.join(stateDir, 'state.json'),
    lock: path.join(stateDir, 'lock'),
    work: path.join(stateDir, 'work'),
  };
}

/** Read the checkpoint; undefined when there is none. A damaged or foreign file is a usage error. */
export async function loadState(stateDir: string): Promise<RunState | undefined> {
  const file = statePaths(stateDir).state;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UsageError(`cannot read the state file ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`the state file ${file} is damaged (not JSON)`, {
      hint: 'start over with --restart, or point --state-dir at another folder',
    });
  }
  const s = parsed as Partial<RunState>;
  if (!s || typeof s !== 'object' || typeof s.version !== 'number' || !s.databases || !s.source || !s.target) {
    throw new UsageError(`${file} is not a pgferry state file`, { hint: 'point --state-dir at the folder of this migration, or use --restart' });
  }
  if (s.version !== STATE_VERSION) {
    throw new UsageError(`${file} has state version ${s.version}; this pgferry reads version ${STATE_VERSION}`, {
      hint: 'use the pgferry version that started this migration, or start over with --restart',
    });
  }
  return s as RunState;
}

/** Write the checkpoint atomically (see writeJsonAtomic). */
export async function saveState(stateDir: string, s: RunState): Promise<void> {
  s.updatedAt = new Date().toISOString();
  await writeJsonAtomic(statePaths(stateDir).state, s);
}

/** Remove the checkpoint and the work files (dump archives). The lock is left to its owner. */
export async function discardState(stateDir: string): Promise<void> {
  const p = statePaths(stateDir);
  await rm(p.state, { force: true });
  await rm(p.work, { recursive: true, force: true });
}

/**
 * One writer of the checkpoint inside a process: updates from parallel workers
 * are applied to the one in-memory object and saved in order. At most one
 * write is in flight and one queued: updates that arrive meanwhile join the
 * queued write, which serialises the state when it starts. Without that, a
 * database of many small tables would rewrite the whole file (which grows with
 * the table count) once per table, and every worker would wait its turn.
 *
 * Records that may wait (`record`: a table finished, which a resume would only
 * copy again) are also paced: their write starts no sooner than a few times the
 * last write's duration after it ended. Back to back, rewriting the state of
 * 3 000 tables (1.4 MB, 6 – 7 ms of JSON.stringify on the one thread that also
 * relays every table's rows) took 1.2 s of a 13 s init. An `update` (a phase,
 * anything a caller goes on from) or `flush` ends such a wait at once.
 */
export class StateStore {
  private inFlight: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  /** Ends the queued write's pacing wait. */
  private hurry: (() => void) | undefined;
  private last: { end: number; ms: number } | undefined;
  constructor(
    readonly stateDir: string,
    readonly state: RunState,
    private readonly write: (stateDir: string, s: RunState) => Promise<void> = saveState,
    /** How long a paced write waits after the last write ended, given that write's duration. */
    private readonly pace: (lastWriteMs: number) => number = (ms) => Math.min(MAX_PACE_MS, PACE_WRITES * ms),
  ) {}

  /** Apply a change and persist it now; resolves once a version including it is on disk. */
  update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
    return this.enqueue(true);
  }

  /** Apply a change that may reach the disk a little later (paced, see above); resolves once it is on disk. */
  record(change: (s: RunState) => void): Promise<void> {
    change(this.state);
    return this.enqueue(false);
  }

  /** Persist the current state now. */
  save(): Promise<void> {
    return this.update(() => {});
  }

  /** Write what is queued without its pacing wait; resolves once everything recorded so far is on disk. */
  flush(): Promise<void> {
    this.hurry?.();
    return this.queued ?? this.inFlight ?? Promise.resolve();
  }

  private enqueue(now: boolean): Promise<void> {
    if (this.queued) {
      if (now) this.hurry?.();
      return this.queued;
    }
    let hurry!: () => void;
    const hurried = new Promise<void>((resolve) => (hurry = resolve));
    if (now) hurry();
    this.hurry = hurry;
    const before = this.inFlight ?? Promise.resolve();
    const write: Promise<void> = before
      .catch(() => {})
      .then(() => this.paced(hurried))
      .then(async () => {
        this.queued = undefined;
        this.hurry = undefined;
        this.inFlight = write;
        const start = performance.now();
        try {
          await this.write(this.stateDir, this.state);
        } finally {
          const end = performance.now();
          this.last = { end, ms: end - start };
        }
      })
      .finally(() => {
        if (this.inFlight === write) this.inFlight = undefined;
      });
    this.queued = write;
    return write;
  }

  /** Resolves `pace` after the last write ended, or once hurried. */
  private paced(hurried: Promise<void>): Promise<void> {
    const wait = this.last ? this.last.end + this.pace(this.last.ms) - performance.now() : 0;
    if (wait <= 0) return Promise.resolve();
    let timer: NodeJS.Timeout | undefined;
    const due = new Promise<void>((resolve) => (timer = setTimeout(resolve, wait)));
    return Promise.race([hurried, due]).finally(() => clearTimeout(timer));
  }
}

/** A paced write waits this many times the last write's duration: writes then take at most a fifth of the time. */
const PACE_WRITES = 4;
const MAX_PACE_MS = 500;

/** What identifies a run; a resume must match it exactly. */
export interface RunIdentity {
  source: SideRecord;
  target: SideRecord;
  scopeHash: string;
  options: RunOptionsRecord;
  /** source database → target database. */
  databases: Record<string, string>;
}

/**
 * Refuse (exit 2) to resume a checkpoint with another source, target, scope or
 * options, naming what changed.
 */
export function assertSameRun(s: RunState, now: RunIdentity, stateDir: string): void {
  const changes: string[] = [];
  if (s.source.systemIdentifier !== now.source.systemIdentifier) {
    changes.push(`the source server (system identifier ${s.source.systemIdentifier}, ${s.source.endpoint}) is now ${now.source.systemIdentifier} (${now.source.endpoint})`);
  }
  if (s.target.systemIdentifier !== now.target.systemIdentifier) {
    changes.push(`the target server (system identifier ${s.target.systemIdentifier}, ${s.target.endpoint}) is now ${now.target.systemIdentifier} (${now.target.endpoint})`);
  }
  const before = Object.entries(s.databases).map(([src, d]) => `${src}→${d.targetDatabase}`).sort().join(', ');
  const after = Object.entries(now.databases).map(([src, t]) => `${src}→${t}`).sort().join(', ');
  if (before !== after) changes.push(`the databases (${before}) are now (${after})`);
  if (s.scopeHash !== now.scopeHash) {
    changes.push(`the scope (tables, filters) changed (scope hash ${s.scopeHash} → ${now.scopeHash})`);
  }
  for (const k of ['noSync', 'noOwner', 'noPrivileges', 'noRoles', 'fkNotValid', 'keepTablespaces'] as const) {
    if (!!s.options[k] !== !!now.options[k]) changes.push(`option ${optionFlag(k, !!now.options[k])} differs from the first run`);
  }
  if ((s.options.method ?? 'logical') !== (now.options.method ?? 'logical')) {
    changes.push(`--method ${now.options.method ?? 'logical'} differs from the first run (--method ${s.options.method ?? 'logical'})`);
  }
  if (changes.length) {
    throw new UsageError(`the state in ${stateDir} belongs to another migration: ${changes.join('; ')}`, {
      hint: 'rerun with the same connections, scope and options to resume, or pass --restart to discard that state and start over',
    });
  }
}

function optionFlag(k: keyof RunOptionsRecord, value: boolean): string {
  const names: Record<string, string> = {
    noSync: '--no-sync',
    noOwner: '--no-owner',
    noPrivileges: '--no-privileges',
    noRoles: '--no-roles',
    fkNotValid: '--fk-not-valid',
    keepTablespaces: '--keep-tablespaces',
  };
  return `${names[k] ?? k} (${value ? 'given now' : 'given before'})`;
}
