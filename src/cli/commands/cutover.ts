/** `pgferry cutover`: flags → runCutover (or abortCutover) → the plan, the timeline and the verdict, or one JSON document. */
import type { Argv } from 'yargs';
import { ExitCode, UsageError } from '../../errors.js';
import type { CutoverPlan, CutoverReport, GateMode } from '../../pipeline/cutover/index.js';
import { GATE_MODES } from '../../pipeline/shared/gate.js';
import { confirm } from '../confirm.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { createProgress } from '../render/tasks.js';
import { explicitScope, withDatabaseScopeOptions, type ScopeArgs } from '../scope-options.js';
import { renderVerify } from './verify.js';
import type { GateResult } from '../../pipeline/verify/index.js';
import { TIMESTAMP_DEFAULTS } from '../../pipeline/sync/timestamp/defaults.js';

const GROUP = 'Cutover:';

interface CutoverArgs extends ScopeArgs {
  verify: string;
  maxWait: number;
  reverse: boolean;
  refreshMaterializedViews: boolean;
  abort: boolean;
  dryRun: boolean;
  jobs: number;
  timestampColumn?: string;
}

function renderPlan(out: Output, plan: CutoverPlan): void {
  for (const d of plan.databases) {
    out.print(out.style('bold', `Database ${d.sourceDatabase} → ${d.targetDatabase}${plan.resuming ? ' (continuing an interrupted cutover)' : ''}`));
    out.print(`  fence     write trigger on ${d.tables.length} tables: ${d.tables.slice(0, 6).join(', ')}${d.tables.length > 6 ? ', …' : ''}`);
    out.print(`            CONNECT revoked from ${d.revokeConnect.map((r) => r ?? 'PUBLIC').join(', ') || 'nobody'}; kept for ${d.keepConnect.join(', ')}`);
    out.print(`            ${d.sessions.length} sessions to end${d.sessions.length ? ': ' + d.sessions.slice(0, 8).map((s) => `${s.user ?? '?'} pid ${s.pid}${s.inTransaction ? ' (in a transaction)' : ''}`).join(', ') : ''}${d.sessions.length > 8 ? ', …' : ''}`);
    out.print(`  then      ${THEN[plan.method](d)}, sequences, gate (--verify ${plan.verify}), ${HAND_OVER[plan.method](d)}${plan.reverse ? ', reverse replication' : ''}`);
  }
  if (plan.stopsApplier !== null) out.print(`The client applier running as pid ${plan.stopsApplier} is stopped first (SIGTERM); cutover applies up to the fence itself.`);
}

type PlanDb = CutoverPlan['databases'][number];
const THEN: Record<CutoverPlan['method'], (d: PlanDb) => string> = {
  native: (d) => `wait for the fence LSN on slot ${d.slot}`,
  client: (d) => `apply slot ${d.slot} up to the fence LSN (client applier)`,
  timestamp: () => 'a final timestamp round with delete detection',
};
const HAND_OVER: Record<CutoverPlan['method'], (d: PlanDb) => string> = {
  native: (d) => `drop subscription ${d.subscription} and its slot`,
  client: (d) => `drop slot ${d.slot} and the replication origin`,
  timestamp: () => 'hand over (round state kept until cleanup)',
};

/** After an unfence: where the target's updates come from now. */
function afterUnfence(method: CutoverPlan['method']): string {
  return method === 'client' ? 'start pgferry sync --applier client again' : method === 'timestamp' ? 'rounds of pgferry sync --method timestamp can continue' : 'replication keeps running';
}

