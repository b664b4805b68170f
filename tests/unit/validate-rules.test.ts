/**
 * The decisions of validate's checks, for servers the test machine cannot
 * start (PostgreSQL 12, a 15 standby, a target without ICU) and for the pure
 * helpers (version order, locale names, row filter columns).
 */
import { describe, expect, it } from 'vitest';
import { compareVersions, checkExtensions } from '../../src/pipeline/validate/extensions.js';
import { referencedColumns, varAttnums } from '../../src/pipeline/shared/row-filter-checks.js';
import { checkLocale, localeProblem } from '../../src/pipeline/validate/locale.js';
import { maskQuery } from '../../src/pipeline/validate/long-transactions.js';
import { checkPreloadLibraries } from '../../src/pipeline/validate/pair.js';
import { exitCodeFor } from '../../src/pipeline/validate/run.js';
import { checkSourceServer, type SourceServerFacts } from '../../src/pipeline/validate/source-server.js';
import { normaliseLocale, parseLibraryList } from '../../src/pipeline/validate/target-server.js';
import { checkTools } from '../../src/pipeline/validate/tools.js';
import type { CheckResult } from '../../src/pipeline/validate/types.js';
import type { DatabaseLocale } from '../../src/pipeline/validate/database-facts.js';

function server(over: Partial<SourceServerFacts> = {}): SourceServerFacts {
  return {
    major: 15, inRecovery: false, walLevel: 'logical', maxReplicationSlots: 10, maxWalSenders: 10, maxSlotWalKeepSizeMb: 1024,
    maxSlotWalKeepSizeText: '1GB', hotStandbyFeedback: false, slots: [], walSendersSeen: 0, seesAllSessions: true, ...over,
  };
}

