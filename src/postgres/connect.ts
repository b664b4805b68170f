/**
 * Connections: one place that turns a resolved connection string into a pg
 * client (TLS per sslmode, timeouts, application_name), plus withClient /
 * withTransaction helpers that always release what they take.
 */
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls, { type ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { ConnectError, UsageError } from '../errors.js';
import { describeConn, type ResolvedConnInfo } from './conninfo.js';
import { connectError, sqlstate } from './errors.js';
import { installScram } from './scram.js';
import { applyAfterLogin, withSessionDefaults } from './session-defaults.js';
import { sessionKeeper } from './session-keeper.js';

installScram();

export const APPLICATION_NAME = 'pgferry';

/** Session settings that make text output identical on every server (verify relies on them). */
export const CANONICAL_SETTINGS: Readonly<Record<string, string>> = {
  TimeZone: 'UTC',
  DateStyle: 'ISO, MDY',
  IntervalStyle: 'postgres',
  extra_float_digits: '3',
  bytea_output: 'hex',
  client_encoding: 'UTF8',
};

export interface ConnectOptions {
  /** Human name of the side, for errors: "source", "target". */
  label?: string;
  /** Open a logical replication connection (replication=database). */
  replication?: boolean;
  /** application_name; defaults to "pgferry". */
  applicationName?: string;
  /** GUCs sent in the startup packet (e.g. CANONICAL_SETTINGS). */
  settings?: Record<string, string>;
  /** Abort statements after this many milliseconds (0 = no limit). */
  statementTimeoutMs?: number;
  /** For pgferry's own DDL: the database's event triggers do not fire, where the role may say so (session-defaults.ts). */
  quietDdl?: boolean;
}

export type Client = pg.Client;

function readFileOption(path: string | undefined, what: string): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} "${path}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: `check the ${what} path in the connection string (or its PG* environment variable)`,
    });
  }
}

const TLS_VERSIONS = new Set(['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3']);

/**
 * TLS options for pg from libpq's sslmode and file parameters, including
 * libpq's defaults under ~/.postgresql (root.crt, postgresql.crt/.key).
 * Differences from libpq: sslrootcert=system uses Node's CA store (libpq uses
 * OpenSSL's); sslcrldir, sslcertmode and sslkey permission checks are not applied.
 */
