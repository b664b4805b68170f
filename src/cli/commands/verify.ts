/** pgferry verify: flags (+ the checkpoint's filters) → verify() → per-table ✓/✗ and a summary, or one JSON document. */
import type { Argv } from 'yargs';
import { splitList } from '../../config/names.js';
import { ExitCode, UsageError } from '../../errors.js';
import type { RowDiff, TableReport, verifyAndRepair, VerifyOptions, VerifyReport } from '../../pipeline/verify/index.js';
import { VERIFY_DEFAULTS } from '../../pipeline/verify/defaults.js';
import { formatDuration, plural } from '../../units.js';
import { confirm } from '../confirm.js';
import { defineCommand } from '../define.js';
import type { CommandContext } from '../context.js';
import { jobsOption, type GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { renderRepair, renderRepairPlan, repairExitCode } from '../render/repair.js';
import { createProgress, type ProgressRenderer } from '../render/tasks.js';
import { scopeSpecFromArgs, withTableScopeOptions, type ScopeArgs } from '../scope-options.js';

interface VerifyArgs extends ScopeArgs {
  jobs: number;
  chunkRows: number;
  maxDiffs: number;
  recheck: number;
  lagTimeout: number;
  tables?: string[];
  sequences: boolean;
  repair: boolean;
  dryRun: boolean;
  maxRepairRows?: number;
}

const GROUP = 'Verify:';

const KIND_TEXT: Record<RowDiff['kind'], string> = {
  missing: 'missing on target',
  extra: 'extra on target  ',
  different: 'different        ',
};

function formatKey(key: Record<string, string>): string {
  const parts = Object.entries(key).map(([k, v]) => `${/^[a-z_][a-z0-9_$]*$/.test(k) ? k : JSON.stringify(k)}=${v}`);
  return parts.length === 1 ? parts[0]! : `(${parts.join(', ')})`;
}

function tableLine(t: TableReport, out: Output, width: number): string {
  const symbol = out.symbol(t.status === 'equal' ? 'ok' : 'fail');
  const name = t.display.padEnd(width);
  if (t.method === 'schema-only') return `  ${symbol} ${name}  schema only`;
  const rows = t.rowsSource === t.rowsTarget ? plural(t.rowsSource, 'row') : `${plural(t.rowsSource, 'row')} on source, ${t.rowsTarget} on target`;
  const chunks = t.method === 'whole-table' ? 'whole table (no key)' : plural(t.chunks, 'chunk');
  return `  ${symbol} ${name}  ${rows}, ${chunks}, ${formatDuration(t.durationMs)}`;
}

export function renderVerify(report: VerifyReport, out: Output): void {
  for (const db of report.databases) {
    const rep = db.replication.active
      ? ` (replicating: ${db.replication.subscriptions.filter((s) => s.enabled).map((s) => (s.applier === 'client' ? `client applier ${s.name}` : s.name)).join(', ')})`
      : '';
    out.print(out.style('bold', `Database ${db.source} → ${db.target}${rep}`));
    const width = Math.min(48, Math.max(0, ...db.tables.map((t) => t.display.length)));
    for (const t of db.tables) {
      out.print(tableLine(t, out, width));
      if (t.error) out.print(`      ${out.style('red', 'error:')} ${t.error}`);
      for (const d of t.schemaDifferences) out.print(`      ${d.kind} ${d.object}: ${d.message}`);
      for (const d of t.diffs) out.print(`      ${KIND_TEXT[d.kind]}  ${formatKey(d.key)}`);
      const c = t.diffCounts;
      const located = c.missing + c.extra + c.different;
      if (t.diffsTruncated) {
        out.print(out.style('dim', `      … ${located} located (${c.missing} missing, ${c.extra} extra, ${c.different} different), more not listed (--max-diffs)`));
      }
      if (t.status === 'different' && t.method === 'whole-table' && t.chunksDifferent) {
        out.print('      rows differ (a table without a key cannot show which)');
      }
      for (const n of t.notes) out.print(out.style('dim', `      note: ${n}`));
    }
    for (const name of db.tablesOnlyOnTarget) out.print(`  ${out.symbol('fail')} ${name.padEnd(width)}  exists only on the target`);
    for (const s of db.sequences.filter((x) => x.status !== 'ok')) {
      const what = s.status === 'missing' ? 'missing on the target' : `target at ${s.targetValue ?? 'unused'}, source at ${s.sourceValue}`;
      out.print(`  ${out.symbol('fail')} sequence ${s.name}: ${what}`);
    }
    out.print();
  }
  const s = report.summary;
  const verdict =
    report.status === 'equal'
      ? out.style('green', 'EQUAL')
      : report.status === 'different'
        ? out.style('red', 'DIFFERENT')
        : out.style('red', 'NOT VERIFIED (errors)');
  out.print(
    `${verdict}: ${plural(s.tables, 'table')} (${s.tablesEqual} equal, ${s.tablesDifferent} different${s.tablesFailed ? `, ${s.tablesFailed} failed` : ''}), ` +
      `${plural(s.rowsCompared, 'row')} in ${plural(s.chunksCompared, 'chunk')}, ${plural(s.rowDifferences, 'row difference')}, ` +
      `${plural(s.schemaDifferences, 'schema difference')}, ${plural(s.sequencesBehind, 'sequence')} behind, ` +
      `${s.tablesOnlyOnTarget ? `${plural(s.tablesOnlyOnTarget, 'table')} only on the target, ` : ''}${formatDuration(report.durationMs)}`,
  );
}

export function exitCodeFor(report: VerifyReport): number {
  if (report.status === 'equal') return ExitCode.ok;
  if (report.status === 'different') return ExitCode.problems;
  return ExitCode.failed;
}

export const verifyCommand = defineCommand<VerifyArgs>({
  command: 'verify',
  describe: 'Compare target with source: rows by chunked checksums (locating each differing key), schema and sequences',
  builder: (y: Argv<GlobalArgs>) =>
    withTableScopeOptions(y)
      .option('tables', {
        type: 'string',
        array: true,
        group: GROUP,
        describe: 'Check only these tables of the scope (patterns as in --include-tables)',
      })
      .option('jobs', jobsOption(VERIFY_DEFAULTS.jobs, GROUP, 'Chunks compared at once (sessions per side)'))
      .option('chunk-rows', { type: 'number', group: GROUP, default: VERIFY_DEFAULTS.chunkRows, describe: 'Rows per chunk of the first pass' })
      .option('max-diffs', { type: 'number', group: GROUP, default: VERIFY_DEFAULTS.maxDiffs, describe: 'List at most this many differing keys per table' })
      .option('recheck', {
        type: 'number',
        group: GROUP,
        default: VERIFY_DEFAULTS.recheck,
        describe: 'While replication is active: compare a differing row this many times (after the target replayed past the source position) before reporting it',
      })
      .option('lag-timeout', {
        type: 'number',
        group: GROUP,
        default: VERIFY_DEFAULTS.lagTimeoutMs / 1000,
        describe: 'Seconds to wait for the target to replay past a source position',
      })
      .option('sequences', { type: 'boolean', group: GROUP, default: true, describe: 'Check sequence values (--no-sequences skips them until `pgferry sequences` has run at cutover)' })
      .option('repair', {
        type: 'boolean',
        group: GROUP,
        default: false,
        describe: 'Write the differing rows on the target (insert missing, update changed, delete extra), then verify again; asks first unless --yes',
      })
      .option('dry-run', { type: 'boolean', group: GROUP, default: false, describe: 'With --repair: list the rows that would change, write nothing' })
      .option('max-repair-rows', {
        type: 'number',
        group: GROUP,
        describe: 'With --repair: refuse (exit 1, nothing written) when more rows than this differ; re-copy such tables instead',
      }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry verify --source postgresql://app@old/shop --target postgresql://admin@new/shop', 'compare one database'],
    ['pgferry verify --tables "public.order*" --jobs 4 --json | jq .summary', 'a subset, as JSON'],
    ['pgferry verify --no-interactive && ./switch-traffic.sh', 'gate a cutover on the exit code'],
    ['pgferry verify --repair --dry-run', 'list the rows a repair would write'],
  ],
  epilog:
    'Filters and time-filter cutoffs are read from the state that init left in --state-dir, so the same rows are compared.\n' +
    'Exit codes: 0 everything equal · 1 differences found · 2 bad flags, or source and target are the same database · 3 a side cannot be reached · 4 a comparison failed\n' +
    'With --repair: 0 everything equal after the repair · 1 differences remain (also after --dry-run, or when --max-repair-rows refuses) · 4 a table could not be repaired',
  async run(ctx, argv) {
    if (!argv.repair && (argv.dryRun || argv.maxRepairRows !== undefined)) {
      throw new UsageError(`${argv.dryRun ? '--dry-run' : '--max-repair-rows'} applies to a repair only`, { hint: 'add --repair' });
    }
    if (argv.repair && !argv.dryRun && !argv.yes && !ctx.interactive) {
      throw new UsageError('verify --repair writes on the target: this needs a confirmation, and there is no terminal to ask', {
        hint: 'add --yes to confirm, or --dry-run to list the changes without writing',
      });
    }
    const { loadStoredInputs, verify } = await import('../../pipeline/verify/index.js');
    const stored = await loadStoredInputs(ctx.stateDir);
    if (stored) ctx.out.debug(`filters and cutoffs from ${stored.stateFile}`);
    const scope = await scopeSpecFromArgs(argv, stored?.scope, ctx.config);
    const options: Omit<VerifyOptions, 'progress'> = {
        source: ctx.conn('source'),
        target: ctx.conn('target'),
        scope,
        tables: splitList(argv.tables),
        filters: stored?.filters,
        cutoffs: stored?.cutoffs,
        targetDatabases: stored?.targetDatabases,
        stateIdentity: stored && {
          sourceSystemIdentifier: stored.sourceSystemIdentifier,
          targetSystemIdentifier: stored.targetSystemIdentifier,
          stateFile: stored.stateFile,
        },
        jobs: Number(argv.jobs),
        chunkRows: Number(argv.chunkRows),
        maxDiffs: Number(argv.maxDiffs),
        recheck: Number(argv.recheck),
        lagTimeoutMs: Number(argv.lagTimeout) * 1000,
        sequences: argv.sequences !== false,
        signal: ctx.signal,
    };
    if (argv.repair) return runRepair(ctx, argv, options);
    const progress = createProgress(ctx);
    let report: Awaited<ReturnType<typeof verify>>;
    try {
      report = await verify({ ...options, progress });
    } finally {
      progress.done();
    }
    const code = exitCodeFor(report);
    if (ctx.out.json) ctx.out.emitJson({ command: 'verify', ok: code === ExitCode.ok, exitCode: code, ...report });
    else renderVerify(report, ctx.out);
    return code;
  },
});

/** verify --repair: the plan is shown and confirmed (or --yes) before anything is written. */
async function runRepair(ctx: CommandContext, argv: GlobalArgs & VerifyArgs, options: Omit<VerifyOptions, 'progress'>): Promise<number> {
  // Created on the first event, and again after the question (a task tree and a prompt cannot share the terminal).
  let renderer: ProgressRenderer | undefined;
  const pause = () => {
    renderer?.done();
    renderer = undefined;
  };
  let result: Awaited<ReturnType<typeof verifyAndRepair>>;
  try {
    const { verifyAndRepair } = await import('../../pipeline/verify/index.js');
    result = await verifyAndRepair(
      { ...options, progress: (e) => (renderer ??= createProgress(ctx))(e) },
      {
        dryRun: argv.dryRun,
        maxRepairRows: argv.maxRepairRows ?? null,
        confirm: async (plan) => {
          if (argv.yes) return true;
          pause();
          ctx.out.print('Repair plan:');
          renderRepairPlan(plan, ctx.out);
          return confirm(ctx, `Write these ${plural(plan.rowsPlanned, 'row')} on the target?`, '--yes');
        },
      },
    );
  } finally {
    pause();
  }
  const code = repairExitCode(result, exitCodeFor);
  if (ctx.out.json) ctx.out.emitJson({ command: 'verify', ok: code === ExitCode.ok, exitCode: code, ...result.report, repair: result.repair });
  else {
    renderRepair(result.repair, ctx.out);
    renderVerify(result.report, ctx.out);
  }
  return code;
}
