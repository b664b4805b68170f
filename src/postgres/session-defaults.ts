/**
 * Every session's defaults, as pg_dump and pg_restore set them for themselves: none of the limits a database or
 * role may set for its applications (a verify's hash of a big table outlasts a statement_timeout of 30 s, the
 * copy's snapshot waits in its transaction, the fence waits for locks), and read-write by default (a read-only
 * default guards a database against applications' writes, while pgferry's own are meant). Sent in the startup
 * packet before the connection string's options, which win (connect.ts), and in the child tools' connection
 * strings (tools.ts).
 */
import type pg from 'pg';

export const SESSION_DEFAULTS: Readonly<Record<string, string>> = {
  // As pg_dump's: a row-level security policy that would hide rows from pgferry's role is an error, never a silently
  // smaller copy or a verify that compares only the rows the policy shows.
  row_security: 'off',
  default_transaction_read_only: 'off',
  statement_timeout: '0',
  lock_timeout: '0',
  idle_in_transaction_session_timeout: '0',
};

/** `-c name=value` switches for a startup packet's options; a blank or backslash in a value escaped (the server splits options at blanks). */
export function optionSwitches(settings: Readonly<Record<string, string>>): string[] {
  return Object.entries(settings).map(([k, v]) => `-c ${k}=${v.replace(/([\\ ])/g, '\\$1')}`);
}

/** A session's options: SESSION_DEFAULTS, then a connection string's own `options`, then a caller's settings (the last -c wins). */
export function withSessionDefaults(options: string | undefined, settings: Readonly<Record<string, string>> = {}): string {
  return [...optionSwitches(SESSION_DEFAULTS), ...(options ? [options] : []), ...optionSwitches(settings)].join(' ');
}

/** transaction_timeout (PostgreSQL 17) cannot be sent at login (older servers refuse the name): set after it. */
const NO_TRANSACTION_TIMEOUT = 'SET transaction_timeout = 0';

/**
 * For sessions that make pgferry's own DDL (its publication, the fence, the reverse replication, cleanup): the database's
 * event triggers enabled as usual (ORIGIN) do not fire in a session with session_replication_role = replica, nor
 * do the fence's own triggers — so an audit trigger that logs every DDL command into a table neither records
 * pgferry's plumbing nor runs into the fence when it writes. Only where the role may set it (a superuser, or
 * GRANT SET ON PARAMETER from 15): elsewhere the session goes on as it is.
 */
const QUIET_DDL = 'SET session_replication_role = replica';

/** Statements set after login, which DISCARD ALL undoes (the settings of the startup packet survive it). */
const setAfterLogin = new WeakMap<pg.Client, string[]>();

/** Startup options (`-c name=value`, `--name=value`) that set transaction_timeout themselves. */
export function setsTransactionTimeout(options: string): boolean {
  return /(^|[\s-]|-c)transaction[_-]timeout\s*=/i.test(options);
}

/** Set what cannot be sent at login: on a server that has it, unless the startup options set it themselves. */
export async function applyAfterLogin(client: pg.Client, serverVersion: string, options: string, o: { quietDdl?: boolean } = {}): Promise<void> {
  const done: string[] = [];
  if (parseInt(serverVersion, 10) >= 17 && !setsTransactionTimeout(options)) {
    await client.query(NO_TRANSACTION_TIMEOUT);
    done.push(NO_TRANSACTION_TIMEOUT);
  }
  if (o.quietDdl) {
    try {
      await client.query(QUIET_DDL);
      done.push(QUIET_DDL);
    } catch (err) {
      // 42501: not allowed to; the database's event triggers then fire on pgferry's DDL as on anyone's.
      if ((err as { code?: string }).code !== '42501') throw err;
    }
  }
  if (done.length) setAfterLogin.set(client, done);
}

/** Reset a session for its next user (session-keeper.ts): DISCARD ALL, and again what applyAfterLogin set. */
export async function resetSession(client: pg.Client): Promise<void> {
  await client.query('DISCARD ALL');
  for (const sql of setAfterLogin.get(client) ?? []) await client.query(sql);
}