function render(out: Output, r: CutoverReport): void {
  if (r.outcome === 'dry-run') {
    out.print('Dry run: nothing was changed. The cutover would do:');
    renderPlan(out, r.plan);
    return;
  }
  if (r.outcome === 'already-handed-over') {
    out.print('This migration was already handed over: the target is the primary. Next: pgferry cleanup');
    return;
  }
  // The gate's result is verify's runGate's (handed in below).
  const gate = r.gate as GateResult | null;
  if (gate?.verify && !gate.ok) renderVerify(gate.verify, out);
  for (const c of gate?.countDifferences ?? []) out.print(`  ${out.symbol('fail')} ${c.table}: ${c.source} rows on the source, ${c.target} on the target`);
  out.print(`phases: ${r.phases.map((p) => `${p.name} ${p.ms} ms`).join(' · ')}`);
  for (const d of r.databases) {
    out.print(
      `${d.sourceDatabase} → ${d.targetDatabase}: fence LSN ${d.fenceLsn ?? '-'}, applied ${d.appliedLsn ?? '-'}, ${d.tablesFenced} tables fenced, ` +
        `${d.sessionsEnded} sessions ended (${d.sessionsInTransaction} in a transaction), ${d.sequencesMoved} sequences moved` +
        (d.finalRound ? `, final round ${d.finalRound.round}: ${d.finalRound.upserted} upserted, ${d.finalRound.deleted} deleted` : '') +
        (d.largeObjects.copied || d.largeObjects.removed ? `, large objects: ${d.largeObjects.copied} copied, ${d.largeObjects.removed} removed` : '') +
        (d.reverse ? `, reverse: subscription ${d.reverse.subscription} on the old source` : ''),
    );
  }
  if (r.outcome === 'handed-over') {
    out.print(
      `${out.symbol('ok')} handed over: writes unavailable for ${r.writeUnavailableMs} ms${r.gateMs !== null ? ` (gate ${r.gateMs} ms)` : ''}; the source stays fenced`,
    );
    out.print(
      r.method === 'timestamp'
        ? 'Next: point the application at the target; pgferry cleanup drops the round state (schema pgferry)'
        : 'Next: point the application at the target; pgferry cleanup drops the publication (and the reverse replication is yours to keep until then)',
    );
  } else if (r.outcome === 'gate-failed') {
    out.print(`${out.symbol('fail')} the gate found differences: nothing was handed over, the source was unfenced; ${afterUnfence(r.method)}`);
  } else if (r.outcome === 'catch-up-timeout') {
    out.print(`${out.symbol('fail')} the target did not apply the fence LSN within --max-wait: the source was unfenced; ${afterUnfence(r.method)}`);
  }
}

