/**
 * The source database's event triggers: init creates them on the target last and disabled, and cutover enables them
 * as on the source (shared/event-triggers.ts); only a superuser may create one, and init leaves them out otherwise.
 */
import { ok, warn, type CheckResult } from './types.js';

export function checkEventTriggers(names: readonly string[], target: { user: string; superuser: boolean } | null): CheckResult | null {
  if (!names.length) return null;
  const id = 'database.event_triggers';
  const list = names.join(', ');
  if (target && !target.superuser) {
    return warn(
      id,
      'target',
      `the source database has event triggers (${list}), and ${target.user} is no superuser on the target: only a superuser may create one, so init leaves them out (with a warning)`,
      'connect to the target as a superuser for init, or create them there as one (disabled until cutover, which enables them as on the source)',
      { details: [...names] },
    );
  }
  return ok(id, 'source', `event triggers ${list}: init creates them on the target last and disabled (they would fire on pgferry's own DDL), cutover enables them as on the source`);
}
