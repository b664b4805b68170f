/**
 * Connection strings with libpq's semantics: URLs (`postgresql://…`) and
 * keyword strings (`host=… dbname=…`), environment defaults (PGHOST …), and
 * passwords from the string, PGPASSWORD or a password file. The parsed form
 * keeps libpq's keyword names so that it can be handed back to libpq-based
 * tools (pg_dump, psql, a subscription's CONNECTION) without loss.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { lookupPassfile } from './pgpass.js';
import { registerSecret } from './redact.js';

/** libpq connection keywords (PostgreSQL 12 … 18). */
export const LIBPQ_KEYWORDS = [
  'host', 'hostaddr', 'port', 'dbname', 'user', 'password', 'passfile', 'channel_binding',
  'connect_timeout', 'client_encoding', 'options', 'application_name', 'fallback_application_name',
  'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout',
  'replication', 'gssencmode', 'sslmode', 'requiressl', 'sslcompression', 'sslcert', 'sslkey',
  'sslpassword', 'sslcertmode', 'sslrootcert', 'sslcrl', 'sslcrldir', 'sslsni', 'requirepeer',
  'ssl_min_protocol_version', 'ssl_max_protocol_version', 'krbsrvname', 'gsslib', 'gssdelegation',
  'service', 'target_session_attrs', 'load_balance_hosts', 'require_auth', 'sslnegotiation',
] as const;
export type LibpqKeyword = (typeof LIBPQ_KEYWORDS)[number];
const KEYWORD_SET: ReadonlySet<string> = new Set(LIBPQ_KEYWORDS);

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** A parsed connection string: libpq keyword → value, as written. */
export type ConnInfo = Partial<Record<LibpqKeyword, string>>;

/** A connection string with every default filled in, ready to connect. */
export interface ResolvedConnInfo {
  params: ConnInfo;
  host: string;
  port: number;
  user: string;
  dbname: string;
  sslmode: SslMode;
  password: string | undefined;
  /** Where the password came from (never the password itself). */
  passwordSource: 'connection string' | 'PGPASSWORD' | 'password file' | undefined;
  /** HOME of the environment it was resolved in: libpq's defaults live in ~/.postgresql. */
  homeDir?: string;
}

function bad(what: string, detail: string): UsageError {
  return new UsageError(`invalid connection string: ${detail}`, {
    hint: `${what} must be a postgres URL (postgresql://user@host:5432/db?sslmode=require) or a libpq keyword string (host=… port=… dbname=… user=…)`,
  });
}

function setKeyword(ci: ConnInfo, key: string, value: string, what: string): void {
  if (!KEYWORD_SET.has(key)) throw bad(what, `unknown connection option "${key}"`);
  ci[key as LibpqKeyword] = value;
}

function decode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(what, 'bad percent-encoding (encode special characters in passwords as %XX)');
  }
}