export const cutoverCommand = defineCommand<CutoverArgs>({
  command: 'cutover',
  describe: 'Fence the source, wait for the target to apply everything, set sequences, verify, hand over (optionally replicate back)',
  builder: (y: Argv<GlobalArgs>) =>
    withDatabaseScopeOptions(y)
      .option('verify', {
        type: 'string',
        group: GROUP,
        choices: GATE_MODES as unknown as string[],
        default: 'quick',
        describe: 'Gate before the hand-over: quick (hashes of the tables changed since init, row counts of the rest), full (every table), none',
      })
      .option('max-wait', { type: 'number', group: GROUP, default: 60, describe: 'Seconds to wait for the target to apply the fence LSN; then unfence and exit 1' })
      .option('reverse', { type: 'boolean', group: GROUP, default: false, describe: 'After the hand-over, replicate writes on the target back to the old source (a ready fallback until cleanup)' })
      .option('refresh-materialized-views', {
        type: 'boolean', group: GROUP, default: false,
        describe: 'Refresh the target\'s materialized views before the fence (replication carries no REFRESH; they hold what init computed)',
      })
      .option('abort', { type: 'boolean', group: GROUP, default: false, describe: 'Undo an interrupted cutover: lift the fence (only before the hand-over began)' })
      .option('dry-run', { type: 'boolean', group: GROUP, default: false, describe: 'Show what would be fenced (tables, roles, sessions); change nothing' })
      .option('jobs', { alias: 'j', type: 'number', group: GROUP, default: 2, describe: 'Sessions per side for the gate comparison' })
      .option('timestamp-column', {
        type: 'string', group: GROUP,
        describe: `After init --method timestamp: the column the final round reads by, as for sync (default ${TIMESTAMP_DEFAULTS.column}; per table: [databases.NAME.timestamp_columns] in the file)`,
      }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry cutover --dry-run', 'what would be fenced, which sessions would end'],
    ['pgferry cutover --yes --json > cutover.json', 'in a runbook; exit 0 means handed over'],
    ['pgferry cutover --abort', 'after an interrupted run: lift the fence'],
  ],
  epilog:
    'The source is fenced for every role but pgferry\'s (CONNECT revoked, sessions ended, write triggers on every published table), ' +
    'the target must apply the source\'s WAL position read after the fence, sequences move forward, the gate compares, then the subscription and its slot are dropped. ' +
    'A failure before the hand-over lifts the fence again. ' +
    'With the client applier (sync --applier client) a running applier is stopped first and cutover applies up to the fence LSN itself, then drops the slot and the replication origin. ' +
    'After init --method timestamp a final round with delete detection replaces the wait, and nothing is dropped (cleanup removes the round state). ' +
    '--reverse needs the native subscription.\n' +
    'Exit codes: 0 handed over · 1 the gate found differences or the target did not catch up (source unfenced) · 2 bad flags, replication not healthy, or refused · ' +
    '3 a side cannot be reached · 4 failed part-way (the message says whether to rerun or --abort)',
  async run(ctx, argv) {
    const { abortCutover, runCutover } = await import('../../pipeline/cutover/index.js');
    const mode = argv.verify as GateMode;
    if (!(GATE_MODES as readonly string[]).includes(mode)) throw new UsageError(`--verify must be one of ${GATE_MODES.join(', ')}`);
    if (!(Number(argv.maxWait) >= 0)) throw new UsageError(`--max-wait must be a number of seconds ≥ 0 (got ${argv.maxWait})`);
    if (!Number.isInteger(Number(argv.jobs)) || Number(argv.jobs) < 1) throw new UsageError(`--jobs must be a whole number ≥ 1 (got ${argv.jobs})`);
    if (argv.abort && (argv.dryRun || argv.reverse)) throw new UsageError('--abort takes neither --dry-run nor --reverse');
    const scope = await explicitScope(argv, ctx.config);
    const progress = createProgress(ctx);
    if (argv.abort) {
      let r: Awaited<ReturnType<typeof abortCutover>>;
      try {
        r = await abortCutover({ source: ctx.conn('source'), target: ctx.conn('target'), stateDir: ctx.stateDir, scope, progress });
      } finally {
        progress.done();
      }
      if (ctx.out.json) ctx.out.emitJson(r);
      else ctx.out.print(r.message);
      return ExitCode.ok;
    }
    let report: CutoverReport;
    try {
      const [{ runGate }, { clientCatchUp }, { finalTimestampRound }] = await Promise.all([
        import('../../pipeline/verify/index.js'), import('../../pipeline/sync/index.js'), import('../../pipeline/sync/timestamp/index.js'),
      ]);
      report = await runCutover({
        source: ctx.conn('source'),
        target: ctx.conn('target'),
        stateDir: ctx.stateDir,
        scope,
        verify: mode,
        gate: runGate,
        maxWaitMs: Number(argv.maxWait) * 1000,
        clientCatchUp,
        finalRound: finalTimestampRound({ fallback: argv.timestampColumn ?? TIMESTAMP_DEFAULTS.column, perTable: ctx.config?.timestampColumns ?? {} }),
        timestampOnlyOptions: argv.timestampColumn === undefined ? [] : ['--timestamp-column'],
        reverse: argv.reverse,
        refreshMaterializedViews: argv.refreshMaterializedViews,
        dryRun: argv.dryRun,
        jobs: Number(argv.jobs),
        signal: ctx.signal,
        progress,
        confirm: async (plan) => {
          if (ctx.argv.yes) return true;
          if (ctx.interactive) renderPlan(ctx.out, plan);
          return confirm(ctx, 'Fence the source and hand the database over to the target?', '--yes');
        },
      });
    } finally {
      progress.done();
    }
    if (ctx.out.json) ctx.out.emitJson(report);
    else render(ctx.out, report);
    return report.exitCode;
  },
});
