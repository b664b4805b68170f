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
  default_transaction_read_only: 'off',
  statement_timeout: '0',
  lock_timeout: '0',
  idle_in_transaction_session_timeout: '0',
};

/** transaction_timeout (PostgreSQL 17) cannot be sent at login (older servers refuse the name): set after it. */
const AFTER_LOGIN = 'SET transaction_timeout = 0';

/** Sessions that had AFTER_LOGIN, which DISCARD ALL undoes (the settings of the startup packet survive it). */
const setAfterLogin = new WeakSet<pg.Client>();

/** Set what cannot be sent at login, on a server that has it, unless the startup options set it themselves. */
export async function applyAfterLogin(client: pg.Client, serverVersion: string, options: string): Promise<void> {
  if (parseInt(serverVersion, 10) < 17 || /(^|[^a-z_])transaction[_-]timeout\s*=/i.test(options)) return;
  await client.query(AFTER_LOGIN);
  setAfterLogin.add(client);
}

/** Reset a session for its next user (session-keeper.ts): DISCARD ALL, and again what applyAfterLogin set. */
export async function resetSession(client: pg.Client): Promise<void> {
  await client.query('DISCARD ALL');
  if (setAfterLogin.has(client)) await client.query(AFTER_LOGIN);
}
