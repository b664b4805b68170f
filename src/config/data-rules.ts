/**
 * Data masking rules (`[data_rules]` and `[databases.NAME.data_rules]` in the
 * configuration file): what a rule is, which rule applies to a column, and
 * the SQL expression that computes a masked value. Pure functions, no
 * database: the catalog checks are in masking-catalog.ts, the objects on the
 * target in masking-target.ts.
 *
 * One expression serves every place a masked value is made or checked, so
 * the same source row always gets the same value where the rule is
 * deterministic:
 * - init's COPY (SELECT … FROM the source table): raw values never leave the source;
 * - the target's trigger for streamed rows (column references become NEW."col");
 * - verify's source-side hash (the masked source value is compared with the target).
 *
 * Unique rules are computed from the row's key as text (`ROW(key…)::text`
 * under the canonical session settings, which the COPY session, verify and the
 * trigger function all use): the full md5 for e-mails and secrets, 60 bits of
 * it as digits for phones.
 */
import { UsageError } from '../errors.js';
import { didYouMean } from './did-you-mean.js';
import { quoteIdent, quoteLiteral } from '../postgres/identifiers.js';

export const RULE_NAMES = [
  'unique_email', 'unique_phone', 'unique_secret',
  'random_letter', 'random_int', 'random_number', 'random_date', 'random_time', 'random_ip', 'random_string',
  'null', 'untouched',
] as const;
export type RuleName = (typeof RULE_NAMES)[number];

export type DataRule =
  | { kind: RuleName }
  | { kind: 'value'; value: string | number | boolean }
  | { kind: 'statement'; statement: string };

/** One entry of a data_rules table, as the scope carries it (JSON, stored in the state). */
export interface DataRuleSpec {
  /** The key as written: column, table.column or schema.table.column; * and ? are wildcards. */
  key: string;
  rule: DataRule;
  /** Set for a [databases.NAME.data_rules] entry. */
  database?: string;
}

/** Where a rule was written, for messages: data_rules."customers.email". */
export function ruleLocation(spec: Pick<DataRuleSpec, 'key' | 'database'>): string {
  const db = spec.database === undefined ? '' : `databases.${/^[A-Za-z0-9_-]+$/.test(spec.database) ? spec.database : JSON.stringify(spec.database)}.`;
  return `${db}data_rules.${/^[A-Za-z0-9_-]+$/.test(spec.key) ? spec.key : JSON.stringify(spec.key)}`;
}

export function describeRule(rule: DataRule): string {
  if (rule.kind === 'value') return `value ${JSON.stringify(rule.value)}`;
  if (rule.kind === 'statement') return `statement ${rule.statement}`;
  return rule.kind;
}

/** Unique rules need the row's key; they are deterministic. */
export function isUniqueRule(rule: DataRule): boolean {
  return rule.kind === 'unique_email' || rule.kind === 'unique_phone' || rule.kind === 'unique_secret';
}

/** The same source row always gets the same masked value (init, stream and verify agree). */
export function isDeterministic(rule: DataRule): boolean {
  return isUniqueRule(rule) || rule.kind === 'null' || rule.kind === 'value' || rule.kind === 'untouched';
}

/** A rule value from the file: a rule name, { value = … } or { statement = "…" }. */
export function parseDataRule(raw: unknown, at: string): DataRule {
  const known = `known rules: ${RULE_NAMES.join(', ')}, { value = … }, { statement = "SQL expression" }`;
  if (typeof raw === 'string') {
    const name = raw.trim();
    if ((RULE_NAMES as readonly string[]).includes(name)) return { kind: name as RuleName };
    const guess = didYouMean(name, RULE_NAMES);
    throw new UsageError(`${at}: unknown rule "${raw}"${guess ? ` (did you mean "${guess}"?)` : ''}`, { hint: known });
  }
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    const entries = Object.entries(raw as Record<string, unknown>);
    const keys = entries.map(([k]) => k);
    const unknown = keys.filter((k) => k !== 'value' && k !== 'statement');
    if (unknown.length) {
      const guess = didYouMean(unknown[0]!, ['value', 'statement']);
      throw new UsageError(`${at}.${unknown[0]}: unknown key${guess ? ` (did you mean "${guess}"?)` : ''}`, { hint: 'a rule table holds one key: value or statement' });
    }
    if (keys.length !== 1) throw new UsageError(`${at}: give one of value and statement`, { hint: known });
    const [k, v] = entries[0]!;
    if (k === 'statement') {
      if (typeof v !== 'string' || !v.trim()) throw new UsageError(`${at}.statement: expected a SQL expression as a string`);
      return { kind: 'statement', statement: v.trim() };
    }
    if (typeof v === 'string' || typeof v === 'boolean') return { kind: 'value', value: v };
    if (typeof v === 'number' || typeof v === 'bigint') {
      if (typeof v === 'number' && !Number.isFinite(v)) throw new UsageError(`${at}.value: ${String(v)} is not a value a column can hold`);
      return { kind: 'value', value: typeof v === 'bigint' ? v.toString() : v };
    }
    if (v instanceof Date || (v !== null && typeof v === 'object' && 'toISOString' in v)) return { kind: 'value', value: String((v as { toISOString(): string }).toISOString()) };
    throw new UsageError(`${at}.value: expected a string, number or boolean`);
  }
  throw new UsageError(`${at}: expected a rule name (a string) or a table such as { value = "x" }`, { hint: known });
}

