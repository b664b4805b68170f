/**
 * Data rules checked against a source database's catalog, and the masks each
 * table in scope gets. Every problem is a configuration error (exit 2) naming
 * the rule's key; all problems of a database are reported at once. Called
 * while the scope is resolved, so validate, init, sync, verify and list all
 * refuse a bad rule before they write anything.
 */
import type pg from 'pg';
import { rulesFor, type ScopeSpec } from './scope.js';
import { UsageError } from '../errors.js';
import type { CatalogTable } from '../postgres/catalog/tables.js';
import { listForeignKeys } from '../postgres/catalog/foreign-keys.js';
import { displayName, qualifiedName, quoteIdent } from '../postgres/identifiers.js';
import { singleStatement } from '../postgres/statement.js';
import {
  exactTableOf, isUniqueRule, maskedSelectList, maskExpression, parseRules, RULE_LENGTH, ruleFor, ruleLocation, type ColumnMask, type DataRule,
  type DataRuleSpec, type RuleName, type TableMasking,
} from './data-rules.js';

/** The parts of a table in scope this module reads and sets. */
export interface MaskableTable extends CatalogTable {
  schemaOnly: boolean;
  masking?: TableMasking;
}

const DATE_TYPES = new Set([1082, 1114, 1184]); // date, timestamp, timestamptz
const TIME_TYPES = new Set([1083, 1266, 1114, 1184]); // time, timetz, timestamp, timestamptz
const IP_TYPES = new Set([869, 650]); // inet, cidr

interface TypeFacts {
  base: number;
  category: string;
}

async function typeFacts(client: pg.Client, oids: number[]): Promise<Map<number, TypeFacts>> {
  const { rows } = await client.query<{ oid: number; base: number; category: string }>(
    `SELECT t.oid::int AS oid, b.oid::int AS base, b.typcategory AS category
       FROM pg_type t JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
      WHERE t.oid = ANY($1::oid[])`,
    [[...new Set(oids)]],
  );
  return new Map(rows.map((r) => [r.oid, { base: r.base, category: r.category }]));
}

/** varchar(n) / char(n) → n, or null when the length is not limited. */
function lengthLimit(type: string): number | null {
  const m = /^(character varying|character|varchar|char|bpchar)\((\d+)\)$/.exec(type);
  return m ? Number(m[2]) : null;
}

/** Why a rule does not fit a column type, or null. */
function typeProblem(rule: DataRule, col: { type: string; notNull: boolean }, facts: TypeFacts | undefined): string | null {
  if (rule.kind === 'null') return col.notNull ? 'the column is NOT NULL' : null;
  if (rule.kind === 'value' || rule.kind === 'statement' || rule.kind === 'untouched') return null; // tried on the server
  const kind: RuleName = rule.kind;
  const string = facts?.category === 'S';
  let fits: boolean;
  switch (kind) {
    case 'random_int':
    case 'random_number':
      fits = string || facts?.category === 'N';
      break;
    case 'random_date':
      fits = string || DATE_TYPES.has(facts?.base ?? 0);
      break;
    case 'random_time':
      fits = string || TIME_TYPES.has(facts?.base ?? 0);
      break;
    case 'random_ip':
      fits = string || IP_TYPES.has(facts?.base ?? 0);
      break;
    default:
      fits = string;
  }
  if (!fits) return `${kind} does not fit a column of type ${col.type}`;
  const need = RULE_LENGTH[kind];
  const limit = lengthLimit(col.type);
  if (string && need !== undefined && limit !== null && limit < need) return `${kind} makes values of ${need} characters, more than ${col.type} holds`;
  return null;
}

/** Runs fn in a read-only transaction that is rolled back; returns the error text or undefined. */
async function serverError(client: pg.Client, sql: string): Promise<string | undefined> {
  await client.query('BEGIN READ ONLY');
  try {
    await client.query(singleStatement(sql));
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await client.query('ROLLBACK').catch(() => {});
  }
}

