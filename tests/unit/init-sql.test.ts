/** Pure pieces of init: role scripts, archive listings, patterns and generated SQL. */
import { describe, expect, it } from 'vitest';
import { parseSize } from '../../src/config/precedence.js';
import type { DatabaseProperties } from '../../src/postgres/catalog/databases.js';
import type { ForeignKey } from '../../src/postgres/catalog/foreign-keys.js';
import { addForeignKeySql } from '../../src/pipeline/init/constraints.js';
import { timeFilterPredicate } from '../../src/pipeline/shared/filters.js';
import { violationQuery } from '../../src/pipeline/shared/foreign-key-check.js';
import { estimateSeconds, ESTIMATE_BYTES_PER_SECOND_PER_JOB, type PlannedTable } from '../../src/pipeline/init/plan.js';
import { splitRoleScript } from '../../src/pipeline/init/roles.js';
import { exactPattern, executableScript, parseToc, splitScript } from '../../src/pipeline/init/schema.js';
import { createDatabaseSql } from '../../src/pipeline/init/target-db.js';

const fk: ForeignKey = {
  oid: 1, name: 'orders_customer_fk', schema: 'Sales', table: 'order items', partitioned: false, refSchema: 'public', refTable: 'Customers',
  refPartitioned: false, columns: ['cust id', 'region'], refColumns: ['id', 'region'], validated: true,
  definition: 'FOREIGN KEY ("cust id", region) REFERENCES public."Customers"(id, region)',
};

describe('init helpers', () => {
  it('splits a pg_dumpall roles script into statements', () => {
    const script = [
      '--',
      '-- PostgreSQL database cluster dump',
      '\\restrict abc',
      "SET default_transaction_read_only = off;",
      'CREATE ROLE "we;ird";',
      "ALTER ROLE \"we;ird\" WITH NOSUPERUSER INHERIT LOGIN;",
      "COMMENT ON ROLE app IS 'line one;",
      "line two';",
      'GRANT pg_read_all_data TO app GRANTED BY postgres;',
      '\\unrestrict abc',
    ].join('\n');
    expect(splitRoleScript(script)).toEqual([
      'CREATE ROLE "we;ird";',
      'ALTER ROLE "we;ird" WITH NOSUPERUSER INHERIT LOGIN;',
      "COMMENT ON ROLE app IS 'line one;\nline two';",
      'GRANT pg_read_all_data TO app GRANTED BY postgres;',
    ]);
  });

  it('makes a pre-data script one query can run: the \\restrict pair goes, any other meta-command sends it to pg_restore', () => {
    const script = [
      '--', '-- PostgreSQL database dump', '--', '',
      '\\restrict AbC123', '',
      "SET statement_timeout = 0;", 'SET transaction_timeout = 0;', "SELECT pg_catalog.set_config('search_path', '', false);", '',
      '--', '-- Name: t; Type: TABLE; Schema: public; Owner: o', '--', '',
      'CREATE TABLE public.t (', '    id integer', ');', '',
      "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$SELECT '", 'SET transaction_timeout = 0;', "'$$;", '',
      '\\unrestrict AbC123', '',
    ].join('\n');
    const for15 = executableScript(script, 15)!;
    expect(for15).not.toMatch(/restrict/);
    // Only the header's SET goes (a target before 17 does not know it); the function body keeps its text.
    expect(for15.split('\n').filter((l) => l === 'SET transaction_timeout = 0;')).toEqual(['SET transaction_timeout = 0;']);
    expect(for15).toContain('CREATE TABLE public.t (');
    expect(executableScript(script, 17)!.split('\n').filter((l) => l === 'SET transaction_timeout = 0;')).toHaveLength(2);
    // Without the pair (an older pg_restore) the script is taken as it is.
    expect(executableScript('CREATE TABLE a (id int);\n', 15)).toBe('CREATE TABLE a (id int);\n');
    // A line that psql would take as a meta-command, or a \\restrict without its \\unrestrict: left to pg_restore.
    expect(executableScript(script.replace('CREATE TABLE public.t (', "CREATE TABLE public.t (\n\\x 'a'"), 15)).toBeNull();
    expect(executableScript(script.replace('\\unrestrict AbC123', ''), 15)).toBeNull();
    expect(executableScript('\\connect other\nCREATE TABLE a (id int);\n', 15)).toBeNull();
  });

  it('reads a pg_restore listing, multi-word kinds included', () => {
    const toc = parseToc(
      [';', '; Archive created at 2026-01-01', '3301; 2606 16390 CONSTRAINT public t t_pkey postgres', '3310; 2606 16400 FK CONSTRAINT public c c_t_fk postgres',
        '3320; 0 0 MATERIALIZED VIEW DATA public mv postgres', '3330; 1259 16500 INDEX public "my idx" postgres'].join('\n'),
    );
    expect(toc.map((e) => [e.dumpId, e.tableOid, e.oid, e.desc])).toEqual([
      [3301, 2606, 16390, 'CONSTRAINT'],
      [3310, 2606, 16400, 'FK CONSTRAINT'],
      [3320, 0, 0, 'MATERIALIZED VIEW DATA'],
      [3330, 1259, 16500, 'INDEX'],
    ]);
  });

  it('quotes pg_dump patterns so that nothing in a name is a wildcard', () => {
    expect(exactPattern('Sales Data', 'a*b?."c"')).toBe('"Sales Data"."a*b?.""c"""');
  });

  it('builds foreign key statements and the violation probe with quoted names', () => {
    expect(addForeignKeySql(fk, false)).toBe(`ALTER TABLE ONLY "Sales"."order items" ADD CONSTRAINT "orders_customer_fk" ${fk.definition}`);
    expect(addForeignKeySql(fk, true)).toMatch(/REFERENCES public."Customers"\(id, region\) NOT VALID$/);
    expect(addForeignKeySql({ ...fk, definition: `${fk.definition} NOT VALID` }, true)).not.toMatch(/NOT VALID NOT VALID/);
    expect(addForeignKeySql({ ...fk, partitioned: true }, false)).toMatch(/^ALTER TABLE "Sales"/);
    expect(violationQuery(fk, 'x > 1', { schemaOnly: false, filter: "region = 'eu'" })).toBe(
      'SELECT 1 FROM (SELECT * FROM ONLY "Sales"."order items" WHERE (x > 1)) c WHERE c."cust id" IS NOT NULL AND c."region" IS NOT NULL ' +
        `AND NOT EXISTS (SELECT 1 FROM (SELECT * FROM ONLY "public"."Customers" WHERE (region = 'eu')) p WHERE p."id" = c."cust id" AND p."region" = c."region") LIMIT 1`,
    );
    expect(violationQuery(fk, undefined, { schemaOnly: true })).toBe(
      'SELECT 1 FROM (SELECT * FROM ONLY "Sales"."order items") c WHERE c."cust id" IS NOT NULL AND c."region" IS NOT NULL LIMIT 1',
    );
  });

  it('turns a time filter into a constant predicate', () => {
    expect(timeFilterPredicate('Created At', "2026-01-01T00:00:00.000000Z")).toBe(`"Created At" >= '2026-01-01T00:00:00.000000Z'::timestamptz`);
  });

  it('creates the target database like the source', () => {
    const props: DatabaseProperties = { name: 'shop', owner: 'app', encoding: 'UTF8', collate: 'de_DE.UTF-8', ctype: 'de_DE.UTF-8', localeProvider: 'i', locale: 'de-DE', icuRules: null };
    const warnings: string[] = [];
    expect(createDatabaseSql('new "db"', props, 17, 'app', (m) => warnings.push(m))).toBe(
      `CREATE DATABASE "new ""db""" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'de_DE.UTF-8' LC_CTYPE 'de_DE.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' OWNER "app"`,
    );
    expect(warnings).toEqual([]);
    expect(createDatabaseSql('x', props, 14, null, (m) => warnings.push(m))).not.toMatch(/ICU/);
    expect(warnings[0]).toMatch(/ICU.*libc collation de_DE.UTF-8/);
  });

  it('parses sizes and estimates time', () => {
    expect(parseSize('1GB', 'f')).toBe(1024 ** 3);
    expect(parseSize('512 MiB', 'f')).toBe(512 * 1024 ** 2);
    expect(parseSize('100', 'f')).toBe(100);
    expect(() => parseSize('lots', '--split-tables-larger-than')).toThrow(/--split-tables-larger-than: "lots" is not a size/);
    const t = (bytes: number, parts = 1): PlannedTable => ({ schema: 's', name: 'n', schemaOnly: false, filter: null, format: 'binary', parts, estimatedBytes: bytes, estimatedRows: 0, done: false });
    const r = ESTIMATE_BYTES_PER_SECOND_PER_JOB;
    expect(estimateSeconds([t(4 * r), t(4 * r)], 4)).toBe(4); // one big table bounds it
    expect(estimateSeconds([t(8 * r, 4), t(8 * r, 4)], 4)).toBe(4);
    expect(estimateSeconds([t(r), t(r), t(r), t(r)], 1)).toBe(4);
  });
});