// ---------------------------------------------------------------------------
// Keys and the most specific rule

interface KeyPart {
  literal: string;
  wildcard: boolean;
  regex: RegExp;
}

export interface RuleKey {
  text: string;
  schema: KeyPart | null;
  table: KeyPart | null;
  column: KeyPart;
}

/** column | table.column | schema.table.column; unquoted letters fold to lower case, "Quoted" keep case; * and ? outside quotes are wildcards. */
export function parseRuleKey(text: string, at: string): RuleKey {
  const parts: { literal: string; regex: string; wildcard: boolean }[] = [];
  let cur = { literal: '', regex: '', wildcard: false };
  let inQuotes = false;
  const src = text.trim();
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (inQuotes) {
      if (c === '"') {
        if (src[i + 1] === '"') {
          cur.literal += '"';
          cur.regex += '"';
          i++;
        } else inQuotes = false;
      } else {
        cur.literal += c;
        cur.regex += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      }
      continue;
    }
    if (c === '"') {
      inQuotes = true;
    } else if (c === '.') {
      parts.push(cur);
      cur = { literal: '', regex: '', wildcard: false };
    } else if (c === '*' || c === '?') {
      cur.regex += c === '*' ? '.*' : '.';
      cur.literal += c;
      cur.wildcard = true;
    } else {
      const l = c.toLowerCase();
      cur.literal += l;
      cur.regex += l.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  parts.push(cur);
  const hint = 'write column, table.column or schema.table.column (e.g. email, customers.email, public.customers.email); quote mixed case: \'"Customers"."Email"\'';
  if (inQuotes) throw new UsageError(`${at}: unterminated quoted name in "${text}"`, { hint });
  if (parts.length > 3 || parts.some((p) => p.literal === '')) {
    throw new UsageError(`${at}: "${text}" is not a column key`, { hint });
  }
  const mk = (p: { literal: string; regex: string; wildcard: boolean }): KeyPart => ({ literal: p.literal, wildcard: p.wildcard, regex: new RegExp(`^${p.regex}$`, 's') });
  const [a, b, c] = parts.map(mk);
  if (parts.length === 1) return { text, schema: null, table: null, column: a! };
  // table.column: an unqualified table is in schema public, as everywhere else in pgferry.
  if (parts.length === 2) return { text, schema: mk({ literal: 'public', regex: 'public', wildcard: false }), table: a!, column: b! };
  return { text, schema: a!, table: b!, column: c! };
}

export function keyMatches(k: RuleKey, schema: string, table: string, column: string): boolean {
  if (!k.column.regex.test(column)) return false;
  if (k.table && !k.table.regex.test(table)) return false;
  if (k.schema && !k.schema.regex.test(schema)) return false;
  return true;
}

/** Exact key naming one table: "schema.table", or null. */
export function exactTableOf(k: RuleKey): { schema: string; table: string } | null {
  if (!k.table || !k.schema || k.table.wildcard || k.schema.wildcard) return null;
  return { schema: k.schema.literal, table: k.table.literal };
}

/** Higher is more specific: named table, then exact names, then a database's own rule, then longer literal text. */
function specificity(k: RuleKey, spec: DataRuleSpec): number[] {
  const parts = [k.schema, k.table, k.column];
  const named = k.table ? 1 : 0;
  const exact = parts.filter((p) => p && !p.wildcard).length;
  const literal = parts.reduce((n, p) => n + (p ? p.literal.replace(/[*?]/g, '').length : 0), 0);
  const explicitSchema = k.text.split('.').length === 3 ? 1 : 0;
  return [named, exact, spec.database !== undefined ? 1 : 0, explicitSchema, literal];
}

export interface ParsedRule {
  spec: DataRuleSpec;
  key: RuleKey;
}

export function parseRules(specs: readonly DataRuleSpec[]): ParsedRule[] {
  return specs.map((spec) => ({ spec, key: parseRuleKey(spec.key, ruleLocation(spec)) }));
}

/** The rule for a column: the most specific matching key wins; ties go to the later entry (a database's own over a global one). */
export function ruleFor(rules: readonly ParsedRule[], schema: string, table: string, column: string): ParsedRule | undefined {
  let best: ParsedRule | undefined;
  let bestScore: number[] = [];
  for (const r of rules) {
    if (!keyMatches(r.key, schema, table, column)) continue;
    const s = specificity(r.key, r.spec);
    let better = !best;
    for (let i = 0; !better && i < s.length; i++) {
      if (s[i]! > bestScore[i]!) better = true;
      else if (s[i]! < bestScore[i]!) break;
      else if (i === s.length - 1) better = true;
    }
    if (better) {
      best = r;
      bestScore = s;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------
// Masks of a table and their SQL

/** A masked column of a table in scope (an `untouched` result is no mask). */
export interface ColumnMask {
  column: string;
  /** format_type() of the column; the masked value is cast to it. */
  type: string;
  rule: DataRule;
  /** Where the rule was written (for messages and list/status). */
  from: string;
}

export interface TableMasking {
  masks: ColumnMask[];
  /** Key columns unique rules are computed from (primary key, else a unique NOT NULL key); null when none is needed. */
  keyColumns: string[] | null;
}

/** Minimum text length a unique rule produces (a varchar(n) must hold it, or the cast would cut it and lose uniqueness). */
export const RULE_LENGTH: Partial<Record<RuleName, number>> = {
  unique_email: 44, unique_phone: 20, unique_secret: 39, random_letter: 1, random_string: 12, random_ip: 15,
};

/** The masked value of one column as SQL; `ref` turns a column name into a reference (bare in SELECT, NEW."x" in a trigger). */
export function maskExpression(mask: ColumnMask, keyColumns: readonly string[] | null, ref: (column: string) => string = quoteIdent): string {
  const keyText = () => {
    if (!keyColumns?.length) throw new Error(`unique rule on ${mask.column} without a key`);
    return `ROW(${keyColumns.map(ref).join(', ')})::text`;
  };
  const r = mask.rule;
  let expr: string;
  switch (r.kind) {
    case 'unique_email':
      expr = `md5(${keyText()}) || '@example.com'`;
      break;
    case 'unique_phone':
      expr = `'+' || lpad((('x' || substr(md5(${keyText()}), 1, 15))::bit(60)::int8)::text, 19, '0')`;
      break;
    case 'unique_secret':
      expr = `'secret_' || md5(${keyText()})`;
      break;
    case 'random_letter':
      expr = `chr(65 + floor(random() * 26)::int)`;
      break;
    case 'random_int':
      expr = `floor(random() * 1000)::int`;
      break;
    case 'random_number':
      expr = `round((random() * 1000)::numeric, 2)`;
      break;
    case 'random_date':
      expr = `date '1970-01-01' + floor(random() * 20000)::int`;
      break;
    case 'random_time':
      expr = `timestamptz '2000-01-01 00:00:00+00' + random() * interval '9000 days'`;
      break;
    case 'random_ip':
      expr = `concat_ws('.', 10, floor(random() * 256)::int, floor(random() * 256)::int, 1 + floor(random() * 254)::int)`;
      break;
    case 'random_string':
      expr = `substr(md5(random()::text), 1, 12)`;
      break;
    case 'null':
      expr = 'NULL';
      break;
    case 'value':
      expr = quoteLiteral(String(r.value));
      break;
    case 'statement':
      expr = r.statement;
      break;
    case 'untouched':
      return ref(mask.column);
  }
  // The newline ends a trailing "--" comment in a statement.
  return `CAST((${expr}\n) AS ${mask.type})`;
}

/** The SELECT list of a masked COPY: every column by name, masked ones computed (named as the column). */
export function maskedSelectList(columns: readonly string[], m: TableMasking | undefined): string | undefined {
  if (!m?.masks.length) return undefined;
  return columns
    .map((c) => {
      const mask = m.masks.find((x) => x.column === c);
      return mask ? `${maskExpression(mask, m.keyColumns)} AS ${quoteIdent(c)}` : quoteIdent(c);
    })
    .join(', ');
}

/**
 * The publication's column list for a masked table: every non-generated
 * column except the masked ones (the target computes those), or null when
 * the table has no mask.
 */
export function publishedColumns(columns: readonly { name: string; generated: boolean }[], m: TableMasking | undefined): string[] | null {
  if (!m?.masks.length) return null;
  return columns.filter((c) => !c.generated && !m.masks.some((x) => x.column === c.name)).map((c) => c.name);
}

/** How verify treats each masked column: compare against this source expression, or leave it out (random rules, statements). */
export function verifyPlan(m: TableMasking | undefined): { sourceExpr: Map<string, string>; skipped: string[] } {
  const sourceExpr = new Map<string, string>();
  const skipped: string[] = [];
  for (const mask of m?.masks ?? []) {
    if (isDeterministic(mask.rule)) sourceExpr.set(mask.column, maskExpression(mask, m!.keyColumns));
    else skipped.push(mask.column);
  }
  return { sourceExpr, skipped };
}

/** One entry per masked column, for validate, list and status: "email (unique_email)". */
export function describeMasks(m: TableMasking | undefined): string[] {
  return (m?.masks ?? []).map((x) => `${x.column} (${describeRule(x.rule)})`);
}