export function tlsOptions(r: ResolvedConnInfo): ConnectionOptions | false {
  const p = r.params;
  // libpq never uses TLS over a Unix socket, whatever sslmode says.
  if (r.host.startsWith('/') || r.sslmode === 'disable') return false;
  const opts: ConnectionOptions = {};
  const home = r.homeDir ?? os.homedir();
  const pgDir = home ? path.join(home, '.postgresql') : undefined;
  const defaultRoot = pgDir ? path.join(pgDir, 'root.crt') : undefined;

  let rootFile = p.sslrootcert && p.sslrootcert !== 'system' ? p.sslrootcert : undefined;
  if (!p.sslrootcert && defaultRoot && existsSync(defaultRoot)) rootFile = defaultRoot;
  const verify = r.sslmode === 'verify-ca' || r.sslmode === 'verify-full';
  if (verify && !rootFile && p.sslrootcert !== 'system') {
    throw new UsageError(
      `sslmode=${r.sslmode} needs the certificate of the CA that signed the server's certificate, and the root certificate file "${defaultRoot ?? '~/.postgresql/root.crt'}" does not exist`,
      { hint: 'give it with sslrootcert=/path/to/ca.crt (or PGSSLROOTCERT), use sslrootcert=system to trust the system CAs, or use sslmode=require to skip verification' },
    );
  }
  const ca = readFileOption(rootFile, 'sslrootcert');
  if (ca) opts.ca = ca;

  let certFile = p.sslcert;
  let keyFile = p.sslkey;
  if (!certFile && pgDir && existsSync(path.join(pgDir, 'postgresql.crt'))) certFile = path.join(pgDir, 'postgresql.crt');
  if (!keyFile && certFile && pgDir && existsSync(path.join(pgDir, 'postgresql.key'))) keyFile = path.join(pgDir, 'postgresql.key');
  const cert = readFileOption(certFile, 'sslcert');
  const key = readFileOption(keyFile, 'sslkey');
  if (cert) opts.cert = cert;
  if (key) opts.key = key;
  if (p.sslpassword) opts.passphrase = p.sslpassword;
  const crl = readFileOption(p.sslcrl, 'sslcrl');
  if (crl) opts.crl = crl;
  if (p.ssl_min_protocol_version && TLS_VERSIONS.has(p.ssl_min_protocol_version)) {
    opts.minVersion = p.ssl_min_protocol_version as ConnectionOptions['minVersion'];
  }
  if (p.ssl_max_protocol_version && TLS_VERSIONS.has(p.ssl_max_protocol_version)) {
    opts.maxVersion = p.ssl_max_protocol_version as ConnectionOptions['maxVersion'];
  }
  // The name to verify is host, also when hostaddr says where to connect (libpq). SNI only for names.
  if (net.isIP(r.host) === 0 && p.sslsni !== '0') opts.servername = r.host;
  const checkHost = r.host;
  // libpq: "require" with a root certificate present behaves like verify-ca.
  const mode = r.sslmode === 'require' && ca ? 'verify-ca' : r.sslmode;
  if (mode === 'verify-full') {
    opts.rejectUnauthorized = true;
    // pg connects to hostaddr when given; check the certificate against host, as libpq does.
    opts.checkServerIdentity = (_name, certificate) => tls.checkServerIdentity(checkHost, certificate);
  } else if (mode === 'verify-ca') {
    opts.rejectUnauthorized = true;
    opts.checkServerIdentity = () => undefined;
  } else {
    opts.rejectUnauthorized = false;
  }
  return opts;
}

/**
 * Connection options that demand a guarantee node-postgres cannot give. libpq
 * would enforce them; silently ignoring them would weaken what the user asked
 * for, so they are refused (exit 2). Other keywords that pg has no use for
 * (gssencmode=prefer, krbsrvname, …) are passed on to the client tools only.
 */
function assertSupported(r: ResolvedConnInfo): void {
  const p = r.params;
  const refuse = (what: string, why: string) => {
    throw new UsageError(`the connection option ${what} is not supported by pgferry's own connections`, { hint: why });
  };
  if (p.channel_binding === 'require') {
    refuse('channel_binding=require', 'use channel_binding=prefer (the default: channel binding is used over TLS when the server offers it)');
  }
  if (p.require_auth) refuse(`require_auth=${p.require_auth}`, 'remove it; the server decides the authentication method');
  if (p.requirepeer) refuse('requirepeer', 'remove it, or connect over TCP');
  if (p.gssencmode === 'require') refuse('gssencmode=require', 'GSSAPI encryption is not available: use TLS (sslmode=verify-full)');
  if (p.sslcertmode === 'require') refuse('sslcertmode=require', 'remove it; give the client certificate with sslcert/sslkey');
  if (p.target_session_attrs && p.target_session_attrs !== 'any') {
    refuse(
      `target_session_attrs=${p.target_session_attrs}`,
      'pgferry connects to exactly one server: remove it (pgferry validate reports whether a server is a standby)',
    );
  }
}

