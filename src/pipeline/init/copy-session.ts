/**
 * One CopySession per worker: a source connection inside a REPEATABLE READ
 * transaction that imported the snapshot, and a target connection on which
 * every part is one transaction. Any failure inside a part kills the session's
 * two connections (killSession); the worker opens a new session for its next
 * attempt.
 */
import type pg from 'pg';
import { OperationError } from '../../errors.js';
import { CANONICAL_SETTINGS, connect } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { operationError } from '../../postgres/errors.js';
import { quoteLiteral } from '../../postgres/identifiers.js';

export interface CopySession {
  /** In a REPEATABLE READ transaction that ran SET TRANSACTION SNAPSHOT. */
  source: pg.Client;
  target: pg.Client;
}

export interface OpenedCopySession extends CopySession {
  /** True once a failure killed the connections; open a new session. */
  readonly broken: boolean;
  /** End the snapshot transaction and close both connections (kills them when broken). */
  close(): Promise<void>;
}

export const COPY_APPLICATION_NAME = 'pgferry-copy';

const COMMON_SETTINGS: Record<string, string> = {
  ...CANONICAL_SETTINGS,
  lc_monetary: 'C',
  statement_timeout: '0',
  idle_in_transaction_session_timeout: '0',
};

const brokenSessions = new WeakSet<CopySession>();

function assertSnapshotId(snapshot: string): void {
  if (!/^[0-9A-F]+-[0-9A-F]+(-[0-9A-F]+)?$/i.test(snapshot)) {
    throw new OperationError(`invalid snapshot id "${snapshot}"`);
  }
}

/** Close a client's socket now: the server aborts its open transaction when it notices. */
function killClient(client: pg.Client): void {
  try {
    client.connection.stream.destroy();
  } catch {
    // already gone
  }
}

/** Mark a session broken and kill both its connections. */
export function killSession(s: CopySession): void {
  brokenSessions.add(s);
  killClient(s.source);
  killClient(s.target);
}

export function isSessionBroken(s: CopySession): boolean {
  return brokenSessions.has(s);
}

/**
 * A part is recorded done once its COMMIT returns, so that COMMIT must survive
 * a crash of the target: where the server runs with synchronous_commit = off,
 * this session flushes its commits locally (a stricter setting is left as it is).
 */
async function durableCommits(target: pg.Client): Promise<void> {
  const { rows } = await target.query<{ v: string }>("SELECT current_setting('synchronous_commit') AS v");
  if (rows[0]?.v === 'off') await target.query('SET synchronous_commit = local');
}

/**
 * Open a worker's connection pair and import the snapshot on the source.
 * The exporting transaction (or replication connection) must still be open.
 */
export async function openCopySession(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
  snapshot: string,
): Promise<OpenedCopySession> {
  assertSnapshotId(snapshot);
  const src = await connect(source, {
    label: 'the source',
    applicationName: COPY_APPLICATION_NAME,
    settings: { ...COMMON_SETTINGS, row_security: 'off' },
  });
  let tgt: pg.Client | undefined;
  try {
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      await src.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
    } catch (err) {
      // The snapshot lives only as long as the connection that exported it: a dropped connection or a restart ends it.
      throw operationError(err, `cannot import snapshot ${snapshot} on the source: the connection that exported it is gone (dropped, or the server restarted); run init again to resume`);
    }
    tgt = await connect(target, { label: 'the target', applicationName: COPY_APPLICATION_NAME, settings: COMMON_SETTINGS });
    await durableCommits(tgt);
  } catch (err) {
    await Promise.all([src.end().catch(() => {}), tgt?.end().catch(() => {})]);
    throw err;
  }
  const session: OpenedCopySession = {
    source: src,
    target: tgt,
    get broken() {
      return brokenSessions.has(session);
    },
    async close() {
      if (brokenSessions.has(session)) {
        killSession(session);
      } else {
        await src.query('COMMIT').catch(() => killClient(src));
      }
      await Promise.all([src.end().catch(() => {}), tgt.end().catch(() => {})]);
    },
  };
  return session;
}