/** Parse a `postgresql://` / `postgres://` URL the way libpq does. */
function parseUrl(input: string, what: string): ConnInfo {
  const ci: ConnInfo = {};
  const m = /^(postgres(?:ql)?):\/\//i.exec(input);
  if (!m) throw bad(what, 'not a postgres URL');
  const rest = input.slice(m[0].length);

  // As in libpq, user info ends at an "@" before the first "/", so a password may hold
  // unencoded "?", "#" and ":". We take the last such "@" so that an unencoded "@" works too.
  const slash = rest.indexOf('/');
  const at = (slash >= 0 ? rest.slice(0, slash) : rest).lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    if (user) ci.user = decode(user, what);
    if (colon >= 0) ci.password = decode(userinfo.slice(colon + 1), what);
  }
  let afterUser = rest.slice(at + 1);
  let query = '';
  const q = afterUser.indexOf('?');
  if (q >= 0) {
    query = afterUser.slice(q + 1);
    afterUser = afterUser.slice(0, q);
  }
  const pathStart = afterUser.indexOf('/');
  const hostPart = pathStart >= 0 ? afterUser.slice(0, pathStart) : afterUser;
  const dbPath = pathStart >= 0 ? afterUser.slice(pathStart + 1) : '';
  if (hostPart) {
    if (hostPart.includes(',')) {
      throw bad(what, `several hosts in one connection string are not supported; name one server (${hostPart})`);
    }
    let host: string;
    let port: string | undefined;
    if (hostPart.startsWith('[')) {
      const close = hostPart.indexOf(']');
      if (close < 0) throw bad(what, 'unterminated IPv6 address (missing "]")');
      host = hostPart.slice(1, close);
      const after = hostPart.slice(close + 1);
      if (after.startsWith(':')) port = after.slice(1);
      else if (after) throw bad(what, `unexpected "${after}" after IPv6 address`);
    } else {
      const colon = hostPart.lastIndexOf(':');
      host = colon >= 0 ? hostPart.slice(0, colon) : hostPart;
      port = colon >= 0 ? hostPart.slice(colon + 1) : undefined;
    }
    if (host) ci.host = decode(host, what);
    if (port) {
      // Do not echo it: an unencoded "/" or "@" in a password makes its start look like a port.
      if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
        throw new UsageError('invalid connection string: invalid port in the URL', {
          hint: `give a port from 1 to 65535 after the host in ${what}; if the password holds / @ or %, percent-encode them (/ → %2F, @ → %40, % → %25)`,
        });
      }
      ci.port = port;
    }
  }
  if (dbPath) ci.dbname = decode(dbPath, what);
  if (query) {
    for (const pair of query.split('&')) {
      if (!pair) continue;
      const eq = pair.indexOf('=');
      if (eq < 0) throw bad(what, `URL parameter "${pair}" has no value`);
      const key = decode(pair.slice(0, eq), what);
      // libpq accepts ssl=true as an alias for sslmode=require in URLs.
      if (key === 'ssl' && pair.slice(eq + 1) === 'true') {
        ci.sslmode = 'require';
        continue;
      }
      setKeyword(ci, key, decode(pair.slice(eq + 1), what), what);
    }
  }
  return ci;
}

/** Parse a libpq keyword/value string: `key=value key='quoted \' value'`. */
function parseKeywords(input: string, what: string): ConnInfo {
  const ci: ConnInfo = {};
  let i = 0;
  const n = input.length;
  // libpq's isspace(): ASCII whitespace only (a no-break space is part of a value).
  const isSpace = (c: string | undefined) => c !== undefined && /[ \t\n\r\f\v]/.test(c);
  while (i < n) {
    while (i < n && isSpace(input[i])) i++;
    if (i >= n) break;
    const keyStart = i;
    while (i < n && input[i] !== '=' && !isSpace(input[i])) i++;
    const key = input.slice(keyStart, i);
    while (i < n && isSpace(input[i])) i++;
    if (input[i] !== '=') throw bad(what, `missing "=" after "${key}"`);
    i++;
    while (i < n && isSpace(input[i])) i++;
    let value = '';
    if (input[i] === "'") {
      i++;
      let closed = false;
      while (i < n) {
        const c = input[i]!;
        if (c === '\\' && i + 1 < n) {
          value += input[i + 1];
          i += 2;
        } else if (c === "'") {
          i++;
          closed = true;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) throw bad(what, `unterminated quoted value for "${key}"`);
    } else {
      while (i < n && !isSpace(input[i])) {
        if (input[i] === '\\' && i + 1 < n) {
          value += input[i + 1];
          i += 2;
        } else {
          value += input[i];
          i++;
        }
      }
    }
    setKeyword(ci, key, value, what);
  }
  return ci;
}

/**
 * Parse a connection string. `what` names it in errors ("--source").
 * A string that is neither a URL nor has "=" is a database name, as in libpq.
 */
export function parseConnInfo(input: string, what = 'the connection string'): ConnInfo {
  const s = input.trim();
  let ci: ConnInfo;
  if (/^postgres(ql)?:\/\//i.test(s)) ci = parseUrl(s, what);
  else if (s.includes('=')) ci = parseKeywords(s, what);
  else if (s) ci = { dbname: s };
  else throw bad(what, 'it is empty');
  registerSecret(ci.password);
  registerSecret(ci.sslpassword);
  // libpq would try each host of a comma-separated list in turn; pgferry needs to know which
  // server it talks to (slots, identity checks), so it takes exactly one.
  for (const k of ['host', 'hostaddr', 'port'] as const) {
    if (ci[k]?.includes(',')) {
      throw bad(what, `several hosts in one connection string are not supported; name one server (${k}=${ci[k]})`);
    }
  }
  if (ci.service !== undefined) {
    throw bad(what, 'connection services (service=…, pg_service.conf) are not supported; spell out host, port, user and dbname');
  }
  if (ci.sslmode !== undefined && !(SSL_MODES as readonly string[]).includes(ci.sslmode)) {
    throw bad(what, `invalid sslmode "${ci.sslmode}" (one of ${SSL_MODES.join(', ')})`);
  }
  if (ci.port !== undefined && !validPort(ci.port)) throw bad(what, `invalid port "${ci.port}" (a number from 1 to 65535)`);
  if (ci.connect_timeout !== undefined && !/^-?\d+$/.test(ci.connect_timeout)) {
    throw bad(what, `invalid connect_timeout "${ci.connect_timeout}" (whole seconds)`);
  }
  return ci;
}

function validPort(p: string): boolean {
  return /^\d{1,5}$/.test(p) && Number(p) >= 1 && Number(p) <= 65535;
}

/** The same connection, another database. */
export function withDatabase(ci: ConnInfo, dbname: string): ConnInfo {
  return { ...ci, dbname };
}

/**
 * The server runs on this machine: a Unix socket directory, `localhost` or a
 * loopback address (one host; a list of hosts is not known to be local).
 */
export function isThisMachine(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (!h || h.includes(',')) return false;
  return h.startsWith('/') || h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * libpq's compiled-in default is a Unix socket directory (/var/run/postgresql on
 * Debian, /tmp upstream). We use one only when a server's socket is there for
 * this port, and TCP localhost otherwise (libpq would fail on the missing socket).
 */
function defaultHost(port: number): string {
  for (const dir of ['/var/run/postgresql', '/tmp']) {
    if (existsSync(`${dir}/.s.PGSQL.${port}`)) return dir;
  }
  return 'localhost';
}

function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return 'postgres';
  }
}

