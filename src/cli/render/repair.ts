/** Human text for `verify --repair`: the plan (dry run, confirmation) and what was written. */
import { ExitCode } from '../../errors.js';
import type { RepairChange, RepairReport, RepairResult, VerifyReport } from '../../pipeline/verify/index.js';
import { plural } from '../../units.js';
import type { Output } from './output.js';

const KIND_TEXT: Record<RepairChange['kind'], string> = { insert: 'insert', update: 'update', delete: 'delete' };

function formatKey(key: Record<string, string>): string {
  const parts = Object.entries(key).map(([k, v]) => `${/^[a-z_][a-z0-9_$]*$/.test(k) ? k : JSON.stringify(k)}=${v}`);
  return parts.length === 1 ? parts[0]! : `(${parts.join(', ')})`;
}

/** The changes per table, as planned. */
export function renderRepairPlan(r: RepairReport, out: Output): void {
  const tables = r.tables.filter((t) => t.planned.insert + t.planned.update + t.planned.delete > 0 || t.error);
  const width = Math.min(48, Math.max(0, ...tables.map((t) => t.display.length)));
  for (const t of tables) {
    const p = t.planned;
    out.print(`  ${t.database}: ${t.display.padEnd(width)}  ${p.insert} to insert, ${p.update} to update, ${p.delete} to delete${t.method === 'multiset' ? ' (no key: whole rows)' : ''}`);
    for (const c of t.changes) out.print(`      ${KIND_TEXT[c.kind]}  ${c.key ? formatKey(c.key) : `${plural(c.count, 'copy', 'copies')} of a row`}`);
    if (t.changesTruncated) out.print(out.style('dim', '      … more not listed (--max-diffs)'));
    if (t.error) out.print(`      ${out.style('red', 'error:')} ${t.error}`);
  }
  out.print(`${plural(r.rowsPlanned, 'row')} to change in ${plural(tables.length, 'table')}`);
}

/** What the repair did, printed before the report of the verify pass that followed. */
export function renderRepair(r: RepairReport, out: Output): void {
  switch (r.status) {
    case 'nothing-to-repair':
      out.print('Repair: no row differences to repair');
      out.print();
      return;
    case 'dry-run':
      out.print(out.style('bold', 'Repair (dry run, nothing written):'));
      renderRepairPlan(r, out);
      out.print();
      return;
    case 'refused':
    case 'declined':
      out.print(out.style('bold', 'Repair:'));
      renderRepairPlan(r, out);
      out.print(`${out.symbol('fail')} ${r.message}`);
      out.print();
      return;
    default:
      break;
  }
  out.print(out.style('bold', 'Repair:'));
  for (const db of r.databases) {
    const notes: string[] = [];
    if (db.replicationActive) notes.push('checked against the running subscription');
    if (db.sessionReplicationRole === 'origin') notes.push('triggers and foreign keys fired (the target user may not set session_replication_role = replica)');
    out.print(`  database ${db.source} → ${db.target}: ${plural(db.transactions, 'transaction')}${notes.length ? `; ${notes.join('; ')}` : ''}`);
  }
  const width = Math.min(48, Math.max(0, ...r.tables.map((t) => t.display.length)));
  for (const t of r.tables) {
    const status = t.error ? 'fail' : t.skipped ? 'warn' : 'ok';
    out.print(
      `  ${out.symbol(status)} ${t.display.padEnd(width)}  ${t.inserted} inserted, ${t.updated} updated, ${t.deleted} deleted` +
        `${t.skipped ? `, ${t.skipped} not written (changed meanwhile)` : ''}`,
    );
    if (t.error) out.print(`      ${out.style('red', 'error:')} ${t.error}`);
    for (const n of t.notes) out.print(out.style('dim', `      note: ${n}`));
  }
  out.print(`Repaired ${plural(r.rowsInserted + r.rowsUpdated + r.rowsDeleted, 'row')}; verified again:`);
  out.print();
}

/**
 * 0: everything verifies equal after the repair; 1: differences remain (also
 * after a dry run, a refusal or a declined confirmation); 4: a table could
 * not be compared or repaired.
 */
export function repairExitCode(result: RepairResult, verifyCode: (r: VerifyReport) => number): number {
  const code = verifyCode(result.report);
  if (result.repair.tables.some((t) => t.error) && code !== ExitCode.ok) return ExitCode.failed;
  return code;
}
