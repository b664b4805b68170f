/**
 * One CopySession per worker: a source connection inside a REPEATABLE READ
 * transaction that imported the snapshot, and a target connection on which
 * every part is one transaction. Any failure inside a part kills the session's
 * two connections (killSession); the worker opens a new session for its next
 * attempt.
 */
import type pg from 'pg';
import { OperationError } from '../../errors.js';
import { CANONICAL_SETTINGS, connect, connectAll } from '../../postgres/connect.js';
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
export function killClient(client: pg.Client): void {
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
 * One round trip: the setting is changed only where it reads off.
 */
async function durableCommits(target: pg.Client): Promise<void> {
  await target.query("SELECT set_config('synchronous_commit', 'local', false) WHERE current_setting('synchronous_commit') = 'off'");
}

/** The source side of a worker: a transaction under the exported snapshot, BEGIN and the import in one round trip. */
export async function openSource(source: ResolvedConnInfo, snapshot: string): Promise<pg.Client> {
  const src = await connect(source, {
    label: 'the source',
    applicationName: COPY_APPLICATION_NAME,
    settings: { ...COMMON_SETTINGS, row_security: 'off' },
  });
  try {
    await src.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshot)}`);
  } catch (err) {
    await src.end().catch(() => {});
    // The snapshot lives only as long as the connection that exported it: a dropped connection or a restart ends it.
    throw operationError(err, `cannot import snapshot ${snapshot} on the source: the connection that exported it is gone (dropped, or the server restarted); run init again to resume`);
  }
  return src;
}

async function openTarget(target: ResolvedConnInfo): Promise<pg.Client> {
  const tgt = await connect(target, { label: 'the target', applicationName: COPY_APPLICATION_NAME, settings: COMMON_SETTINGS });
  try {
    await durableCommits(tgt);
  } catch (err) {
    await tgt.end().catch(() => {});
    throw err;
  }
  return tgt;
}

/**
 * Open a worker's connection pair and import the snapshot on the source.
 * The exporting transaction (or replication connection) must still be open.
 * Both sides open at once: over a network each is a few round trips.
 */
export async function openCopySession(
  source: ResolvedConnInfo,
  target: ResolvedConnInfo,
  snapshot: string,
): Promise<OpenedCopySession> {
  assertSnapshotId(snapshot);
  const [src, tgt] = (await connectAll([openSource(source, snapshot), openTarget(target)])) as [pg.Client, pg.Client];
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
