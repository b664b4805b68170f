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
  // A system error's code can look like one (EPIPE, EPERM): those carry a syscall or an errno.
  const sys = err as { syscall?: unknown; errno?: unknown } | undefined;
  if (typeof sys?.syscall === 'string' || typeof sys?.errno === 'number') return undefined;
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
  // pg's words for a connection lost under a query (terminated backend, server restart, network).
  const msg = err instanceof Error ? err.message : '';
  if (/^Connection terminated unexpectedly|encountered a connection error/i.test(msg)) return true;
  const e = err as { code?: string; syscall?: string } | undefined;
  // ENOENT / EACCES are worth a retry only for a Unix socket (a restarting server), not for files.
  if ((e?.code === 'ENOENT' || e?.code === 'EACCES') && e.syscall !== 'connect') return false;
  return typeof e?.code === 'string' && NETWORK_CODES.has(e.code);
}

/**
 * The server's refusal of one statement (a missing role or column, a constraint, a privilege), after which the
 * session goes on; not a lost or broken session (classes 08, 57, 53, 58, XX), nor an error without a SQLSTATE.
 */
export function isStatementRefusal(err: unknown): boolean {
  const code = sqlstate(err);
  return !!code && !/^(08|57|53|58|XX)/.test(code);
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

const NO_PASSWORD_HINT = 'no password was given: put it in the connection string, PGPASSWORD, or ~/.pgpass (PGPASSFILE)';

/** Node's certificate verification failures (tls / OpenSSL codes). */
const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA',
]);

/** Turn a connection failure into a ConnectError that says what to check. */
export function connectError(err: unknown, label: string, where: string, passwordSource?: string): PgferryError {
  if (err instanceof PgferryError) return err;
  let msg = err instanceof Error ? err.message : String(err);
  const code = sqlstate(err) ?? (err as { code?: string } | undefined)?.code;
  let hint: string | undefined;
  switch (code) {
    case '28P01':
      hint = passwordSource ? `check the password (it came from ${passwordSource === 'PGPASSWORD' ? 'the PGPASSWORD environment variable' : `the ${passwordSource}`})` : NO_PASSWORD_HINT;
      break;
    case '28000':
      if (/no encryption/i.test(msg)) {
        hint = 'the server accepts this connection only over TLS: use sslmode=require (or verify-ca / verify-full)';
      } else if (/SSL encryption|GSS encryption/i.test(msg)) {
        hint = 'the server accepts this connection only without TLS: use sslmode=prefer or sslmode=disable';
      } else {
        hint = 'the server refused this user/host combination: check pg_hba.conf on the server, the user name, and sslmode';
      }
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
    case 'ERR_TLS_CERT_ALTNAME_INVALID': {
      const host = (err as { host?: string }).host;
      const names = (err as { cert?: { subjectaltname?: string } }).cert?.subjectaltname;
      hint =
        `the server's certificate is not valid for "${host ?? 'this host'}"${names ? ` (it names ${names})` : ''}: ` +
        'connect using a name in the certificate, or use sslmode=verify-ca to check only the CA';
      break;
    }
    default:
      if (/client password must be a (non-empty )?string/i.test(msg)) {
        // pg's own wording for "the server asked for a password and there is none".
        msg = 'the server asks for a password and none was given';
        hint = NO_PASSWORD_HINT;
      } else if (/timeout/i.test(msg)) {
        hint = 'the server did not answer in time: check host, port, firewalls, or raise connect_timeout';
      } else if ((code && CERT_CODES.has(code)) || /certificate|self[- ]signed|unable to verify/i.test(msg)) {
        hint =
          'TLS verification failed: the server\'s certificate was not issued by the CA in sslrootcert; ' +
          'point sslrootcert=/path/ca.crt at the CA that signed it, or use sslmode=require to skip verification';
      } else if (/does not support SSL/i.test(msg)) {
        hint = 'the server has no TLS: use sslmode=prefer or disable, or enable ssl on the server';
      }
  }
  return new ConnectError(`cannot connect to ${label} (${where}): ${msg}`, { hint, cause: err });
}

/**
 * The lock table is full: SQLSTATE 53200 with PostgreSQL's max_locks_per_transaction hint (53200 alone is any
 * shortage of shared memory; the GUC's name is quoted from 17 on), or a client tool's text saying the same.
 */
export function isLockTableFull(err: unknown): boolean {
  const e = err as PgLikeError | undefined;
  if (sqlstate(err) === '53200') return /max_locks_per_transaction/.test(e?.hint ?? '');
  return /out of shared memory[\s\S]*max_locks_per_transaction/.test(e?.message ?? '');
}

/**
 * When the lock table is full (isLockTableFull), an error that says so: `statement` takes a lock on each of
 * `what` in one transaction on the `side` server, and the lock table (max_locks_per_transaction × its processes,
 * shared by every session) is too small. Any other error is returned as it is. `context` null: the message
 * stays as it is (a client tool's own).
 */
export function lockTableError(err: unknown, context: string | null, side: 'source' | 'target', statement: string, what: string): unknown {
  if (!isLockTableFull(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OperationError(context ? `${context}: ${message}` : message, {
    hint:
      `${statement} locks ${what} in one transaction, and the ${side}'s lock table is full: raise max_locks_per_transaction on the ${side} ` +
      `(ALTER SYSTEM SET max_locks_per_transaction = …; then restart it; pgferry validate compares the tables with the lock table's size) and run this again`,
    cause: err,
  });
}

/**
 * A row-level security policy would have hidden rows from pgferry's role (its sessions run with row_security
 * off, as pg_dump's: an error rather than a silently smaller copy or comparison): what to do about it. The
 * server's own hint for a table's owner (NO FORCE ROW LEVEL SECURITY) would change the application's security.
 */
export function rowSecurityHint(err: unknown): string | undefined {
  if (sqlstate(err) !== '42501' || !/row-level security/.test((err as Error).message ?? '')) return undefined;
  return 'pgferry reads every row, as pg_dump does: connect as a superuser or a role with BYPASSRLS (ALTER ROLE … BYPASSRLS, as a superuser)';
}

/** Wrap an error raised during an operation into an OperationError with context. */
export function operationError(err: unknown, context: string): PgferryError {
  if (err instanceof PgferryError) return err;
  const e = err as PgLikeError;
  const parts = [`${context}: ${e?.message ?? String(err)}`];
  if (e?.detail) parts.push(`DETAIL: ${e.detail}`);
  return new OperationError(parts.join('\n'), { hint: rowSecurityHint(err) ?? e?.hint, cause: err });
}