function clientConfig(r: ResolvedConnInfo, opts: ConnectOptions, ssl: ConnectionOptions | false): pg.ClientConfig {
  const p = r.params;
  const settings = { ...(opts.settings ?? {}) };
  // JIT off unless the connection string's options say otherwise (they come after, and the last -c wins). pgferry's
  // catalog queries cost more than the planner's JIT threshold on large schemas and then spent most of their time
  // compiling: the table list of a database with 3 000 tables took 1.2 s with JIT and 0.19 s without; its COPY and
  // hash statements gain nothing measurable from it (docs/benchmarks.md, "Every command's start: JIT, SCRAM and sizes read twice").
  // Then SESSION_DEFAULTS (session-defaults.ts: none of the limits a database or role sets for applications), the
  // connection string's options and the caller's settings.
  const optionParts: string[] = ['-c jit=off', withSessionDefaults(p.options, settings)];
  // PGCONNECT_TIMEOUT was merged into params by resolveConnInfo (with the caller's environment).
  const timeout = Number(p.connect_timeout ?? 0);
  const config: pg.ClientConfig & { replication?: string } = {
    host: p.hostaddr || r.host,
    port: r.port,
    user: r.user,
    database: r.dbname,
    // Never undefined: pg would then read PGPASSWORD / ~/.pgpass itself, behind our back.
    password: r.password ?? '',
    ssl: ssl === false ? false : ssl,
    application_name: opts.applicationName ?? APPLICATION_NAME,
    keepAlive: p.keepalives !== '0',
    // libpq treats connect_timeout below 2 s as 2 s; 0 means wait forever. We cap "forever" at 30 s.
    connectionTimeoutMillis: timeout > 0 ? Math.max(timeout, 2) * 1000 : 30_000,
  };
  if (p.keepalives_idle && /^\d+$/.test(p.keepalives_idle)) config.keepAliveInitialDelayMillis = Number(p.keepalives_idle) * 1000;
  if (ssl !== false) {
    // libpq's default channel_binding=prefer: SCRAM-SHA-256-PLUS over TLS when the server offers it.
    if (p.channel_binding !== 'disable') config.enableChannelBinding = true;
  }
  config.options = optionParts.join(' ');
  if (opts.statementTimeoutMs) config.statement_timeout = opts.statementTimeoutMs;
  if (opts.replication) config.replication = 'database';
  return config;
}

async function tryConnect(config: pg.ClientConfig, opts: ConnectOptions): Promise<pg.Client> {
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', () => {});
  let serverVersion = '';
  const onStatus = (m: { parameterName: string; parameterValue: string }) => void (m.parameterName === 'server_version' && (serverVersion = m.parameterValue));
  client.connection.on('parameterStatus', onStatus);
  try {
    await client.connect();
    client.connection.removeListener('parameterStatus', onStatus);
    await applyAfterLogin(client, serverVersion, String(config.options ?? ''), { quietDdl: opts.quietDdl });
    return client;
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
}

/** TLS was refused in a way that libpq's "prefer" answers by trying again without it. */
function preferFallsBack(err: unknown): boolean {
  const msg = (err as Error).message ?? '';
  // 28000 over TLS: pg_hba.conf has only hostnossl for us (libpq retries without TLS then too).
  return /does not support SSL|error establishing an SSL connection/i.test(msg) || (err as { code?: string }).code === '28000';
}

/**
 * Open sessions side by side: all of them, or none — on a failure those that did open are ended and the first
 * failure (in the order given) is thrown.
 */
export async function connectAll(opening: Promise<pg.Client>[]): Promise<pg.Client[]> {
  const settled = await Promise.allSettled(opening);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<pg.Client>).value);
  await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.end().catch(() => {}) : undefined)));
  throw failed.reason;
}

