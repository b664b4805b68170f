/**
 * A database's own subscriptions (it receives rows from other servers), pgferry's own left aside: init leaves them
 * out, and after the hand-over they would go on applying to the fenced source only. validate and cutover name them.
 */
import type pg from 'pg';
import { isPgferryName } from '../../state/object-names.js';

export interface SourceSubscription {
  name: string;
  enabled: boolean;
  publications: string[];
}

/** Subscriptions of the connected database but pgferry's own; null when pg_subscription cannot be read. */
export async function gatherSubscriptions(client: pg.Client): Promise<SourceSubscription[] | null> {
  try {
    const { rows } = await client.query<SourceSubscription>(
      `SELECT subname AS name, subenabled AS enabled, subpublications AS publications FROM pg_subscription
        WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1`,
    );
    return rows.filter((r) => !isPgferryName(r.name));
  } catch {
    return null;
  }
}
