/** pgferry verify: flags (+ the checkpoint's filters) → verify() → per-table ✓/✗ and a summary, or one JSON document. */
import type { Argv } from 'yargs';
import { splitList } from '../../config/names.js';
import { ExitCode } from '../../errors.js';
import { loadStoredInputs, verify, VERIFY_DEFAULTS, type RowDiff, type TableReport, type VerifyReport } from '../../pipeline/verify/index.js';
import { formatDuration, plural } from '../../units.js';
import { defineCommand } from '../define.js';
import { jobsOption, type GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { createProgress } from '../render/tasks.js';
import { scopeSpecFromArgs, withTableScopeOptions, type ScopeArgs } from '../scope-options.js';

interface VerifyArgs extends ScopeArgs {
  jobs: number;
  chunkRows: number;
  maxDiffs: number;
  recheck: number;
  lagTimeout: number;
  tables?: string[];
  sequences: boolean;
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
      ? ` (replicating: ${db.replication.subscriptions.filter((s) => s.enabled).map((s) => s.name).join(', ')})`
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
      .option('sequences', { type: 'boolean', group: GROUP, default: true, describe: 'Check sequence values (--no-sequences skips them until `pgferry sequences` has run at cutover)' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry verify --source postgresql://app@old/shop --target postgresql://admin@new/shop', 'compare one database'],
    ['pgferry verify --tables "public.order*" --jobs 4 --json | jq .summary', 'a subset, as JSON'],
    ['pgferry verify --no-interactive && ./switch-traffic.sh', 'gate a cutover on the exit code'],
  ],
  epilog:
    'Filters and time-filter cutoffs are read from the state that init left in --state-dir, so the same rows are compared.\n' +
    'Exit codes: 0 everything equal · 1 differences found · 2 bad flags, or source and target are the same database · 3 a side cannot be reached · 4 a comparison failed',
  async run(ctx, argv) {
    const stored = await loadStoredInputs(ctx.stateDir);
    if (stored) ctx.out.debug(`filters and cutoffs from ${stored.stateFile}`);
    const scope = await scopeSpecFromArgs(argv, stored?.scope, ctx.config);
    const progress = createProgress(ctx);
    let report: Awaited<ReturnType<typeof verify>>;
    try {
      report = await verify({
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
        progress,
      });
    } finally {
      progress.done();
    }
    const code = exitCodeFor(report);
    if (ctx.out.json) ctx.out.emitJson({ command: 'verify', ok: code === ExitCode.ok, exitCode: code, ...report });
    else renderVerify(report, ctx.out);
    return code;
  },
});