/**
 * Fill in defaults the way libpq does: connection string, then PG* environment,
 * then built-ins. An unusable password file is reported through `onWarning`.
 */
export function resolveConnInfo(
  ci: ConnInfo,
  env: NodeJS.ProcessEnv = process.env,
  onWarning: (message: string) => void = () => {},
): ResolvedConnInfo {
  const envMap: Partial<Record<LibpqKeyword, string>> = {
    host: env.PGHOST,
    hostaddr: env.PGHOSTADDR,
    port: env.PGPORT,
    dbname: env.PGDATABASE,
    user: env.PGUSER,
    passfile: env.PGPASSFILE,
    sslmode: env.PGSSLMODE,
    sslrootcert: env.PGSSLROOTCERT,
    sslcert: env.PGSSLCERT,
    sslkey: env.PGSSLKEY,
    sslcrl: env.PGSSLCRL,
    connect_timeout: env.PGCONNECT_TIMEOUT,
    options: env.PGOPTIONS,
    target_session_attrs: env.PGTARGETSESSIONATTRS,
    channel_binding: env.PGCHANNELBINDING,
    require_auth: env.PGREQUIREAUTH,
    requirepeer: env.PGREQUIREPEER,
    gssencmode: env.PGGSSENCMODE,
    sslcertmode: env.PGSSLCERTMODE,
    sslcrldir: env.PGSSLCRLDIR,
    sslsni: env.PGSSLSNI,
    ssl_min_protocol_version: env.PGSSLMINPROTOCOLVERSION,
    ssl_max_protocol_version: env.PGSSLMAXPROTOCOLVERSION,
    sslnegotiation: env.PGSSLNEGOTIATION,
    krbsrvname: env.PGKRBSRVNAME,
    load_balance_hosts: env.PGLOADBALANCEHOSTS,
  };
  if (env.PGSERVICE) {
    throw new UsageError('connection services are not supported, and PGSERVICE is set', {
      hint: 'unset PGSERVICE and spell out host, port, user and dbname in the connection string',
    });
  }
  const params: ConnInfo = { ...ci };
  for (const [k, v] of Object.entries(envMap) as [LibpqKeyword, string | undefined][]) {
    if (params[k] === undefined && v !== undefined && v !== '') params[k] = v;
  }
  for (const k of ['host', 'hostaddr', 'port'] as const) {
    if (params[k]?.includes(',')) {
      throw new UsageError(`several hosts are not supported; name one server (${k}=${params[k]})`, {
        hint: ci[k] === undefined ? `check the PG${k.toUpperCase()} environment variable` : undefined,
      });
    }
  }
  if (params.port !== undefined && !validPort(params.port)) {
    throw new UsageError(`invalid port "${params.port}" (a number from 1 to 65535)`, {
      hint: params.port === env.PGPORT ? 'check the PGPORT environment variable' : undefined,
    });
  }
  const port = Number(params.port || 5432);
  // libpq: with only hostaddr given, connect there (and look it up in the password file by address).
  const host = params.host || params.hostaddr || defaultHost(port);
  const user = params.user || osUser();
  const dbname = params.dbname || user;
  // libpq 16: sslrootcert=system trusts the system's CAs and makes verify-full the default.
  const sslmode = (params.sslmode || (params.sslrootcert === 'system' ? 'verify-full' : 'prefer')) as SslMode;
  if (!(SSL_MODES as readonly string[]).includes(sslmode)) {
    throw new UsageError(`invalid sslmode "${sslmode}" (one of ${SSL_MODES.join(', ')})`, {
      hint: params.sslmode === env.PGSSLMODE ? 'check the PGSSLMODE environment variable' : undefined,
    });
  }
  if (params.sslrootcert === 'system' && sslmode !== 'verify-full') {
    throw new UsageError(`sslmode "${sslmode}" may not be used with sslrootcert=system`, {
      hint: 'use sslmode=verify-full (trusting the system CAs only makes sense when the host name is checked too)',
    });
  }

  // As in libpq, an empty password counts as none: PGPASSWORD, then the password file, are consulted.
  let password = params.password || undefined;
  let passwordSource: ResolvedConnInfo['passwordSource'] = password !== undefined ? 'connection string' : undefined;
  if (password === undefined && env.PGPASSWORD) {
    password = env.PGPASSWORD;
    passwordSource = 'PGPASSWORD';
  }
  if (password === undefined) {
    const home = env.HOME || os.homedir();
    const file = params.passfile || (home ? path.join(home, '.pgpass') : undefined);
    if (file) {
      const found = lookupPassfile(file, { host, port, dbname, user }, onWarning);
      if (found !== undefined) {
        password = found;
        passwordSource = 'password file';
      }
    }
  }
  registerSecret(password);
  const homeDir = env.HOME || undefined;
  return { params, host, port, user, dbname, sslmode, password, passwordSource, ...(homeDir ? { homeDir } : {}) };
}

