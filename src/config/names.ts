/**
 * Table names and patterns as users write them, with pg_dump's rules:
 * unquoted letters fold to lower case, "quoted" parts are taken as written,
 * `*` and `?` are wildcards outside quotes, an unqualified name means schema
 * `public`.
 */
import { UsageError } from '../errors.js';

export interface NamePattern {
  /** As the user wrote it, for messages. */
  text: string;
  schema: RegExp;
  name: RegExp;
  /** True when neither part has a wildcard: an exact table. */
  exact: boolean;
  /** The literal parts when exact. */
  schemaName: string;
  tableName: string;
}

interface Part {
  literal: string;
  regex: string;
  wildcard: boolean;
}

/** Split "schema.table" at unquoted dots, honouring "" escapes inside quotes. Returns parts and the rest after `stopAt`. */
function scanParts(input: string, stopAt?: string): { parts: Part[]; rest: string | undefined } {
  const parts: Part[] = [];
  let cur: Part = { literal: '', regex: '', wildcard: false };
  let inQuotes = false;
  let i = 0;
  for (; i < input.length; i++) {
    const c = input[i]!;
    if (inQuotes) {
      if (c === '"') {
        if (input[i + 1] === '"') {
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
    } else if (stopAt !== undefined && c === stopAt) {
      break;
    } else if (c === '*') {
      cur.regex += '.*';
      cur.literal += c;
      cur.wildcard = true;
    } else if (c === '?') {
      cur.regex += '.';
      cur.literal += c;
      cur.wildcard = true;
    } else {
      const lower = c.toLowerCase();
      cur.literal += lower;
      cur.regex += lower.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  if (inQuotes) throw new UsageError(`unterminated quoted name in "${input}"`);
  parts.push(cur);
  const rest = stopAt !== undefined && i < input.length ? input.slice(i + 1) : undefined;
  return { parts, rest };
}

function toPattern(text: string, parts: Part[], what: string): NamePattern {
  if (parts.length > 2 || parts.some((p) => p.literal === '')) {
    throw new UsageError(`${what}: "${text}" is not a table name (schema.table, or table for schema public)`);
  }
  const [schemaPart, namePart] = parts.length === 2 ? [parts[0]!, parts[1]!] : [{ literal: 'public', regex: 'public', wildcard: false }, parts[0]!];
  return {
    text,
    schema: new RegExp(`^${schemaPart.regex}$`),
    name: new RegExp(`^${namePart.regex}$`),
    exact: !schemaPart.wildcard && !namePart.wildcard,
    schemaName: schemaPart.literal,
    tableName: namePart.literal,
  };
}

/** Parse a table pattern such as `public.order*`, `"Sales"."Q?"`, `events`. */
export function parseTablePattern(text: string, what = 'table pattern'): NamePattern {
  const trimmed = text.trim();
  if (!trimmed) throw new UsageError(`${what}: empty table name`);
  return toPattern(trimmed, scanParts(trimmed).parts, what);
}

/**
 * Parse "schema.table:rest" (the rest may itself contain ':'). The table part
 * must be exact (no wildcards).
 */
export function parseTableAndRest(text: string, what: string): { schema: string; table: string; rest: string } {
  const { parts, rest } = scanParts(text.trim(), ':');
  if (rest === undefined) throw new UsageError(`${what}: "${text}" needs the form schema.table:…`);
  const p = toPattern(text, parts, what);
  if (!p.exact) throw new UsageError(`${what}: "${text}" names tables with a wildcard; name one table`);
  return { schema: p.schemaName, table: p.tableName, rest };
}

export function matches(p: NamePattern, schema: string, name: string): boolean {
  return p.schema.test(schema) && p.name.test(name);
}

/** Split comma-separated flag values ("a,b" or repeated flags) into a flat list, respecting quotes. */
export function splitList(values: string | readonly string[] | undefined): string[] {
  if (values === undefined) return [];
  const list = typeof values === 'string' ? [values] : values;
  const out: string[] = [];
  for (const v of list) {
    let cur = '';
    let q = false;
    for (const c of String(v)) {
      if (c === '"') q = !q;
      if (c === ',' && !q) {
        if (cur.trim()) out.push(cur.trim());
        cur = '';
      } else cur += c;
    }
    if (cur.trim()) out.push(cur.trim());
  }
  return out;
}
