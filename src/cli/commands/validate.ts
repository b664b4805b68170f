/** pgferry validate: flags → runValidate → a report grouped by side, or one JSON document. */
import type { Argv } from 'yargs';
import { UsageError } from '../../errors.js';
import { describeConn } from '../../postgres/conninfo.js';
import type { CheckResult, ValidateReport } from '../../pipeline/validate/index.js';
import { DEFAULT_MAX_TRANSACTION_AGE_SECONDS } from '../../pipeline/validate/long-transactions.js';
import { defineCommand } from '../define.js';
import type { CommandContext } from '../context.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { plainProgress } from '../render/progress.js';
import { resolveRunScope } from '../run-options.js';
import { withTableScopeOptions, type ScopeArgs } from '../scope-options.js';

interface ValidateArgs extends ScopeArgs {
  maxTransactionAge: number;
  method: 'logical' | 'timestamp';
  timestampColumn: string;
}

/** Details shown per check in the human report; --json lists all. */
const MAX_DETAILS = 10;

interface Group {
  title: string;
  checks: CheckResult[];
}

function groupChecks(report: ValidateReport, ctx: CommandContext): Group[] {
  // The connection as given (the identity may come from a maintenance database).
  const endpoint = (side: 'source' | 'target') => describeConn(ctx.conn(side));
  const perDatabase = (c: CheckResult) => c.database !== undefined;
  const groups: Group[] = [
    { title: `Source ${endpoint('source')}`, checks: report.checks.filter((c) => c.side === 'source' && !perDatabase(c)) },
    { title: `Target ${endpoint('target')}`, checks: report.checks.filter((c) => c.side === 'target' && !perDatabase(c)) },
    { title: 'Client tools', checks: report.checks.filter((c) => c.side === 'tools') },
    { title: 'Source and target', checks: report.checks.filter((c) => c.side === 'pair' && !perDatabase(c)) },
  ];
  for (const db of report.databases) {
    const own = report.checks.filter((c) => c.database === db.name);
    const where = db.targetExists === null ? '' : db.targetExists ? ' (exists)' : ' (does not exist yet)';
    groups.push({ title: `Database ${db.name} → target database ${db.target}${where}`, checks: own.filter((c) => !c.id.startsWith('tables.')) });
    groups.push({ title: `Tables in ${db.name}`, checks: own.filter((c) => c.id.startsWith('tables.')) });
  }
  return groups.filter((g) => g.checks.length);
}

export function renderReport(report: ValidateReport, ctx: CommandContext, out: Output): void {
  for (const g of groupChecks(report, ctx)) {
    out.print(out.style('bold', g.title));
    for (const c of g.checks) {
      out.print(`  ${out.symbol(c.status)} ${c.message}`);
      if (c.status !== 'ok' && c.details?.length) {
        for (const d of c.details.slice(0, MAX_DETAILS)) out.print(`      ${d}`);
        if (c.details.length > MAX_DETAILS) out.print(out.style('dim', `      … and ${c.details.length - MAX_DETAILS} more (--json lists all)`));
      }
      if (c.fix && c.status !== 'ok') out.print(`    ${out.style('cyan', 'fix:')} ${c.fix}`);
    }
    out.print();
  }
  const s = report.summary;
  out.print(`${s.ok} ok, ${s.warn} warnings, ${s.fail} failures`);
}

export function validateJson(report: ValidateReport): Record<string, unknown> {
  return {
    command: 'validate',
    ok: report.ok,
    exitCode: report.exitCode,
    source: report.source,
    target: report.target,
    databases: report.databases,
    checks: report.checks,
    summary: report.summary,
  };
}

export const validateCommand = defineCommand<ValidateArgs>({
  command: 'validate',
  describe: 'Check both servers, the client tools and every table in scope; change nothing',
  builder: (y: Argv<GlobalArgs>) =>
    withTableScopeOptions(y).option('max-transaction-age', {
      type: 'number',
      default: DEFAULT_MAX_TRANSACTION_AGE_SECONDS,
      describe: 'Report source transactions open longer than this many seconds (they make creating a replication slot wait)',
    })
      .option('method', {
        choices: ['logical', 'timestamp'] as const, default: 'logical',
        describe: 'timestamp: check what sync --method timestamp needs (keys, timestamp columns and triggers, pg_read_all_stats) instead of logical replication',
      })
      .option('timestamp-column', { type: 'string', default: 'updated_at', describe: 'With --method timestamp: the column that says when a row last changed' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry validate --source postgresql://app@old/shop --target postgresql://admin@new/shop', 'check one database'],
    ['pgferry validate --all-databases --exclude-databases scratch --json | jq .summary', 'every database, as JSON'],
  ],
  epilog:
    'Exit codes: 0 nothing failed (warnings allowed) · 1 a check failed · 2 source and target are the same database, or bad flags · 3 a side cannot be reached',
  async run(ctx, argv) {
    const age = Number(argv.maxTransactionAge);
    if (!Number.isFinite(age) || age < 0) {
      throw new UsageError(`--max-transaction-age: "${String(argv.maxTransactionAge)}" is not a number of seconds`);
    }
    const source = ctx.conn('source');
    const target = ctx.conn('target');
    const scope = await resolveRunScope(ctx, argv, 'validate');
    const { runValidate } = await import('../../pipeline/validate/index.js');
    const report = await runValidate({
      source,
      target,
      scope,
      pgBinDir: ctx.pgBinDir,
      maxTransactionAgeSeconds: age,
      method: argv.method,
      timestampColumn: argv.timestampColumn,
      signal: ctx.signal,
      progress: ctx.out.verbose ? plainProgress(ctx.out) : undefined,
    });
    if (ctx.out.json) ctx.out.emitJson(validateJson(report));
    else renderReport(report, ctx, ctx.out);
    return report.exitCode;
  },
});
