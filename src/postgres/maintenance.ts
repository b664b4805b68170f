/** A session on a server's maintenance database, for statements about another database than the one it connects to. */
import type pg from 'pg';
import { OperationError } from '../errors.js';
import { acquireClient, withAcquired, type AcquiredClient } from './connect.js';
import { forDatabase, type ResolvedConnInfo } from './conninfo.js';

/** A session on the server of `target`, on its own database unless that is `avoid`, else postgres or template1 (not the database we may drop or revoke CONNECT on). */
export async function withMaintenanceClient<T>(target: ResolvedConnInfo, avoid: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const candidates = [target.dbname, 'postgres', 'template1'].filter((d, i, a) => d !== avoid && a.indexOf(d) === i);
  let lastErr: unknown;
  for (const db of candidates) {
    let session: AcquiredClient;
    try {
      session = await acquireClient(forDatabase(target, db), { label: 'the target' });
    } catch (err) {
      lastErr = err;
      continue;
    }
    return withAcquired(session, fn);
  }
  throw lastErr ?? new OperationError('no maintenance database to connect to on the target');
}
