/**
 * Sequence values, the one way init, `pgferry sequences` and cutover move
 * them. Logical replication carries no sequences, so every sequence on the
 * target is set to the source's value — never moved back: a target value
 * already ahead is kept (for a descending sequence, ahead is lower), so that a
 * rerun after the application moved is harmless.
 * Sequences are not transactional, so no snapshot shows their past values:
 * the current value read now is never behind any value used by copied rows.
 */
import type pg from 'pg';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { displayName, qualifiedName } from '../../postgres/identifiers.js';

export interface SequenceSync {
  schema: string;
  name: string;
  /** Source value (last_value), or null when never called. */
  source: string | null;
  targetBefore: string | null;
  /** What happened: set, already equal or ahead, or missing on the target. */
  action: 'set' | 'unchanged' | 'missing-on-target';
}

interface SeqRow {
  schema: string;
  name: string;
  value: string | null;
  /** increment_by: below zero, the sequence counts down. */
  inc: string;
}

/** Sequences and their values in one query (pg_sequences gives NULL for never-called sequences). */
async function sequenceValues(c: pg.Client): Promise<SeqRow[]> {
  const { rows } = await c.query<SeqRow>(
    `SELECT s.schemaname AS schema, s.sequencename AS name, s.last_value::text AS value, s.increment_by::text AS inc
       FROM pg_sequences s
      WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
      ORDER BY 1, 2`,
  );
  return rows;
}

export interface SyncSequencesOptions {
  /** Where to connect, or a session the caller holds (cutover's, open before the fence: no connection inside the window). */
  source: ResolvedConnInfo | pg.Client;
  target: ResolvedConnInfo | pg.Client;
  dryRun?: boolean;
}

function onSide<T>(side: ResolvedConnInfo | pg.Client, label: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  return 'query' in side ? fn(side) : withClient(side, fn, { label });
}

export async function syncSequences(o: SyncSequencesOptions): Promise<SequenceSync[]> {
  const [src, tgt] = await Promise.all([onSide(o.source, 'the source', sequenceValues), onSide(o.target, 'the target', sequenceValues)]);
  const onTarget = new Map(tgt.map((r) => [JSON.stringify([r.schema, r.name]), r.value]));
  const result: SequenceSync[] = [];
  const toSet: SequenceSync[] = [];
  for (const s of src) {
    const key = JSON.stringify([s.schema, s.name]);
    if (!onTarget.has(key)) {
      result.push({ schema: s.schema, name: s.name, source: s.value, targetBefore: null, action: 'missing-on-target' });
      continue;
    }
    const before = onTarget.get(key) ?? null;
    // The source's increment decides the direction (the target's is the same after init; verify compares them).
    const descending = BigInt(s.inc) < 0n;
    const behind = s.value !== null && (before === null || (descending ? BigInt(before) > BigInt(s.value) : BigInt(before) < BigInt(s.value)));
    const r: SequenceSync = { schema: s.schema, name: s.name, source: s.value, targetBefore: before, action: behind ? 'set' : 'unchanged' };
    result.push(r);
    if (behind) toSet.push(r);
  }
  if (!o.dryRun && toSet.length) {
    await onSide(
      o.target,
      'the target',
      async (c) => {
        for (const r of toSet) {
          try {
            await c.query('SELECT setval($1::regclass, $2::bigint, true)', [qualifiedName(r.schema, r.name), r.source]);
          } catch (err) {
            throw operationError(err, `setting sequence ${displayName(r.schema, r.name)} on the target`);
          }
        }
      },
    );
  }
  return result;
}