/**
 * Resolve the data rules of one database against its catalog: sets
 * `masking` on every table in scope that has a masked column, and throws a
 * UsageError (exit 2) listing every rule that cannot be honoured.
 */
export async function resolveMasking(
  client: pg.Client,
  database: string,
  tables: MaskableTable[],
  allTables: readonly CatalogTable[],
  specs: readonly DataRuleSpec[],
): Promise<void> {
  if (!specs.length) return;
  const rules = parseRules(specs);
  const problems: string[] = [];
  // An exact table.column key must name a table and column that exist: a typo must not leave data unmasked.
  for (const r of rules) {
    const exact = exactTableOf(r.key);
    if (!exact) continue;
    const t = allTables.find((x) => x.schema === exact.schema && x.name === exact.table);
    if (!t) {
      problems.push(`${ruleLocation(r.spec)}: table ${displayName(exact.schema, exact.table)} does not exist in database "${database}"`);
    } else if (!r.key.column.wildcard && !t.columns.some((c) => c.name === r.key.column.literal)) {
      problems.push(`${ruleLocation(r.spec)}: column "${r.key.column.literal}" does not exist in ${displayName(t.schema, t.name)}`);
    }
  }
  const candidates: { t: MaskableTable; masks: { mask: ColumnMask; spec: DataRuleSpec; notNull: boolean; typeOid: number; generated: boolean }[] }[] = [];
  for (const t of tables) {
    if (t.schemaOnly) continue;
    const masks: (typeof candidates)[number]['masks'] = [];
    for (const c of t.columns) {
      const r = ruleFor(rules, t.schema, t.name, c.name);
      if (!r || r.spec.rule.kind === 'untouched') continue;
      masks.push({ mask: { column: c.name, type: c.type, rule: r.spec.rule, from: ruleLocation(r.spec) }, spec: r.spec, notNull: c.notNull, typeOid: c.typeOid, generated: c.generated });
    }
    if (masks.length) candidates.push({ t, masks });
  }
  if (!candidates.length) {
    if (problems.length) fail(problems);
    return;
  }
  const facts = await typeFacts(client, candidates.flatMap((c) => c.masks.map((m) => m.typeOid)));
  const fks = await listForeignKeys(client);
  for (const { t, masks } of candidates) {
    const name = displayName(t.schema, t.name);
    const key = t.primaryKey ?? t.uniqueKey;
    const before = problems.length;
    if (t.relkind === 'p' || t.hasInheritanceChildren) {
      problems.push(`${masks[0]!.mask.from}: ${name} is ${t.relkind === 'p' ? 'partitioned' : 'an inheritance parent'}; masking such tables is not supported yet`);
      continue;
    }
    for (const { mask, notNull, typeOid, generated } of masks) {
      const at = `${mask.from} (${name}.${mask.column})`;
      if (generated) {
        problems.push(`${at}: the column is generated; the target computes it`);
        continue;
      }
      if (t.primaryKey?.includes(mask.column)) problems.push(`${at}: the column is part of the primary key`);
      else if (t.replicaIdentity === 'f') problems.push(`${at}: the table has REPLICA IDENTITY FULL, so every column identifies its rows in the stream`);
      else if (t.replicaIdentityColumns.includes(mask.column)) problems.push(`${at}: the column is part of the replica identity`);
      else if (isUniqueRule(mask.rule) && key?.includes(mask.column)) problems.push(`${at}: the column is part of the key unique rules are computed from`);
      const fk = fks.find(
        (f) => (f.schema === t.schema && f.table === t.name && f.columns.includes(mask.column)) ||
          (f.refSchema === t.schema && f.refTable === t.name && f.refColumns.includes(mask.column)),
      );
      if (fk) {
        const other = fk.schema === t.schema && fk.table === t.name ? 'references another table' : `is referenced by ${displayName(fk.schema, fk.table)}`;
        problems.push(`${at}: the column ${other} (foreign key ${fk.name}); masking it would break the key`);
      }
      if (isUniqueRule(mask.rule) && !key) problems.push(`${at}: ${mask.rule.kind} is computed from the row's key, and ${name} has no primary key or unique NOT NULL key`);
      const tp = typeProblem(mask.rule, { type: mask.type, notNull }, facts.get(typeOid));
      if (tp) problems.push(`${at}: ${tp}`);
      if (mask.rule.kind === 'value' || mask.rule.kind === 'statement') {
        const expr = maskExpression(mask, null);
        const sql = mask.rule.kind === 'value' ? `SELECT ${expr}` : `EXPLAIN SELECT ${expr} FROM ONLY ${qualifiedName(t.schema, t.name)}`;
        const err = await serverError(client, sql);
        if (err) problems.push(`${at}: ${mask.rule.kind === 'value' ? 'the value does not fit the column' : 'the statement is not valid for the column'} (${mask.type}): ${err}`);
      }
    }
    const masking: TableMasking = { masks: masks.map((m) => m.mask), keyColumns: masks.some((m) => isUniqueRule(m.mask.rule)) ? key : null };
    if (problems.length === before) {
      // The very SELECT init's COPY runs must plan (every cast included), or the copy would fail midway.
      const cols = t.columns.filter((c) => !c.generated).map((c) => c.name);
      const err = await serverError(client, `EXPLAIN SELECT ${maskedSelectList(cols, masking)} FROM ONLY ${qualifiedName(t.schema, t.name)}`);
      if (err) problems.push(`${masks.map((m) => m.mask.from).join(', ')} (${name}): the masked SELECT is not valid: ${err}`);
    }
    t.masking = masking;
  }
  if (problems.length) fail(problems);
}

