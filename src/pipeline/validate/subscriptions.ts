/**
 * The source database's own subscriptions: it receives rows from elsewhere. init leaves them out (pg_dump
 * --no-subscriptions: on the target they would replicate a second time), and until cutover pgferry's replication
 * carries what they apply; after the hand-over they would go on applying to the fenced source only (apply workers
 * run as replicas, where the fence's triggers do not fire). Say so, before anything is written.
 */
import { quoteIdent } from '../../postgres/identifiers.js';
import type { SourceSubscription } from '../shared/source-subscriptions.js';
import { warn, type CheckResult } from './types.js';

export function checkSubscriptions(subs: SourceSubscription[] | null): CheckResult | null {
  if (!subs?.length) return null;
  const id = 'database.subscriptions';
  const list = subs.map((s) => `${s.name} (${s.publications.join(', ')}${s.enabled ? '' : '; disabled'})`);
  return warn(
    id,
    'source',
    `the source database subscribes to publications elsewhere: ${list.join(', ')}. init leaves subscriptions out (on the target they would replicate a ` +
      'second time) and pgferry\'s replication carries what they apply until cutover; after the hand-over they would go on applying to the fenced source only',
    `at the hand-over, create each on the target (CREATE SUBSCRIPTION … WITH (copy_data = false), on a new slot of its publisher) and drop it on the old source: ${subs.map((s) => `DROP SUBSCRIPTION ${quoteIdent(s.name)};`).join(' ')}`,
    { details: list },
  );
}