function byId(list: CheckResult[], id: string): CheckResult {
  const c = list.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id}`);
  return c;
}

describe('source server rules', () => {
  it('warns that PostgreSQL 12 cannot limit the WAL a slot keeps', () => {
    const c = byId(checkSourceServer(server({ major: 12, maxSlotWalKeepSizeMb: null, maxSlotWalKeepSizeText: null }), { databases: 1, existingOwnSlots: [] }), 'source.max_slot_wal_keep_size');
    expect(c.status).toBe('warn');
    expect(c.message).toContain('PostgreSQL 12 cannot limit');
    expect(c.fix).toContain('pgferry cleanup');
  });

  it('fails a source older than 12', () => {
    expect(byId(checkSourceServer(server({ major: 11 }), { databases: 1, existingOwnSlots: [] }), 'source.version').status).toBe('fail');
  });

  it('fails a standby before 16 and warns from 16 on', () => {
    const before = byId(checkSourceServer(server({ major: 15, inRecovery: true }), { databases: 1, existingOwnSlots: [] }), 'source.recovery');
    expect(before).toMatchObject({ status: 'fail', fix: 'point --source at the primary server' });
    const from16 = byId(checkSourceServer(server({ major: 16, inRecovery: true, hotStandbyFeedback: true }), { databases: 1, existingOwnSlots: [] }), 'source.recovery');
    expect(from16.status).toBe('warn');
    expect(from16.fix).not.toContain('hot_standby_feedback');
  });

  it('counts a slot pgferry already made for this pair as reusable, not as a new one', () => {
    const slots = [{ name: 'pgferry_shop_0123456789', type: 'logical', active: false, database: 'shop' }];
    const reuse = byId(checkSourceServer(server({ maxReplicationSlots: 1, slots }), { databases: 1, existingOwnSlots: ['pgferry_shop_0123456789'] }), 'source.replication_slots');
    expect(reuse.status).toBe('ok');
    const foreign = byId(checkSourceServer(server({ maxReplicationSlots: 1, slots }), { databases: 1, existingOwnSlots: [] }), 'source.replication_slots');
    expect(foreign.status).toBe('fail');
    expect(foreign.fix).toContain("SELECT pg_drop_replication_slot('pgferry_shop_0123456789');");
  });

  it('needs one WAL sender per database plus one for the snapshot', () => {
    expect(byId(checkSourceServer(server({ maxWalSenders: 3 }), { databases: 2, existingOwnSlots: [] }), 'source.wal_senders').status).toBe('ok');
    const c = byId(checkSourceServer(server({ maxWalSenders: 3, walSendersSeen: 1 }), { databases: 2, existingOwnSlots: [] }), 'source.wal_senders');
    expect(c.status).toBe('fail');
    expect(c.fix).toContain('max_wal_senders = 4');
  });
});

describe('extensions', () => {
  it('orders versions numerically', () => {
    expect(compareVersions('1.10', '1.9')).toBe(1);
    expect(compareVersions('1.6', '1.6')).toBe(0);
    expect(compareVersions('2.1', '2.1.1')).toBe(-1);
    expect(compareVersions('unpackaged', 'unpackaged')).toBe(0);
  });

  it('warns when the target offers only older versions, fails when it has none', () => {
    const avail = new Map([['hstore', ['1.7', '1.8']]]);
    const out = checkExtensions([{ name: 'hstore', version: '1.9' }, { name: 'postgis', version: '3.4.2' }], avail, 17);
    expect(out.map((c) => [c.status, c.message.split(' ').slice(0, 2).join(' ')])).toEqual([
      ['warn', 'extension hstore'],
      ['fail', 'extension postgis'],
    ]);
    expect(out[1]!.message).toContain('3.4.2');
  });
});

describe('locale', () => {
  const utf8: DatabaseLocale = { encoding: 'UTF8', collate: 'en_US.UTF-8', ctype: 'en_US.UTF-8', provider: 'libc', locale: null };
  const target = { major: 17, icu: true, libcLocales: new Set(['c', 'posix', 'c.utf8', 'en_us.utf8']), databases: [] };

  it('normalises locale names the way glibc spells them', () => {
    expect(normaliseLocale('en_US.UTF-8')).toBe('en_us.utf8');
    expect(normaliseLocale('C.utf8')).toBe('c.utf8');
  });

  it('knows what the target cannot create', () => {
    expect(localeProblem(utf8, target)).toBeNull();
    expect(localeProblem({ ...utf8, collate: 'de_DE.UTF-8' }, target)).toContain('de_DE.UTF-8');
    expect(localeProblem({ ...utf8, provider: 'icu', locale: 'en-US' }, { ...target, major: 14 })).toContain('ICU');
    expect(localeProblem({ ...utf8, provider: 'icu', locale: 'en-US' }, { ...target, icu: false })).toContain('without ICU');
    expect(localeProblem({ ...utf8, provider: 'builtin', locale: 'C.UTF-8' }, { ...target, major: 16 })).toContain('builtin');
  });

  it('fails a new database whose locale the target lacks, with a CREATE DATABASE that works', () => {
    const [c] = checkLocale('shop', { ...utf8, collate: 'de_DE.UTF-8', ctype: 'de_DE.UTF-8' }, 'shop', target);
    expect(c!.status).toBe('fail');
    expect(c!.fix).toContain("CREATE DATABASE \"shop\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';");
  });

  it('fails SQL_ASCII into UTF8 (bytes are not checked) and warns LATIN1 into UTF8', () => {
    const existing = { ...target, databases: [{ name: 'shop', ...utf8 }] };
    expect(checkLocale('shop', { ...utf8, encoding: 'SQL_ASCII' }, 'shop', existing)[0]!.status).toBe('fail');
    expect(checkLocale('shop', { ...utf8, encoding: 'LATIN1' }, 'shop', existing)[0]!.status).toBe('warn');
  });
});

describe('row filters', () => {
  it('finds the columns a predicate mentions, ignoring literals and comments', () => {
    const cols = ['id', 'kind', 'Region', 'created_at'];
    expect(referencedColumns("kind = 'id' AND \"Region\" = 'EU' -- created_at", cols)).toEqual(['kind', 'Region']);
    expect(referencedColumns('ID > 10 AND $$kind$$ <> created_at::text', cols)).toEqual(['id', 'created_at']);
  });

  it('reads attnums from a stored row filter node tree', () => {
    const tree = '{OPEXPR :opno 521 :args ({VAR :varno 1 :varattno 3 :vartype 23 :varattnosyn 3} {CONST :consttype 23}) {VAR :varno 1 :varattno 1}}';
    expect(varAttnums(tree)).toEqual([3, 1]);
  });
});

describe('shared_preload_libraries', () => {
  it('parses the setting', () => {
    expect(parseLibraryList('"$libdir/pg_stat_statements", auto_explain')).toEqual(['pg_stat_statements', 'auto_explain']);
    expect(parseLibraryList('')).toEqual([]);
  });

  it('fails a preloaded extension the target lacks, warns a plain library', () => {
    const out = checkPreloadLibraries({ source: ['pg_stat_statements', 'auto_explain'], target: [], extensions: new Set(['pg_stat_statements']) });
    expect(out.map((c) => c.status)).toEqual(['fail', 'warn']);
    expect(out[0]!.fix).toBe("on the target: ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'; then restart PostgreSQL");
  });

  it('uses the list of known preloaded extensions when the source setting is not readable', () => {
    const out = checkPreloadLibraries({ source: null, target: ['auto_explain'], extensions: new Set(['pg_cron']) });
    expect(out[0]!.status).toBe('fail');
    expect(out[0]!.fix).toContain("'auto_explain,pg_cron'");
    expect(checkPreloadLibraries({ source: null, target: null, extensions: new Set(['pg_cron']) })[0]!.status).toBe('warn');
    expect(checkPreloadLibraries({ source: null, target: null, extensions: new Set(['hstore']) })[0]!.status).toBe('ok');
  });
});

describe('tools and exit codes', () => {
  it('fails pg_dump and pg_dumpall older than the source, not pg_restore or psql', () => {
    const lookup = (tool: 'pg_dump' | 'pg_restore' | 'pg_dumpall' | 'psql') => ({ tool, path: `/x/${tool}`, version: '15.4', major: 15 });
    const out = checkTools(undefined, 17, lookup);
    expect(out.map((c) => [c.id, c.status])).toEqual([
      ['tools.pg_dump', 'fail'], ['tools.pg_restore', 'ok'], ['tools.pg_dumpall', 'fail'], ['tools.psql', 'ok'],
    ]);
    expect(out[0]!.fix).toContain('postgresql-client-17');
  });

  it('maps checks to exit codes: same database 2, unreachable 3, failure 1, else 0', () => {
    const c = (id: string, status: 'ok' | 'warn' | 'fail'): CheckResult => ({ id, side: 'pair', status, message: '' });
    expect(exitCodeFor([c('a', 'ok'), c('b', 'warn')])).toBe(0);
    expect(exitCodeFor([c('a', 'fail')])).toBe(1);
    expect(exitCodeFor([c('a', 'fail'), c('target.reachable', 'fail')])).toBe(3);
    expect(exitCodeFor([c('pair.distinct', 'fail'), c('a', 'fail')])).toBe(2);
  });
});

describe('long transactions', () => {
  it('masks a literal password in the query text it shows', () => {
    expect(maskQuery("ALTER ROLE bob PASSWORD 'hunter2' VALID UNTIL 'x'")).toBe("ALTER ROLE bob PASSWORD '********' VALID UNTIL 'x'");
    expect(maskQuery("create user x with password 'it''s'")).toBe("create user x with password '********'");
    expect(maskQuery('SELECT 1')).toBe('SELECT 1');
  });
});
