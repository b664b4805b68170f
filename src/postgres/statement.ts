/**
 * SQL that carries user text (row filters): sent with the extended protocol,
 * which runs exactly one statement, so a second statement smuggled into the
 * text is a syntax error instead of being run.
 */
import type pg from 'pg';

export function singleStatement(text: string, values: unknown[] = []): pg.QueryConfig {
  return { text, values, queryMode: 'extended' } as pg.QueryConfig;
}
