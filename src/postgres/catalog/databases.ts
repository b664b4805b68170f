/**
 * Database-level facts: how a database was created (encoding, collation,
 * ctype, locale provider) so that its copy can be created alike, and whether
 * a database holds any user objects.
 */
import type pg from 'pg';

export interface DatabaseProperties {
  name: string;
  owner: string;
  encoding: string;
  collate: string;
  ctype: string;
  /** 'c' libc, 'i' ICU, 'b' builtin (17+). */
  localeProvider: 'c' | 'i' | 'b';
  /** ICU or builtin locale, when that provider is used. */
  locale: string | null;
  icuRules: string | null;
}

export async function databaseProperties(client: pg.Client, name: string, major: number): Promise<DatabaseProperties | undefined> {
  const provider = major >= 15 ? 'd.datlocprovider::text' : "'c'";
  const locale = major >= 17 ? 'd.datlocale' : major >= 15 ? 'd.daticulocale' : 'NULL::text';
  const rules = major >= 16 ? 'd.daticurules' : 'NULL::text';
  const { rows } = await client.query<{
    name: string; owner: string; encoding: string; collate: string; ctype: string; provider: string; locale: string | null; rules: string | null;
  }>(
    `SELECT d.datname AS name, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
            d.datcollate AS collate, d.datctype AS ctype, ${provider} AS provider, ${locale} AS locale, ${rules} AS rules
       FROM pg_database d WHERE d.datname = $1`,
    [name],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    name: r.name, owner: r.owner, encoding: r.encoding, collate: r.collate, ctype: r.ctype,
    localeProvider: (r.provider === 'i' || r.provider === 'b' ? r.provider : 'c'),
    locale: r.locale, icuRules: r.rules,
  };
}

/** What a database holds beyond a fresh one: counts of user schemas, relations, functions, types, extensions, large objects. */
export async function userObjectCounts(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<Record<string, number>>(`
    WITH sys AS (SELECT oid FROM pg_namespace
                  WHERE nspname IN ('pg_catalog', 'information_schema', 'pg_toast') OR nspname LIKE 'pg\\_temp\\_%' OR nspname LIKE 'pg\\_toast\\_temp\\_%')
    SELECT (SELECT count(*) FROM pg_namespace n WHERE n.oid NOT IN (SELECT oid FROM sys) AND n.nspname <> 'public')::int AS schemas,
           (SELECT count(*) FROM pg_class c WHERE c.relnamespace NOT IN (SELECT oid FROM sys))::int AS relations,
           (SELECT count(*) FROM pg_proc p WHERE p.pronamespace NOT IN (SELECT oid FROM sys))::int AS functions,
           (SELECT count(*) FROM pg_type t WHERE t.typnamespace NOT IN (SELECT oid FROM sys)
               AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
               AND t.typelem = 0)::int AS types,
           (SELECT count(*) FROM pg_extension e WHERE e.extname <> 'plpgsql')::int AS extensions,
           (SELECT count(*) FROM pg_largeobject_metadata)::int AS large_objects`);
  return rows[0] ?? {};
}

export function describeObjectCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${n} ${k.replace('_', ' ')}`)
    .join(', ');
}

/**
 * What a database carries besides its contents, which pg_dump writes only with --create (and pgferry creates the
 * target database itself): per-database settings (ALTER DATABASE … SET, ALTER ROLE … IN DATABASE … SET), its
 * privileges, comment and connection limit.
 */
export interface DatabaseExtras {
  owner: string;
  connectionLimit: number;
  comment: string | null;
  /** null: the default privileges (datacl NULL). */
  privileges: { grantee: string; privilege: string; grantable: boolean }[] | null;
  /** Each `name=value` as pg_db_role_setting keeps it; role null for the database's own. */
  settings: { role: string | null; setting: string }[];
}

export async function databaseExtras(client: pg.Client, name: string): Promise<DatabaseExtras | undefined> {
  const { rows } = await client.query<DatabaseExtras>(
    `SELECT pg_get_userbyid(d.datdba) AS owner, d.datconnlimit AS "connectionLimit", shobj_description(d.oid, 'pg_database') AS comment,
            CASE WHEN d.datacl IS NULL THEN NULL ELSE
              coalesce((SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                                                          'privilege', a.privilege_type, 'grantable', a.is_grantable)
                                        ORDER BY a.grantee, a.privilege_type)
                          FROM aclexplode(d.datacl) a), '[]') END AS privileges,
            coalesce((SELECT json_agg(json_build_object('role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, 'setting', c.setting)
                                      ORDER BY s.setrole, c.n)
                        FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)
                       WHERE s.setdatabase = d.oid), '[]') AS settings
       FROM pg_database d WHERE d.datname = $1`,
    [name],
  );
  return rows[0];
}
