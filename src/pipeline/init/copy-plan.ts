/** Planning the copy of many tables: columns, format and parts of each. */
import type pg from 'pg';
import type { ScopeTable } from '../../config/scope.js';
import { tableKey } from '../../state/checkpoint.js';
import { chooseFormat, loadTypeInfo, type CopyFormat } from './format.js';
import {
  DEFAULT_MAX_PARTS, DEFAULT_SPLIT_THRESHOLD_BYTES, effectiveSplitThreshold, partCount, planParts, relationSizes, relationsOf, type RelationName, type RelationSize, type TablePart,
} from './parts.js';
import { maskedSelectList } from '../../config/data-rules.js';

export interface CopyTableInput {
  table: ScopeTable;
  /** The predicate actually applied (table filter, or a time filter with its cutoff as a constant). */
  filter?: string | undefined;
}

export interface CopyPlanOptions {
  sourceMajor: number;
  targetMajor: number;
  splitThresholdBytes?: number | undefined;
  maxParts?: number | undefined;
  /** Workers that will copy: a table bigger than one worker's share is split too (see effectiveSplitThreshold). */
  jobs?: number | undefined;
}

export interface TableCopyPlan {
  table: ScopeTable;
  /** "schema.table", the key used in state and reports. */
  key: string;
  filter?: string | undefined;
  columns: string[];
  /** Masking SELECT list (data rules), or undefined. */
  select?: string | undefined;
  format: CopyFormat;
  parts: TablePart[];
  /** Relations of this table cut into more than one part (truncated up front, no FREEZE). */
  splitRelations: RelationName[];
  estimatedBytes: number;
}

/**
 * Plan the copy of the given tables on the source (ideally inside the
 * snapshot): columns, format and parts. Schema-only tables are left out.
 */
export async function planCopy(client: pg.Client, inputs: readonly CopyTableInput[], opts: CopyPlanOptions): Promise<TableCopyPlan[]> {
  const copied = inputs.filter((i) => !i.table.schemaOnly);
  const types = await loadTypeInfo(client, copied.flatMap((i) => i.table.columns.map((c) => c.typeOid)));
  const totalBytes = copied.reduce((n, i) => n + Math.max(0, i.table.bytes), 0);
  const partOpts = {
    splitThresholdBytes: effectiveSplitThreshold(opts.splitThresholdBytes ?? DEFAULT_SPLIT_THRESHOLD_BYTES, totalBytes, opts.jobs),
    maxParts: opts.maxParts ?? DEFAULT_MAX_PARTS,
    sourceMajor: opts.sourceMajor,
  };
  const relationLists = copied.map((i) => relationsOf(i.table));
  const allSizes = await sizesOf(client, copied, relationLists, partOpts);
  const plans: TableCopyPlan[] = [];
  let offset = 0;
  for (const [n, input] of copied.entries()) {
    const t = input.table;
    const cols = t.columns.filter((c) => !c.generated);
    const count = relationLists[n]!.length;
    const parts = await planParts(client, t, partOpts, allSizes.slice(offset, offset + count));
    offset += count;
    const splitRelations = relationsOf(t).filter((r) => parts.some((p) => p.count > 1 && p.relation.schema === r.schema && p.relation.name === r.name));
    plans.push({
      table: t,
      key: tableKey(t.schema, t.name),
      filter: input.filter,
      columns: cols.map((c) => c.name),
      select: maskedSelectList(cols.map((c) => c.name), t.masking),
      format: chooseFormat(cols, types, opts.sourceMajor, opts.targetMajor),
      parts,
      splitRelations,
      estimatedBytes: parts.reduce((n, p) => n + p.estimatedBytes, 0),
    });
  }
  return plans;
}

/**
 * The size of every relation COPY reads. A plain table whose listed size (the
 * table list read it a moment ago) does not reach the split threshold is one
 * part whatever its pages, so only the others are measured again: planning 200
 * small tables read every file of every table twice before.
 */
async function sizesOf(
  client: pg.Client, copied: readonly CopyTableInput[], relationLists: RelationName[][], partOpts: Parameters<typeof partCount>[1],
): Promise<RelationSize[]> {
  const known = copied.map((i) =>
    i.table.relkind === 'r' && i.table.bytes >= 0 && partCount(i.table.bytes, partOpts) === 1
      ? { mainBytes: i.table.bytes, totalBytes: i.table.bytes, blockSize: 0 }
      : null,
  );
  const measured = await relationSizes(client, relationLists.flatMap((rels, n) => (known[n] ? [] : rels)));
  let next = 0;
  return relationLists.flatMap((rels, n) => (known[n] ? [known[n]] : rels.map(() => measured[next++]!)));
}
