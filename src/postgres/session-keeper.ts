/**
 * Sessions kept open for the length of one command and handed out again by
 * withClient (connect.ts). A new session costs a fork on the server and a
 * SCRAM exchange on both ends (20–50 ms on a small VM), and one run of init
 * opens about twenty-five through withClient, most of them one after another
 * before pg_dump can start.
 *
 * A session goes back on the shelf only when its user finished without an
 * error, left no transaction open, nothing queued and no listener behind;
 * it is then reset with DISCARD ALL (temporary tables, settings made with
 * SET, prepared statements, advisory locks, LISTEN) before anyone else gets
 * it, and what session-defaults.ts sets after login is set again. Settings
 * sent at connection start survive DISCARD ALL, so they are part of the key
 * a session is kept under. A session idle for MAX_IDLE_MS
 * is closed: nothing holds a server session through a long phase, and a
 * firewall or idle_session_timeout cannot have cut one that is handed out.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import { resetSession } from './session-defaults.js';

const MAX_IDLE_MS = 10_000;
const MAX_KEPT = 8;
const EVENTS = ['notice', 'notification', 'error', 'end', 'drain'] as const;

interface Shelved {
  key: string;
  client: pg.Client;
  /** Settles true once DISCARD ALL succeeded. */
  reset: Promise<boolean>;
  onEnd: () => void;
  timer: NodeJS.Timeout;
}

export class SessionKeeper {
  constructor(private readonly maxIdleMs = MAX_IDLE_MS) {}

  private shelf: Shelved[] = [];
  private listeners = new WeakMap<pg.Client, number>();
  private closed = false;

  /** A kept session for `key`, reset and ready, or undefined (the caller connects). */
  async take(key: string): Promise<pg.Client | undefined> {
    for (;;) {
      const i = this.shelf.findIndex((s) => s.key === key);
      if (i < 0) return undefined;
      const [s] = this.shelf.splice(i, 1);
      s!.client.removeListener('end', s!.onEnd);
      clearTimeout(s!.timer);
      if (await s!.reset) {
        this.listeners.set(s!.client, listenerCount(s!.client));
        return s!.client;
      }
      void s!.client.end().catch(() => {});
    }
  }

  /** Note a newly opened session, so that `give` can tell whether its user left listeners behind. */
  opened(client: pg.Client): void {
    this.listeners.set(client, listenerCount(client));
  }

  /** Give a session back after a successful use; it is kept if it is clean, else closed. */
  give(key: string, client: pg.Client): void {
    const c = client as pg.Client & { _ending?: boolean; readyForQuery?: boolean; _queryQueue?: unknown[] };
    const clean =
      !this.closed &&
      !c._ending &&
      c.readyForQuery === true &&
      (c._queryQueue?.length ?? 0) === 0 &&
      c.getTransactionStatus() === 'I' &&
      listenerCount(client) === this.listeners.get(client);
    if (!clean || this.shelf.length >= MAX_KEPT) {
      void client.end().catch(() => {});
      return;
    }
    const s: Shelved = {
      key,
      client,
      reset: resetSession(client).then(
        () => {
          // DISCARD ALL dropped the server's prepared statements: pg must not think them still parsed.
          const conn = (client as unknown as { connection?: { parsedStatements?: Record<string, string> } }).connection;
          if (conn?.parsedStatements) conn.parsedStatements = {};
          return true;
        },
        () => false,
      ),
      onEnd: () => {
        const i = this.shelf.indexOf(s);
        if (i >= 0) this.shelf.splice(i, 1);
        clearTimeout(s.timer);
      },
      // Not kept open through a long phase that makes no use of it.
      timer: setTimeout(() => {
        s.onEnd();
        void client.end().catch(() => {});
      }, this.maxIdleMs).unref(),
    };
    client.once('end', s.onEnd);
    this.shelf.push(s);
  }

  /** Close every kept session (before a database is dropped, and at the end). */
  async closeIdle(): Promise<void> {
    const all = this.shelf.splice(0);
    for (const s of all) clearTimeout(s.timer);
    await Promise.all(all.map((s) => s.client.end().catch(() => {})));
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.closeIdle();
  }
}

function listenerCount(client: pg.Client): number {
  return EVENTS.reduce((n, e) => n + client.listenerCount(e), 0);
}

const current = new AsyncLocalStorage<SessionKeeper>();

/** Run fn with sessions kept and reused between its withClient calls; all are closed when it settles. */
export async function keepingSessions<T>(fn: () => Promise<T>, opts: { maxIdleMs?: number } = {}): Promise<T> {
  const keeper = new SessionKeeper(opts.maxIdleMs);
  try {
    return await current.run(keeper, fn);
  } finally {
    await keeper.close();
  }
}

/** The keeper of the command running now, if it keeps sessions. */
export function sessionKeeper(): SessionKeeper | undefined {
  return current.getStore();
}
