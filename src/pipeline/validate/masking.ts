/**
 * Data rules (masking). A rule that cannot be applied at all (unknown
 * column, key column, type that does not fit …) is a configuration error
 * raised while the scope is resolved (exit 2, naming the key); this check
 * reports what the rules will do and what native replication cannot honour.
 */
import type { ScopeTable } from '../../config/scope.js';
import { displayName } from '../../postgres/identifiers.js';
import { describeMasks, isDeterministic } from '../../config/data-rules.js';
import { streamingRefusal } from '../../config/data-rules-catalog.js';
import { ok, warn, type CheckResult } from './types.js';

const ID = 'tables.data_rules';

export function checkMasking(tables: ScopeTable[], sourceMajor: number): CheckResult[] {
  const masked = tables.filter((t) => !t.schemaOnly && t.masking?.masks.length);
  if (!masked.length) return [];
  const details = masked.flatMap((t) => describeMasks(t.masking).map((d) => `${displayName(t.schema, t.name)}.${d}`));
  const columns = masked.reduce((n, t) => n + t.masking!.masks.length, 0);
  const out: CheckResult[] = [
    ok(ID, 'source', `${columns} masked column${columns === 1 ? '' : 's'} in ${masked.length} table${masked.length === 1 ? '' : 's'}: init masks them in the source's SELECT`, { details }),
  ];
  const refusal = streamingRefusal(sourceMajor, masked);
  if (refusal) {
    out.push(warn('tables.data_rules_stream', 'source', `sync will refuse: ${refusal.message}`, refusal.hint ?? ''));
  } else {
    const random = masked.flatMap((t) => t.masking!.masks.filter((m) => !isDeterministic(m.rule)).map((m) => `${displayName(t.schema, t.name)}.${m.column}`));
    const msg = 'sync leaves masked columns out of the publication (their raw values stay on the source) and computes them on the target' +
      (random.length ? `; random rules and statements (${random.join(', ')}) are computed when a row is inserted and kept on update, and verify does not compare them` : '');
    out.push(ok('tables.data_rules_stream', 'source', msg));
  }
  return out;
}
