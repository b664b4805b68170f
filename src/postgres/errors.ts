/**
 * PostgreSQL and network errors mapped onto pgferry's error kinds, with
 * SQLSTATE classes for retries. Every message is redacted by the renderer.
 */
import { ConnectError, OperationError, PgferryError } from '../errors.js';

export interface PgLikeError {
  code?: string;
  message: string;
  detail?: string;
  hint?: string;
  severity?: string;
}

export function isPgError(err: unknown): err is Error & PgLikeError {
  return err instanceof Error && typeof (err as PgLikeError).code === 'string';
}

export function sqlstate(err: unknown): string | undefined {
  return isPgError(err) && /^[0-9A-Z]{5}$/.test(err.code!) ? err.code : undefined;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN', 'EPIPE', 'ENOENT', 'EACCES',
]);

/** SQLSTATEs worth retrying after a pause: serialization, deadlock, shutdown, connection loss, resources. */
export function isRetryable(err: unknown): boolean {
  const code = sqlstate(err);
  if (code) {
    return (
      code === '40001' || code === '40P01' || code === '55P03' || code.startsWith('08') || code === '57P01' ||
      code === '57P02' || code === '57P03' || code === '53300' || code === '53400'
    );
  }
  const errno = (err as { code?: string } | undefined)?.code;
  return typeof errno === 'string' && NETWORK_CODES.has(errno);
}

/** True when the error means the connection itself could not be made or was refused. */
export function isConnectFailure(err: unknown): boolean {
  const code = sqlstate(err);
  if (code) return code.startsWith('28') || code.startsWith('08') || code === '3D000' || code === '57P03' || code === '53300';
  const errno = (err as { code?: string } | undefined)?.code;
  if (typeof errno === 'string' && NETWORK_CODES.has(errno)) return true;
  const msg = err instanceof Error ? err.message : String(err);
  return /timeout expired|Connection terminated|does not support SSL|certificate|self[- ]signed|altnames|ssl/i.test(msg);
}

/** Turn a connection failure into a ConnectError that says what to check. */
export function connectError(err: unknown, label: string, where: string, passwordSource?: string): PgferryError {
  if (err instanceof PgferryError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  const code = sqlstate(err) ?? (err as { code?: string } | undefined)?.code;
  let hint: string | undefined;
  switch (code) {
    case '28P01':
      hint = passwordSource
        ? `check the password (it came from ${passwordSource})`
        : 'no password was given: put it in the connection string, PGPASSWORD, or ~/.pgpass';
      break;
    case '28000':
      hint = 'the server refused this user/host combination: check pg_hba.conf on the server, the user name, and sslmode';
      break;
    case '3D000':
      hint = 'check the database name in the connection string';
      break;
    case '57P03':
      hint = 'the server is starting up or shutting down: try again shortly';
      break;
    case '53300':
      hint = 'the server has no free connection slots: raise max_connections or close idle sessions';
      break;
    case 'ECONNREFUSED':
      hint = 'nothing accepts connections there: is the server running, and are host and port right?';
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      hint = 'the host name does not resolve: check the spelling';
      break;
    case 'ENOENT':
      hint = 'no Unix socket there: is the server running, and is the socket directory right?';
      break;
    default:
      if (/timeout/i.test(msg)) hint = 'the server did not answer in time: check host, port, firewalls, or raise connect_timeout';
      else if (/certificate|self[- ]signed|altnames|unable to verify/i.test(msg)) {
        hint = 'TLS verification failed: give the CA with sslrootcert=/path/ca.crt, and for verify-full connect by the name in the certificate';
      } else if (/does not support SSL/i.test(msg)) hint = 'the server has no TLS: use sslmode=prefer or disable';
  }
  return new ConnectError(`cannot connect to ${label} (${where}): ${msg}`, { hint, cause: err });
}

/** Wrap an error raised during an operation into an OperationError with context. */
export function operationError(err: unknown, context: string): PgferryError {
  if (err instanceof PgferryError) return err;
  const e = err as PgLikeError;
  const parts = [`${context}: ${e?.message ?? String(err)}`];
  if (e?.detail) parts.push(`DETAIL: ${e.detail}`);
  return new OperationError(parts.join('\n'), { hint: e?.hint, cause: err });
}