function fail(problems: string[]): never {
  const body = problems.length === 1 ? ` ${problems[0]}` : `\n${problems.map((p) => `  - ${p}`).join('\n')}`;
  throw new UsageError(`data rules:${body}`, {
    hint: 'fix the rule in the configuration file (a more specific key such as "table.column" = "untouched" exempts one column); pgferry validate checks every rule without writing anything',
  });
}

/**
 * Masked tables that native replication cannot keep masked on this source:
 * publication column lists (which keep the raw values of masked columns on
 * the source) need PostgreSQL 15. Returns the refusal, or null.
 */
export function streamingRefusal(sourceMajor: number, tables: readonly MaskableTable[]): UsageError | null {
  const masked = tables.filter((t) => !t.schemaOnly && !t.unlogged && t.masking?.masks.length);
  if (!masked.length || sourceMajor >= 15) return null;
  return new UsageError(
    `masked columns cannot be streamed from PostgreSQL ${sourceMajor}: ${masked.map((t) => displayName(t.schema, t.name)).join(', ')} ` +
      `would send raw values of masked columns (publication column lists need PostgreSQL 15 on the source)`,
    { hint: 'copy once with pgferry init --no-sync (init masks in the source\'s SELECT), or upgrade the source to 15+ to stream masked tables' },
  );
}

/** For messages in sync's report and status: "public.customers (email, phone)". */
export function maskedSummary(tables: readonly MaskableTable[]): string[] {
  return tables.filter((t) => t.masking?.masks.length).map((t) => `${displayName(t.schema, t.name)} (${t.masking!.masks.map((m) => quoteIdent(m.column)).join(', ')})`);
}

/**
 * sync refuses to stream with other data rules than the ones init copied
 * with: rows copied under the old rules would stay as they are (possibly raw).
 */
export function changedDataRules(initScope: ScopeSpec | undefined, scope: ScopeSpec, database: string): UsageError | null {
  if (!initScope) return null;
  const norm = (s: ScopeSpec) => JSON.stringify((rulesFor(s, database).dataRules ?? []).map((r) => [r.key, r.rule, r.database ?? null]).sort());
  if (norm(initScope) === norm(scope)) return null;
  return new UsageError(`the data rules of database "${database}" differ from the ones init copied with: rows already on the target would not follow them`, {
    hint: 'run sync with the configuration file init used, or copy again with pgferry init --restart --drop-existing and the new rules',
  });
}
