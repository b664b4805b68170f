import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../../src/errors.js';
import {
  describeConn, forDatabase, isThisMachine, parseConnInfo, resolveConnInfo, resolvedParams, toKeywordString, withDatabase, type ConnInfo,
} from '../../src/postgres/conninfo.js';
import { parallelQueryFits } from '../../src/pipeline/verify/sessions.js';
import { redact } from '../../src/postgres/redact.js';

const AWKWARD = `p@ss:w/o#rd?%&'"\\ ünï`;

function parseError(input: string, what?: string): UsageError {
  try {
    parseConnInfo(input, what);
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error(`expected "${input}" to be refused`);
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-unit-conninfo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('URLs', () => {
  it('reads every part of a full URL', () => {
    expect(parseConnInfo('postgresql://alice:secret@db.example.com:6543/shop?sslmode=require&connect_timeout=7')).toEqual({
      user: 'alice',
      password: 'secret',
      host: 'db.example.com',
      port: '6543',
      dbname: 'shop',
      sslmode: 'require',
      connect_timeout: '7',
    });
  });

  it('accepts the postgres:// scheme in any case and partial URLs', () => {
    expect(parseConnInfo('POSTGRES://h')).toEqual({ host: 'h' });
    expect(parseConnInfo('postgresql://')).toEqual({});
    expect(parseConnInfo('postgresql:///shop')).toEqual({ dbname: 'shop' });
    expect(parseConnInfo('postgresql://bob@')).toEqual({ user: 'bob' });
    expect(parseConnInfo('postgresql://h:/db')).toEqual({ host: 'h', dbname: 'db' });
  });

  it('percent-decodes a password with every awkward character', () => {
    const url = `postgresql://${encodeURIComponent('ü ser')}:${encodeURIComponent(AWKWARD)}@localhost/${encodeURIComponent('my db')}`;
    expect(parseConnInfo(url)).toEqual({ user: 'ü ser', password: AWKWARD, host: 'localhost', dbname: 'my db' });
  });

  it('accepts unencoded "?", "#", ":" and "@" in the password, like libpq (and "@" beyond it)', () => {
    expect(parseConnInfo('postgresql://u:pa?ss#w:rd@h/db?sslmode=disable')).toEqual({
      user: 'u',
      password: 'pa?ss#w:rd',
      host: 'h',
      dbname: 'db',
      sslmode: 'disable',
    });
    expect(parseConnInfo('postgresql://u:p@ss@h:5433/db')).toEqual({ user: 'u', password: 'p@ss', host: 'h', port: '5433', dbname: 'db' });
    expect(parseConnInfo('postgresql://u:p@ss@h?sslmode=require')).toEqual({ user: 'u', password: 'p@ss', host: 'h', sslmode: 'require' });
  });

  it('keeps an empty password distinct from no password', () => {
    expect(parseConnInfo('postgresql://u:@h/db').password).toBe('');
    expect(parseConnInfo('postgresql://u@h/db').password).toBeUndefined();
  });

  it('takes a Unix socket directory as a percent-encoded host or as a host parameter', () => {
    expect(parseConnInfo('postgresql://%2Fvar%2Frun%2Fpostgresql:5433/db')).toEqual({
      host: '/var/run/postgresql',
      port: '5433',
      dbname: 'db',
    });
    expect(parseConnInfo('postgresql:///db?host=/tmp/sock%20dir&port=5433')).toEqual({ host: '/tmp/sock dir', port: '5433', dbname: 'db' });
  });

  it('reads IPv6 hosts in brackets, with and without a port', () => {
    expect(parseConnInfo('postgresql://u@[::1]:5432/db')).toEqual({ user: 'u', host: '::1', port: '5432', dbname: 'db' });
    expect(parseConnInfo('postgresql://[2001:db8::7]/db')).toEqual({ host: '2001:db8::7', dbname: 'db' });
    expect(parseError('postgresql://[::1:5432/db').message).toMatch(/IPv6.*"\]"/);
    expect(parseError('postgresql://[::1]x/db').message).toMatch(/after IPv6 address/);
  });

  it('lets query parameters set any libpq keyword and override the authority', () => {
    expect(parseConnInfo('postgresql://h/db?host=other&application_name=a%20b&sslrootcert=%2Fca.crt')).toEqual({
      host: 'other',
      dbname: 'db',
      application_name: 'a b',
      sslrootcert: '/ca.crt',
    });
    // "+" is not a space in libpq URLs.
    expect(parseConnInfo('postgresql://h/db?options=a+b').options).toBe('a+b');
    // libpq's ssl=true alias.
    expect(parseConnInfo('postgresql://h/db?ssl=true').sslmode).toBe('require');
  });

  it('refuses unknown parameters, parameters without a value and bad percent-encoding', () => {
    expect(parseError('postgresql://h/db?sslmod=require', '--source').message).toBe(
      'invalid connection string: unknown connection option "sslmod"',
    );
    expect(parseError('postgresql://h/db?sslmode').message).toMatch(/"sslmode" has no value/);
    expect(parseError('postgresql://u:%zz@h/db').message).toMatch(/percent-encoding/);
  });

  it('names the flag in the hint and maps to exit code 2', () => {
    const err = parseError('postgresql://h/db?bogus=1', '--target');
    expect(err.exitCode).toBe(ExitCode.usage);
    expect(err.hint).toMatch(/^--target must be a postgres URL/);
  });

  it('refuses several hosts with a clear message', () => {
    for (const s of ['postgresql://h1,h2/db', 'postgresql://h1:5432,h2:5433/db', 'postgresql:///db?host=a,b', 'host=a,b dbname=x', 'hostaddr=1.1.1.1,2.2.2.2', 'host=a port=1,2']) {
      expect(parseError(s).message, s).toMatch(/several hosts .* not supported; name one server/);
    }
  });

  it('refuses a bad port without echoing what may be part of a password', () => {
    // An unencoded "/" in the password cuts the URL short: the password's start looks like a port.
    const err = parseError('postgresql://u:hunter/2@h/db');
    expect(err.message).not.toContain('hunter');
    expect(err.hint).toMatch(/percent-encode/);
    expect(parseError('host=h port=70000').message).toMatch(/invalid port "70000"/);
    expect(parseError('host=h port=0').message).toMatch(/invalid port "0"/);
  });
});

describe('keyword strings', () => {
  it('reads plain values, spaces around "=", tabs and newlines', () => {
    expect(parseConnInfo('host=h  port = 5433\tdbname=\n shop user=bob ')).toEqual({ host: 'h', port: '5433', dbname: 'shop', user: 'bob' });
  });

  it('reads single-quoted values with escaped quotes and backslashes', () => {
    expect(parseConnInfo(`password='it\\'s a \\\\ pw' application_name='with space'`)).toEqual({
      password: "it's a \\ pw",
      application_name: 'with space',
    });
    expect(parseConnInfo("password='' host=h")).toEqual({ password: '', host: 'h' });
    // Inside quotes every other character is literal, including "=" and "#".
    expect(parseConnInfo("options='-c search_path=a#b'").options).toBe('-c search_path=a#b');
  });

  it('splits on ASCII whitespace only, like libpq', () => {
    expect(parseConnInfo('password=a\u00a0b host=h')).toEqual({ password: 'a\u00a0b', host: 'h' });
  });

  it('unescapes backslashes in unquoted values', () => {
    expect(parseConnInfo('password=a\\ b\\\\c\\\'d').password).toBe("a b\\c'd");
  });

  it('follows libpq: whitespace after "=" is skipped, so an empty unquoted value takes the next word', () => {
    expect(parseConnInfo('host= port=5432')).toEqual({ host: 'port=5432' });
  });

  it('reads a keyword-quoted awkward password', () => {
    const quoted = `'${AWKWARD.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
    expect(parseConnInfo(`host=::1 password=${quoted}`)).toEqual({ host: '::1', password: AWKWARD });
  });

  it('refuses unknown keywords, missing "=" and unterminated quotes', () => {
    expect(parseError('host=h dbnam=x').message).toBe('invalid connection string: unknown connection option "dbnam"');
    expect(parseError('host=h dbname').message).toMatch(/missing "=" after "dbname"/);
    expect(parseError("host=h password='abc").message).toMatch(/unterminated quoted value for "password"/);
    expect(parseError("host=h password='abc").message).not.toContain('abc');
  });

  it('treats a word without "=" as a database name, and refuses an empty string', () => {
    expect(parseConnInfo('shop')).toEqual({ dbname: 'shop' });
    expect(parseError('   ').message).toMatch(/empty/);
  });

  it('refuses bad sslmode, bad connect_timeout and services', () => {
    expect(parseError('host=h sslmode=verify').message).toBe(
      'invalid connection string: invalid sslmode "verify" (one of disable, allow, prefer, require, verify-ca, verify-full)',
    );
    expect(parseError('postgresql://h/db?sslmode=VERIFY-FULL').message).toMatch(/invalid sslmode/);
    expect(parseError('host=h connect_timeout=1.5').message).toMatch(/connect_timeout/);
    expect(parseError('service=prod').message).toMatch(/services .* not supported/);
  });

  for (const mode of ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']) {
    it(`accepts sslmode=${mode}`, () => {
      expect(parseConnInfo(`host=h sslmode=${mode}`).sslmode).toBe(mode);
    });
  }
});

describe('toKeywordString', () => {
  const samples: ConnInfo[] = [
    { host: 'h', port: '5432', dbname: 'shop', user: 'bob' },
    { host: '::1', user: 'ü ser', dbname: 'my db', password: AWKWARD },
    { host: '/tmp/sock dir', dbname: "o'brien", options: '-c search_path=a\\b', password: '' },
    { host: 'h', sslmode: 'verify-full', sslrootcert: '/etc/ssl/ca crt.pem', application_name: 'x=y' },
  ];

  for (const ci of samples) {
    it(`round-trips ${JSON.stringify(ci)}`, () => {
      expect(parseConnInfo(toKeywordString(ci, { includePassword: true }))).toEqual(ci);
    });
  }

  it('leaves passwords out unless asked', () => {
    const s = toKeywordString({ host: 'h', password: 'secret', sslpassword: 'keypass' });
    expect(s).toBe('host=h');
    expect(toKeywordString({ host: 'h', password: 'secret' }, { includePassword: true })).toBe('host=h password=secret');
  });

  it('quotes empty values, spaces, quotes and backslashes only', () => {
    expect(toKeywordString({ host: 'h', dbname: '', user: "a b'c\\d", port: '5432' })).toBe(
      "host=h port=5432 dbname='' user='a b\\'c\\\\d'",
    );
  });
});

describe('resolveConnInfo', () => {
  const noHome = { HOME: tmp };

  it('fills host, port, user and database from PGHOST, PGPORT, PGUSER, PGDATABASE', () => {
    const r = resolveConnInfo({}, { ...noHome, PGHOST: 'envhost', PGPORT: '6000', PGUSER: 'envuser', PGDATABASE: 'envdb' });
    expect([r.host, r.port, r.user, r.dbname]).toEqual(['envhost', 6000, 'envuser', 'envdb']);
    expect(r.params).toMatchObject({ host: 'envhost', port: '6000', user: 'envuser', dbname: 'envdb' });
  });

  it('lets the connection string win over the environment, and ignores empty variables', () => {
    const r = resolveConnInfo(parseConnInfo('host=h user=u'), { ...noHome, PGHOST: 'envhost', PGUSER: 'envuser', PGPORT: '' });
    expect([r.host, r.port, r.user, r.dbname]).toEqual(['h', 5432, 'u', 'u']);
  });

  it('defaults the database to the user and the user to the OS account', () => {
    const r = resolveConnInfo({ host: 'h' }, noHome);
    expect(r.user).toBe(os.userInfo().username);
    expect(r.dbname).toBe(r.user);
    expect(r.sslmode).toBe('prefer');
  });

  it('uses TCP localhost when no default Unix socket exists for the port', () => {
    expect(resolveConnInfo({}, { ...noHome, PGPORT: '1' }).host).toBe('localhost');
  });

  it('refuses several hosts and services from the environment too', () => {
    expect(() => resolveConnInfo({}, { ...noHome, PGHOST: 'a,b' })).toThrow(/several hosts/);
    expect(() => resolveConnInfo({ host: 'h' }, { ...noHome, PGSERVICE: 'prod' })).toThrow(/PGSERVICE/);
  });

  it('takes the TLS and authentication requirements libpq reads from the environment', () => {
    const r = resolveConnInfo({ host: 'h' }, { ...noHome, PGCHANNELBINDING: 'require', PGSSLROOTCERT: '/ca.crt', PGSSLMINPROTOCOLVERSION: 'TLSv1.3' });
    expect(r.params).toMatchObject({ channel_binding: 'require', sslrootcert: '/ca.crt', ssl_min_protocol_version: 'TLSv1.3' });
  });

  it('takes PGSSLMODE, and refuses a bad one', () => {
    expect(resolveConnInfo({ host: 'h' }, { ...noHome, PGSSLMODE: 'verify-full' }).sslmode).toBe('verify-full');
    expect(() => resolveConnInfo({ host: 'h' }, { ...noHome, PGSSLMODE: 'on' })).toThrow(/invalid sslmode "on"/);
  });

  it('sslrootcert=system means verify-full by default and refuses weaker modes, as libpq 16 does', () => {
    expect(resolveConnInfo({ host: 'h', sslrootcert: 'system' }, noHome).sslmode).toBe('verify-full');
    expect(() => resolveConnInfo({ host: 'h', sslrootcert: 'system', sslmode: 'require' }, noHome)).toThrow(
      expect.objectContaining({ message: expect.stringMatching(/sslrootcert=system/), hint: expect.stringMatching(/verify-full/) }),
    );
  });

  it('takes the password from the string first, then PGPASSWORD', () => {
    const a = resolveConnInfo(parseConnInfo('postgresql://u:frompw@h/db'), { ...noHome, PGPASSWORD: 'fromenv' });
    expect([a.password, a.passwordSource]).toEqual(['frompw', 'connection string']);
    const b = resolveConnInfo(parseConnInfo('postgresql://u@h/db'), { ...noHome, PGPASSWORD: 'fromenv' });
    expect([b.password, b.passwordSource]).toEqual(['fromenv', 'PGPASSWORD']);
    const c = resolveConnInfo(parseConnInfo('postgresql://u@h/db'), noHome);
    expect([c.password, c.passwordSource]).toEqual([undefined, undefined]);
  });

  it('reads PGPASSFILE, the passfile keyword, and ~/.pgpass under HOME', () => {
    const home = mkdtempSync(path.join(tmp, 'home-'));
    writeFileSync(path.join(home, '.pgpass'), 'h:5432:db:u:from-home\n', { mode: 0o600 });
    const other = path.join(tmp, 'other.pgpass');
    writeFileSync(other, '*:*:*:u:from-pgpassfile\n', { mode: 0o600 });
    const ci = parseConnInfo('postgresql://u@h/db');

    const fromHome = resolveConnInfo(ci, { HOME: home });
    expect([fromHome.password, fromHome.passwordSource]).toEqual(['from-home', 'password file']);
    expect(resolveConnInfo(ci, { HOME: home, PGPASSFILE: other }).password).toBe('from-pgpassfile');
    expect(resolveConnInfo({ ...ci, passfile: other }, { HOME: home }).password).toBe('from-pgpassfile');
    // PGPASSWORD comes before any password file.
    expect(resolveConnInfo(ci, { HOME: home, PGPASSWORD: 'env' }).password).toBe('env');
    // The passfile is looked up with the resolved values: host and port from the environment.
    expect(resolveConnInfo({ user: 'u', dbname: 'db' }, { HOME: home, PGHOST: 'h', PGPORT: '5432' }).password).toBe('from-home');
  });

  it('treats an empty password like no password, as libpq does', () => {
    const home = mkdtempSync(path.join(tmp, 'home-'));
    writeFileSync(path.join(home, '.pgpass'), '*:*:*:u:from-file\n', { mode: 0o600 });
    const r = resolveConnInfo(parseConnInfo('postgresql://u:@h/db'), { HOME: home });
    expect([r.password, r.passwordSource]).toEqual(['from-file', 'password file']);
    expect(resolveConnInfo(parseConnInfo('host=h user=u password='), { HOME: home, PGPASSWORD: 'env' }).password).toBe('env');
  });

  it('registers every password it sees so that redact masks it anywhere', () => {
    resolveConnInfo(parseConnInfo('host=h user=u'), { ...noHome, PGPASSWORD: 'env-secret-41' });
    parseConnInfo(`postgresql://u:${encodeURIComponent('url secret/42')}@h/db`);
    expect(redact('server said env-secret-41 and url secret/42 and url%20secret%2F42')).toBe(
      'server said ******** and ******** and ********',
    );
  });

  it('describes a connection without its password, and switches databases', () => {
    const r = resolveConnInfo(parseConnInfo('postgresql://u:pw1234@[::1]:5433/db'), noHome);
    expect(describeConn(r)).toBe('u@[::1]:5433/db');
    const other = forDatabase(r, 'other');
    expect([other.dbname, other.params.dbname, other.password]).toEqual(['other', 'other', 'pw1234']);
    expect(withDatabase({ host: 'h', dbname: 'a' }, 'b')).toEqual({ host: 'h', dbname: 'b' });
    expect(resolvedParams(r)).toMatchObject({ host: '::1', port: '5433', user: 'u', dbname: 'db', sslmode: 'prefer' });
  });
});

describe('servers on this machine', () => {
  it('knows a socket directory, localhost and loopback addresses, and nothing else', () => {
    for (const h of ['/var/run/postgresql', '/tmp', 'localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '[::1]']) expect(isThisMachine(h), h).toBe(true);
    for (const h of ['', 'db.example.com', '10.0.0.5', '127.0.0.1.example.com', 'localhost,db2', '::ffff:10.0.0.1', '1270.0.0.1']) expect(isThisMachine(h), h).toBe(false);
  });

  it('leaves parallel workers to servers elsewhere, and on this machine to as many cores as the pairs leave free', () => {
    const here = { host: '127.0.0.1' };
    const there = { host: 'db.example.com' };
    expect(parallelQueryFits(there, there, 8, 2)).toBe(true);
    expect(parallelQueryFits(here, there, 8, 2)).toBe(true);
    // jobs pairs × 2 sides × (a backend + one worker) against the cores.
    expect(parallelQueryFits(here, { host: '/tmp' }, 2, 2)).toBe(false);
    expect(parallelQueryFits(here, here, 1, 2)).toBe(false);
    expect(parallelQueryFits(here, here, 1, 4)).toBe(true);
    expect(parallelQueryFits(here, here, 2, 8)).toBe(true);
    expect(parallelQueryFits(here, here, 4, 8)).toBe(false);
  });
});
