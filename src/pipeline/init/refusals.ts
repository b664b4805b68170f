/**
 * What init refuses before it writes anything, in one place: foreign keys the
 * scope breaks (unless --fk-not-valid helps), replication problems of the
 * scope and no room for its replication slots on the source (unless
 * --no-sync), a target database that is not empty (unless
 * --drop-existing), and a tablespace the target lacks (with
 * --keep-tablespaces). runInit stops on them (exit 2); the plan lists them, for
 * --dry-run to show and to exit 2 with.
 */
import { UsageError } from '../../errors.js';
import { describeObjectCounts } from '../../postgres/catalog/databases.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import { plural } from '../../units.js';
import { fkProblemHint, type ForeignKeyProblem } from '../shared/foreign-key-check.js';
import type { PlannedDatabase } from './plan.js';
import type { ReplicationCheck } from './publication.js';
import { inspectTargetDatabase } from './target-db.js';

/** A foreign key the scope breaks stops init, unless --fk-not-valid helps (it is then created NOT VALID). */
export function blocksInit(p: Pick<ForeignKeyProblem, 'notValidHelps'>, fkNotValid: boolean): boolean {
  return !(fkNotValid && p.notValidHelps);
}

/** A target database that holds objects is refused without --drop-existing. */
export function refusesTarget(targetNotEmpty: boolean, dropExisting: boolean): boolean {
  return targetNotEmpty && !dropExisting;
}

/** The refusals of a plan, one line each (what --dry-run lists; exit 2 when there are any). */
export function planRefusals(databases: readonly PlannedDatabase[], dropExisting: boolean): string[] {
  const out: string[] = [];
  for (const d of databases) {
    if (refusesTarget(d.targetStatus === 'not empty', dropExisting)) out.push(`target database "${d.target}" is not empty (${d.targetContents}); add --drop-existing to replace it`);
    for (const p of d.foreignKeyProblems) if (p.blocking) out.push(p.message);
    out.push(...d.replicationProblems);
  }
  return out;
}

/** Stop on foreign keys the scope breaks and on what publishing the scope would break. */
export function assertScopeAccepted(problems: readonly ForeignKeyProblem[], replication: Record<string, ReplicationCheck>, fkNotValid: boolean): void {
  const blocking = problems.filter((p) => blocksInit(p, fkNotValid));
  if (blocking.length) {
    throw new UsageError(
      `the scope breaks ${blocking.length === 1 ? 'a foreign key' : `${blocking.length} foreign keys`}:\n  ${blocking.map((p) => p.message).join('\n  ')}`,
      { hint: fkProblemHint(blocking) },
    );
  }
  const replicationProblems = Object.values(replication).flatMap((r) => r.problems);
  if (replicationProblems.length) {
    throw new UsageError(`publishing the scope for sync would break the source:\n  ${replicationProblems.join('\n  ')}`, {
      hint: [...new Set(Object.values(replication).flatMap((r) => r.hints))].join('\n') + '\n(or copy once without replication: --no-sync)',
    });
  }
}

/** Refused here, before anything is written, rather than once the run is under way. */
export async function assertTargetsEmpty(target: ResolvedConnInfo, databases: readonly string[], targetMajor: number, dropExisting: boolean): Promise<void> {
  if (dropExisting) return;
  for (const db of databases) {
    const st = await inspectTargetDatabase(target, db, targetMajor);
    if (refusesTarget(!st.empty, dropExisting)) {
      throw new UsageError(`the target database "${db}" already exists and is not empty (${describeObjectCounts(st.objects)})`, {
        hint: 'point --target at another database, or pass --drop-existing to drop and re-create it (asks first; --yes skips the question)',
      });
    }
  }
}

export interface SlotRefusal {
  message: string;
  hint: string;
}

/**
 * init creates a replication slot for each database it takes a snapshot of (its own slots, kept from an earlier
 * run, are reused): with no room for them on the source, it would stop at the first snapshot, after the
 * publication and the target database were made. Null when there is room.
 */
export async function slotRefusal(source: ResolvedConnInfo, wanted: readonly string[]): Promise<SlotRefusal | null> {
  if (!wanted.length) return null;
  const { max, slots } = await withClient(source, async (c) => {
    const { rows } = await c.query<{ max: number; slots: { name: string; active: boolean }[] }>(
      `SELECT current_setting('max_replication_slots')::int AS max,
              coalesce(json_agg(json_build_object('name', slot_name, 'active', active) ORDER BY slot_name) FILTER (WHERE slot_name IS NOT NULL), '[]') AS slots
         FROM pg_replication_slots`,
    );
    return rows[0]!;
  }, { label: 'the source' });
  const needed = wanted.filter((n) => !slots.some((s) => s.name === n)).length;
  const free = Math.max(0, max - slots.length);
  if (free >= needed) return null;
  const idle = slots.filter((s) => !s.active && !wanted.includes(s.name));
  return {
    message: `the source has room for ${plural(free, 'more replication slot')} and init creates ${needed} (one per database): ` +
      `max_replication_slots = ${max}, ${slots.length} in use${slots.length ? ` (${slots.map((s) => `${s.name}${s.active ? '' : ', inactive'}`).join('; ')})` : ''}`,
    hint: `ALTER SYSTEM SET max_replication_slots = ${slots.length + needed} on the source, then restart it` +
      (idle.length ? `; or drop slots nobody uses: ${idle.map((s) => `SELECT pg_drop_replication_slot(${quoteLiteral(s.name)});`).join(' ')}` : ''),
  };
}

/** --keep-tablespaces: every tablespace the scope's relations use on the source must exist on the target (pg_restore would stop at the first one missing). Null when they do. */
export async function tablespaceRefusal(target: ResolvedConnInfo, used: Record<string, string[]>): Promise<UsageError | null> {
  const wanted = [...new Set(Object.values(used).flat())].sort();
  if (!wanted.length) return null;
  const there = await withClient(target, async (c) => (await c.query<{ spcname: string }>('SELECT spcname FROM pg_tablespace')).rows.map((r) => r.spcname), { label: 'the target' });
  const missing = wanted.filter((t) => !there.includes(t));
  if (!missing.length) return null;
  return new UsageError(`--keep-tablespaces: the target has no tablespace ${missing.join(', ')}, which the source's relations use; nothing was written`, {
    hint: `create ${missing.length > 1 ? 'them' : 'it'} on the target (CREATE TABLESPACE ${quoteIdent(missing[0]!)} LOCATION '…'), or leave out --keep-tablespaces (everything then goes to the target database's default tablespace)`,
  });
}
