/**
 * What the applier needs to know of a target table, and the check that a
 * relation message matches it. DDL is not replicated: a column the source
 * sends that the target lacks stops the applier (exit 4) naming table and
 * column, rather than dropping its values. Columns only the target has
 * (masked columns its trigger computes, or a column dropped on the source)
 * keep what the target gives them, as under native replication.
 */
import type pg from 'pg';
import { OperationError } from '../../../errors.js';
import { displayName, qualifiedName } from '../../../postgres/identifiers.js';
import { MASK_TRIGGER } from '../../shared/masking-target.js';
import type { Relation } from './pgoutput.js';

/** Types without an equality operator: a full-row match compares their text. */
const NO_EQUALITY = new Set(['json', 'xml', 'point', 'line', 'lseg', 'box', 'path', 'polygon', 'circle']);

export interface TargetColumn {
  /** The type as a cast target, from format_type (qualified and quoted where needed). */
  type: string;
  /** Compare as text when matching whole rows (no equality operator). */
  textCompare: boolean;
  /**
   * GENERATED ALWAYS AS IDENTITY: an INSERT must say OVERRIDING SYSTEM VALUE, and an UPDATE may not set it (only to
   * DEFAULT). The native subscription's apply bypasses both; the client applier writes SQL.
   */
  always: boolean;
}

export interface ApplyTable {
  relation: Relation;
  /** schema.name quoted. */
  sql: string;
  display: string;
  /** Per column of the relation message, the target's type. */
  types: TargetColumn[];
  /** Indexes (into the relation's columns) of the replica identity key; empty under REPLICA IDENTITY FULL. */
  key: number[];
  /**
   * Set-based apply with collapsing per key: only when the key is the target's only unique
   * index (another unique index could be violated midway by reordered rows).
   */
  setBased: boolean;
  /** An ON CONFLICT target exists for the key (a unique index on exactly the key columns). */
  conflictTarget: boolean;
}

interface CatalogRow {
  cols: { name: string; type: string; base: string; generated: boolean; always: boolean }[] | null;
  uniques: string[][] | null;
  /** pgferry's masking trigger is on the table (ENABLE ALWAYS): the columns the source does not send are masked ones. */
  masked: boolean;
}

async function readCatalog(client: pg.Client, schema: string, name: string): Promise<CatalogRow | undefined> {
  const { rows } = await client.query<CatalogRow>(
    `SELECT (SELECT json_agg(json_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                    'base', coalesce(et.typname, t.typname), 'generated', a.attgenerated <> '', 'always', a.attidentity = 'a') ORDER BY a.attnum)
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typlen = -1 AND t.typelem <> 0
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS cols,
            (SELECT json_agg((SELECT json_agg(a.attname ORDER BY a.attname) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum = ANY (i.indkey)))
               FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL) AS uniques,
            EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = $3 AND tg.tgenabled = 'A') AS masked
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, name, MASK_TRIGGER],
  );
  return rows[0];
}

/** Describe the target table of a relation message, or stop when its columns differ. */
export async function describeTarget(client: pg.Client, rel: Relation, warn: (m: string) => void): Promise<ApplyTable> {
  const display = displayName(rel.schema, rel.name);
  const cat = await readCatalog(client, rel.schema, rel.name);
  if (!cat) {
    throw new OperationError(`table ${display} exists on the source but not on the target: the stream carries its changes and has nowhere to put them`, {
      hint: 'create it on the target (pg_dump --schema-only --table=…), then run sync again; nothing was applied past the last committed batch',
    });
  }
  const cols = (cat.cols ?? []).filter((c) => !c.generated);
  const byName = new Map(cols.map((c) => [c.name, c]));
  const types: TargetColumn[] = [];
  for (const c of rel.columns) {
    const t = byName.get(c.name);
    if (!t) {
      throw new OperationError(`column "${c.name}" of table ${display} is on the source but not on the target (DDL is not replicated): its values cannot be applied`, {
        hint: `add the column on the target (ALTER TABLE ${display} ADD COLUMN …) with the source's type, then run sync again; nothing past the last committed batch was applied`,
      });
    }
    types.push({ type: t.type, textCompare: NO_EQUALITY.has(t.base), always: t.always });
  }
  const extra = cols.filter((c) => !rel.columns.some((r) => r.name === c.name));
  // A masked table's left-out columns are computed by its trigger (masking-target.ts): nothing to warn about.
  if (extra.length && !cat.masked) warn(`${display}: the target has columns the source does not send (${extra.map((c) => c.name).join(', ')}); they keep their default or computed values`);

  const key = rel.identity === 'f' ? [] : rel.columns.flatMap((c, i) => (c.key ? [i] : []));
  const keyNames = key.map((i) => rel.columns[i]!.name).sort();
  const uniques = cat.uniques ?? [];
  const conflictTarget = key.length > 0 && uniques.some((u) => u.length === keyNames.length && u.every((n, i) => n === keyNames[i]));
  const setBased = conflictTarget && uniques.length === 1;
  return { relation: rel, sql: qualifiedName(rel.schema, rel.name), display, types, key, setBased, conflictTarget };
}
