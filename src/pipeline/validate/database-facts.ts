/**
 * Facts about one database (source or target) that several checks share:
 * encoding and locale, size, the current user's rights in it, installed
 * extensions, large objects, sequences and the settings that load libraries at login.
 */
import type pg from 'pg';
import { notExtensionMemberSql } from '../../postgres/catalog/tables.js';

export interface DatabaseLocale {
  encoding: string;
  collate: string;
  ctype: string;
  /** 'libc', 'icu' or 'builtin' (always 'libc' before PostgreSQL 15). */
  provider: 'libc' | 'icu' | 'builtin';
  /** ICU or builtin locale; null for libc. */
  locale: string | null;
}

export interface InstalledExtension {
  name: string;
  version: string;
}

export interface SequenceInfo {
  schema: string;
  name: string;
  canSelect: boolean;
  /** The table whose column owns it (serial / identity), or null for a free-standing sequence. */
  ownerTableOid: number | null;
}

export interface DatabaseFacts extends DatabaseLocale {
  name: string;
  sizeBytes: number;
  /** CREATE on the database (publications on the source; schemas on the target). */
  canCreate: boolean;
  extensions: InstalledExtension[];
  largeObjects: number;
  sequences: SequenceInfo[];
  /** The database's session_ and local_preload_libraries settings (its own and per role), `name=value`. */
  preloadSettings: { role: string | null; setting: string }[];
  /** Its event triggers (names). */
  eventTriggers: string[];
}

const PROVIDERS: Record<string, DatabaseLocale['provider']> = { c: 'libc', i: 'icu', b: 'builtin' };

/** SQL for encoding and locale of every database, by server major (columns were added in 15 and renamed in 17). */
export function databaseLocaleSql(major: number): string {
  const provider = major >= 15 ? 'd.datlocprovider::text' : "'c'";
  const locale = major >= 17 ? 'd.datlocale' : major >= 15 ? 'd.daticulocale' : 'NULL::text';
  return `SELECT d.datname AS name, pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate,
                 d.datctype AS ctype, ${provider} AS provider, ${locale} AS locale
            FROM pg_database d`;
}

export function toLocale(row: { encoding: string; collate: string; ctype: string; provider: string; locale: string | null }): DatabaseLocale {
  return {
    encoding: row.encoding,
    collate: row.collate,
    ctype: row.ctype,
    provider: PROVIDERS[row.provider] ?? 'libc',
    locale: row.provider === 'c' ? null : row.locale,
  };
}

export async function gatherDatabaseFacts(client: pg.Client, major: number): Promise<DatabaseFacts> {
  const { rows } = await client.query<{
    name: string; encoding: string; collate: string; ctype: string; provider: string; locale: string | null;
    size: string; can_create: boolean; large_objects: number; preload_settings: { role: string | null; setting: string }[]; event_triggers: string[];
  }>(
    `SELECT l.*, pg_database_size(current_database())::text AS size,
            has_database_privilege(current_database(), 'CREATE') AS can_create,
            (SELECT count(*)::int FROM pg_largeobject_metadata) AS large_objects,
            (SELECT coalesce(json_agg(json_build_object('role', CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, 'setting', c.setting)
                                      ORDER BY s.setrole, c.n), '[]')
               FROM pg_db_role_setting s
              CROSS JOIN LATERAL unnest(s.setconfig) WITH ORDINALITY AS c(setting, n)
              WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND lower(split_part(c.setting, '=', 1)) IN ('session_preload_libraries', 'local_preload_libraries')) AS preload_settings,
            (SELECT coalesce(array_agg(evtname::text ORDER BY evtname), '{}') FROM pg_event_trigger) AS event_triggers
       FROM (${databaseLocaleSql(major)}) l WHERE l.name = current_database()`,
  );
  const r = rows[0]!;
  const { rows: extensions } = await client.query<InstalledExtension>(
    'SELECT extname AS name, extversion AS version FROM pg_extension ORDER BY extname',
  );
  const { rows: sequences } = await client.query<SequenceInfo>(
    `SELECT n.nspname AS schema, c.relname AS name, has_sequence_privilege(c.oid, 'SELECT') AS "canSelect",
            (SELECT d.refobjid::int FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) AS "ownerTableOid"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S'
        AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
        AND ${notExtensionMemberSql('c')}
      ORDER BY 1, 2`,
  );
  return {
    name: r.name,
    ...toLocale(r),
    sizeBytes: Number(r.size),
    canCreate: r.can_create,
    extensions,
    largeObjects: r.large_objects,
    sequences,
    preloadSettings: r.preload_settings,
    eventTriggers: r.event_triggers,
  };
}
