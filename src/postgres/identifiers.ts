/**
 * The only place that quotes SQL identifiers and (where PostgreSQL takes no
 * bind parameters: DDL, CONNECTION strings, SET TRANSACTION SNAPSHOT)
 * literals. Everything else passes values as query parameters.
 */

/** Quote an identifier: always, so that case, spaces, quotes, unicode and reserved words survive. */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new Error('identifier contains a NUL character');
  return `"${name.replace(/"/g, '""')}"`;
}

/** schema.name, both quoted. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** A comma-separated list of quoted column names. */
export function quoteIdentList(names: readonly string[]): string {
  return names.map(quoteIdent).join(', ');
}

/**
 * A string literal for statements that cannot take parameters. Uses E'' only
 * when the value holds a backslash, as PostgreSQL's quote_literal does.
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\u0000')) throw new Error('literal contains a NUL character');
  const body = value.replace(/'/g, "''");
  return value.includes('\\') ? ` E'${body.replace(/\\/g, '\\\\')}'`.trimStart() : `'${body}'`;
}

/** One identifier as people (and pattern parsers) read it: bare when it folds to itself, quoted otherwise. */
export function displayIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}

/** Display form for messages: schema.name, quoted only where needed. */
export function displayName(schema: string, name: string): string {
  return `${displayIdent(schema)}.${displayIdent(name)}`;
}