/** Quote a value for a libpq keyword string. */
function quoteKeywordValue(v: string): string {
  if (v !== '' && !/[\s'\\]/.test(v)) return v;
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * Render a libpq keyword string. Passwords are left out unless asked for
 * (only a subscription's CONNECTION needs one, and the user is told).
 */
export function toKeywordString(ci: ConnInfo, options: { includePassword?: boolean } = {}): string {
  const parts: string[] = [];
  for (const key of LIBPQ_KEYWORDS) {
    const v = ci[key];
    if (v === undefined) continue;
    if ((key === 'password' || key === 'sslpassword') && !options.includePassword) continue;
    parts.push(`${key}=${quoteKeywordValue(v)}`);
  }
  return parts.join(' ');
}

/** The full parameter set of a resolved connection, for child tools and subscriptions. */
export function resolvedParams(r: ResolvedConnInfo): ConnInfo {
  return { ...r.params, host: r.host, port: String(r.port), user: r.user, dbname: r.dbname, sslmode: r.sslmode };
}

/** Human label without secrets: user@host:port/db. */
export function describeConn(r: ResolvedConnInfo): string {
  const host = r.host.includes(':') ? `[${r.host}]` : r.host;
  return `${r.user}@${host}:${r.port}/${r.dbname}`;
}

/** The same resolved connection, another database (the password stays as resolved). */
export function forDatabase(r: ResolvedConnInfo, dbname: string): ResolvedConnInfo {
  return { ...r, dbname, params: { ...r.params, dbname } };
}
