/**
 * Encoding and locale of each source database against its target database:
 * compared when the target database exists, and otherwise whether the target
 * server can create it with the same settings (the locale exists there).
 */
import { quoteIdent, quoteLiteral } from '../../postgres/identifiers.js';
import type { DatabaseLocale } from './database-facts.js';
import { normaliseLocale, type TargetServerFacts } from './target-server.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export function describeLocale(l: DatabaseLocale): string {
  const provider = l.provider === 'libc' ? '' : `, provider ${l.provider} ${l.locale ?? ''}`.trimEnd();
  return `${l.encoding}, LC_COLLATE ${l.collate}, LC_CTYPE ${l.ctype}${provider}`;
}

/** CREATE DATABASE with the source database's encoding and locale. */
export function createDatabaseSql(name: string, l: DatabaseLocale): string {
  let sql = `CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0 ENCODING ${quoteLiteral(l.encoding)} LC_COLLATE ${quoteLiteral(l.collate)} LC_CTYPE ${quoteLiteral(l.ctype)}`;
  if (l.provider === 'icu' && l.locale) sql += ` LOCALE_PROVIDER icu ICU_LOCALE ${quoteLiteral(l.locale)}`;
  if (l.provider === 'builtin' && l.locale) sql += ` LOCALE_PROVIDER builtin BUILTIN_LOCALE ${quoteLiteral(l.locale)}`;
  return `${sql};`;
}

function recreateFix(name: string, l: DatabaseLocale): string {
  return `recreate the target database before init, while it holds nothing you need: DROP DATABASE ${quoteIdent(name)}; ${createDatabaseSql(name, l)}`;
}

/** Can the target server create a database with this locale? null when it can, else the reason. */
export function localeProblem(l: DatabaseLocale, t: Pick<TargetServerFacts, 'major' | 'icu' | 'libcLocales'>): string | null {
  if (l.provider === 'icu') {
    if (t.major < 15) return `PostgreSQL ${t.major} cannot use ICU as a database's locale provider (15+ can)`;
    if (!t.icu) return 'the target server was built without ICU';
  }
  if (l.provider === 'builtin' && t.major < 17) return `PostgreSQL ${t.major} has no builtin locale provider (17+ has)`;
  const missing = [...new Set([l.collate, l.ctype])].filter((x) => !t.libcLocales.has(normaliseLocale(x)));
  if (missing.length) return `the target server knows no locale ${missing.join(', ')} (not in its pg_collation)`;
  return null;
}

export function checkLocale(
  sourceDb: string,
  source: DatabaseLocale,
  targetDb: string,
  target: Pick<TargetServerFacts, 'major' | 'icu' | 'libcLocales' | 'databases'>,
): CheckResult[] {
  const existing = target.databases.find((d) => d.name === targetDb);
  if (!existing) {
    const problem = localeProblem(source, target);
    if (problem) {
      return [
        fail(
          'database.collation',
          'target',
          `target database ${targetDb} does not exist, and it cannot be created like ${sourceDb} (${describeLocale(source)}): ${problem}`,
          `install the locale on the target's operating system (e.g. locale-gen ${source.collate}), then SELECT pg_import_system_collations('pg_catalog'); or create the database yourself with a locale the target has: ${createDatabaseSql(targetDb, { ...source, collate: 'C', ctype: 'C', provider: 'libc', locale: null })}`,
        ),
      ];
    }
    return [ok('database.collation', 'target', `target database ${targetDb} does not exist yet; init creates it with ${describeLocale(source)}`)];
  }

  const out: CheckResult[] = [];
  if (existing.encoding === source.encoding) {
    out.push(ok('database.encoding', 'target', `encoding ${source.encoding} on both sides`));
  } else if (existing.encoding === 'UTF8' && source.encoding !== 'SQL_ASCII') {
    out.push(
      warn(
        'database.encoding',
        'target',
        `encoding differs: ${source.encoding} on the source, UTF8 on the target (${targetDb}): every character converts, but lengths in bytes change`,
        `to keep ${source.encoding}: ${recreateFix(targetDb, source)}`,
      ),
    );
  } else {
    out.push(
      fail(
        'database.encoding',
        'target',
        `encoding differs: ${source.encoding} on the source, ${existing.encoding} on the target (${targetDb}): ${source.encoding === 'SQL_ASCII' ? 'SQL_ASCII bytes are not checked, so they may not convert' : `characters that ${existing.encoding} cannot represent make the copy fail`}`,
        recreateFix(targetDb, source),
      ),
    );
  }

  const diffs: string[] = [];
  if (existing.collate !== source.collate) diffs.push(`LC_COLLATE ${source.collate} → ${existing.collate}`);
  if (existing.ctype !== source.ctype) diffs.push(`LC_CTYPE ${source.ctype} → ${existing.ctype}`);
  if (existing.provider !== source.provider) diffs.push(`provider ${source.provider} → ${existing.provider}`);
  else if ((existing.locale ?? '') !== (source.locale ?? '')) diffs.push(`${source.provider} locale ${source.locale} → ${existing.locale}`);
  out.push(
    diffs.length
      ? warn(
          'database.collation',
          'target',
          `locale differs (${diffs.join(', ')}): text sorts and compares differently on the target, so ORDER BY results, text indexes and case-insensitive matching may change`,
          recreateFix(targetDb, source),
        )
      : ok('database.collation', 'target', `same locale on both sides (${describeLocale(source)})`),
  );
  return out;
}