/** Open a client. Connection failures become ConnectError (exit 3) with a hint. */
export async function connect(r: ResolvedConnInfo, opts: ConnectOptions = {}): Promise<pg.Client> {
  const label = opts.label ?? 'the server';
  try {
    assertSupported(r);
    const ssl = tlsOptions(r);
    if (r.sslmode === 'prefer' && ssl) {
      try {
        return await tryConnect(clientConfig(r, opts, ssl), opts);
      } catch (err) {
        if (!preferFallsBack(err)) throw err;
        try {
          return await tryConnect(clientConfig(r, opts, false), opts);
        } catch (err2) {
          // Refused both with and without TLS: say so, rather than blame either one.
          if (sqlstate(err) === '28000' && sqlstate(err2) === '28000') {
            throw new ConnectError(`cannot connect to ${label} (${describeConn(r)}): ${(err as Error).message}; without TLS: ${(err2 as Error).message}`, {
              hint: 'pg_hba.conf on the server has no rule that lets this user into this database from here, with or without TLS',
              cause: err2,
            });
          }
          throw err2;
        }
      }
    }
    if (r.sslmode === 'allow' && ssl) {
      try {
        return await tryConnect(clientConfig(r, opts, false), opts);
      } catch (err) {
        if ((err as { code?: string }).code !== '28000') throw err;
        return await tryConnect(clientConfig(r, opts, ssl), opts);
      }
    }
    return await tryConnect(clientConfig(r, opts, ssl), opts);
  } catch (err) {
    throw connectError(err, label, describeConn(r), r.passwordSource);
  }
}

/** What a kept session must match to serve a request (session-keeper.ts): the server, database, user and startup settings. */
function sessionKey(r: ResolvedConnInfo, opts: ConnectOptions): string {
  return JSON.stringify([r.host, r.port, r.user, r.dbname, r.params, opts.applicationName ?? '', opts.settings ?? {}, opts.statementTimeoutMs ?? 0, !!opts.quietDdl]);
}

/** A session in use: `release(ok)` gives it back to the keeper (ok) or closes it. */
export interface AcquiredClient {
  client: pg.Client;
  release: (ok: boolean) => Promise<void>;
}

/** A session from the keeper of the running command (session-keeper.ts), or a new one. */
export async function acquireClient(r: ResolvedConnInfo, opts: ConnectOptions = {}): Promise<AcquiredClient> {
  const keeper = opts.replication ? undefined : sessionKeeper();
  const key = keeper ? sessionKey(r, opts) : '';
  let client = await keeper?.take(key);
  if (!client) {
    client = await connect(r, opts);
    keeper?.opened(client);
  }
  const c = client;
  return {
    client: c,
    release: async (ok) => {
      if (ok && keeper) keeper.give(key, c);
      else await c.end().catch(() => {});
    },
  };
}

/**
 * Run fn with a client, always releasing it: closed, or, inside keepingSessions
 * (session-keeper.ts), kept for the next withClient of the same server, database and settings.
 */
export async function withClient<T>(
  r: ResolvedConnInfo,
  fn: (client: pg.Client) => Promise<T>,
  opts: ConnectOptions = {},
): Promise<T> {
  return withAcquired(await acquireClient(r, opts), fn);
}

/** Run fn with an acquired session, then release it: kept when fn succeeded, closed when it threw. */
export async function withAcquired<T>(session: AcquiredClient, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  let ok = false;
  try {
    const result = await fn(session.client);
    ok = true;
    return result;
  } finally {
    await session.release(ok);
  }
}

export interface TransactionOptions {
  isolation?: 'read committed' | 'repeatable read' | 'serializable';
  readOnly?: boolean;
  deferrable?: boolean;
  /** Import an exported snapshot (requires repeatable read or serializable). */
  snapshot?: string;
}

/** Run fn inside BEGIN … COMMIT, rolling back on error. */
export async function withTransaction<T>(
  client: pg.Client,
  fn: (client: pg.Client) => Promise<T>,
  opts: TransactionOptions = {},
): Promise<T> {
  const isolation = opts.isolation ?? (opts.snapshot ? 'repeatable read' : 'read committed');
  let begin = `BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`;
  if (opts.readOnly) begin += ' READ ONLY';
  if (opts.deferrable) begin += ' DEFERRABLE';
  await client.query(begin);
  try {
    if (opts.snapshot) {
      // SET TRANSACTION SNAPSHOT takes no bind parameters; the id is validated first.
      if (!/^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$/i.test(opts.snapshot)) throw new UsageError(`invalid snapshot id "${opts.snapshot}"`);
      await client.query(`SET TRANSACTION SNAPSHOT '${opts.snapshot}'`);
    }
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
