/**
 * Connections: one place that turns a resolved connection string into a pg
 * client (TLS per sslmode, timeouts, application_name), plus withClient /
 * withTransaction helpers that always release what they take.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { UsageError } from '../errors.js';
import { describeConn, type ResolvedConnInfo } from './conninfo.js';
import { connectError } from './errors.js';

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
}

export type Client = pg.Client;

function readFileOption(path: string | undefined, what: string): string | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} "${path}": ${(err as Error).message}`);
  }
}

/** TLS options for pg from libpq's sslmode and file parameters. */
export function tlsOptions(r: ResolvedConnInfo): ConnectionOptions | false {
  const p = r.params;
  if (r.host.startsWith('/') || r.sslmode === 'disable') return false;
  const opts: ConnectionOptions = {};
  const ca = readFileOption(p.sslrootcert && p.sslrootcert !== 'system' ? p.sslrootcert : undefined, 'sslrootcert');
  if (ca) opts.ca = ca;
  const cert = readFileOption(p.sslcert, 'sslcert');
  const key = readFileOption(p.sslkey, 'sslkey');
  if (cert) opts.cert = cert;
  if (key) opts.key = key;
  if (p.sslpassword) opts.passphrase = p.sslpassword;
  if (!r.host.match(/^[\d.]+$|:/)) opts.servername = r.host;
  // libpq: "require" with a root certificate present behaves like verify-ca.
  const mode = r.sslmode === 'require' && ca ? 'verify-ca' : r.sslmode;
  if (mode === 'verify-full') {
    opts.rejectUnauthorized = true;
  } else if (mode === 'verify-ca') {
    opts.rejectUnauthorized = true;
    opts.checkServerIdentity = () => undefined;
  } else {
    opts.rejectUnauthorized = false;
  }
  return opts;
}

function clientConfig(r: ResolvedConnInfo, opts: ConnectOptions, ssl: ConnectionOptions | false): pg.ClientConfig {
  const p = r.params;
  const settings = { ...(opts.settings ?? {}) };
  const optionParts: string[] = [];
  if (p.options) optionParts.push(p.options);
  for (const [k, v] of Object.entries(settings)) optionParts.push(`-c ${k}=${v.replace(/([\\ ])/g, '\\$1')}`);
  const timeout = Number(p.connect_timeout ?? process.env.PGCONNECT_TIMEOUT ?? 0);
  const config: pg.ClientConfig & { replication?: string } = {
    host: p.hostaddr || r.host,
    port: r.port,
    user: r.user,
    database: r.dbname,
    password: r.password ?? '',
    ssl: ssl === false ? false : ssl,
    application_name: opts.applicationName ?? APPLICATION_NAME,
    keepAlive: true,
    // libpq treats connect_timeout below 2 s as 2 s; 0 means wait forever. We cap "forever" at 30 s.
    connectionTimeoutMillis: timeout > 0 ? Math.max(timeout, 2) * 1000 : 30_000,
  };
  if (optionParts.length) config.options = optionParts.join(' ');
  if (opts.statementTimeoutMs) config.statement_timeout = opts.statementTimeoutMs;
  if (opts.replication) config.replication = 'database';
  return config;
}

async function tryConnect(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client(config);
  // An idle client whose server goes away emits 'error'; without a listener Node would crash.
  client.on('error', () => {});
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
}

/** Open a client. Connection failures become ConnectError (exit 3) with a hint. */
export async function connect(r: ResolvedConnInfo, opts: ConnectOptions = {}): Promise<pg.Client> {
  const label = opts.label ?? 'the server';
  const ssl = tlsOptions(r);
  try {
    if (r.sslmode === 'prefer' && ssl) {
      try {
        return await tryConnect(clientConfig(r, opts, ssl));
      } catch (err) {
        if (!/does not support SSL/i.test((err as Error).message)) throw err;
        return await tryConnect(clientConfig(r, opts, false));
      }
    }
    if (r.sslmode === 'allow' && ssl) {
      try {
        return await tryConnect(clientConfig(r, opts, false));
      } catch (err) {
        if ((err as { code?: string }).code !== '28000') throw err;
        return await tryConnect(clientConfig(r, opts, ssl));
      }
    }
    return await tryConnect(clientConfig(r, opts, ssl));
  } catch (err) {
    throw connectError(err, label, describeConn(r), r.passwordSource);
  }
}

/** Run fn with a fresh client, always closing it. */
export async function withClient<T>(
  r: ResolvedConnInfo,
  fn: (client: pg.Client) => Promise<T>,
  opts: ConnectOptions = {},
): Promise<T> {
  const client = await connect(r, opts);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
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