describe('splitScript', () => {
  const item = (name: string, body: string) => `--\n-- Name: ${name}; Type: TABLE; Schema: public; Owner: app\n--\n\n${body}\n\n\n`;
  const preamble = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n";
  const script = preamble + ['a', 'b', 'c', 'd', 'e'].map((n) => item(n, `CREATE TABLE public.${n} (id int);`)).join('') + '--\n-- PostgreSQL database dump complete\n--\n';

  it('cuts at item headers, each part behind the preamble, the tail in the last', () => {
    const parts = splitScript(script, 5, 2)!;
    expect(parts).toHaveLength(3);
    for (const p of parts) expect(p.startsWith(preamble)).toBe(true);
    expect(parts.map((p) => [...p.matchAll(/CREATE TABLE public\.(\w)/g)].map((m) => m[1]).join(''))).toEqual(['ab', 'cd', 'e']);
    expect(parts[2]).toMatch(/dump complete\n--\n$/);
    // Together the parts hold the script once, preambles aside.
    expect(parts.map((p) => p.slice(preamble.length)).join('')).toBe(script.slice(preamble.length));
  });

  it('refuses a script whose headers do not match the archive items, as when a function body holds a header line', () => {
    expect(splitScript(script, 4, 2)).toBeNull();
    const body = "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$SELECT '\n--\n-- Name: x; Type: TABLE; Schema: public; Owner: app\n--\n'$$;";
    expect(splitScript(preamble + item('f', body) + item('a', 'CREATE TABLE public.a (id int);'), 2, 1)).toBeNull();
    expect(splitScript(preamble, 0, 1)).toBeNull();
  });
});
