/** `pgferry status`: one look at replication health (or a refreshing view with --watch), exit code for scripts. */
import type { Argv } from 'yargs';
import { parseMaxLag } from '../../config/precedence.js';
import { InterruptedError, UsageError } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import { formatBytes, formatLag } from '../../units.js';
import type { MaxLagLimits, StatusReport, TimestampStatusReport } from '../../pipeline/status/index.js';
import { DEFAULT_MAX_LAG, TIMESTAMP_DEFAULT_MAX_LAG_SECONDS } from '../../pipeline/status/defaults.js';
import type { CommandContext } from '../context.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { explicitScope, withDatabaseScopeOptions, type ScopeArgs } from '../scope-options.js';

interface StatusArgs extends ScopeArgs {
  method?: 'logical' | 'timestamp';
  maxLag?: string[];
  watch?: number;
}

const HEALTH_STYLE = { healthy: 'green', lagging: 'yellow', broken: 'red' } as const;

/** The report as lines (the verdict first). */
export function statusLines(out: Output, r: StatusReport): string[] {
  const lines: string[] = [];
  lines.push(out.style(HEALTH_STYLE[r.health], r.verdict));
  lines.push('');
  for (const d of r.databases) {
    lines.push(out.style('bold', `${d.sourceDatabase} → ${d.targetDatabase}: ${d.health} · ${formatLag(d.lag)}`));
    lines.push(`  source  publication ${d.publication.name}: ${d.publication.exists ? `${d.publication.tables} tables` : 'missing'}`);
    for (const m of d.publication.masked) lines.push(`          masked ${displayName(m.schema, m.name)}: ${m.columns.join(', ')} (computed on the target)`);
    lines.push(
      `          slot ${d.slot.name}: ${d.slot.exists ? `${d.slot.active ? 'active' : 'inactive'}, wal_status ${d.slot.walStatus ?? '-'}, retains ${formatBytes(d.slot.retainedBytes)}, confirmed ${d.slot.confirmedFlushLsn ?? '-'}` : 'missing'} (source at ${d.sourceLsn})`,
    );
    const s = d.subscription;
    if (d.client) {
      const c = d.client;
      lines.push(`  target  client applier (sync --applier client): ${c.running ? `running (pid ${c.pid})` : 'not running'}, applied ${c.appliedLsn ?? '-'}, no subscription`);
    } else {
    lines.push(
      `  target  subscription ${s.name}: ${s.exists ? `${s.enabled ? 'enabled' : 'DISABLED'}, worker ${s.workerRunning ? `running (pid ${s.workerPid})` : 'not running'}, received ${s.receivedLsn ?? '-'}, applied ${s.appliedLsn ?? '-'}` : 'missing'}`,
    );
    }
    if (s.applyErrors !== null || s.syncErrors !== null) lines.push(`          errors: ${s.applyErrors ?? 0} apply, ${s.syncErrors ?? 0} table sync`);
    if (d.tables.total) {
      const pending = d.tables.list.filter((t) => t.state !== 'r');
      lines.push(`  tables  ${d.tables.replicating} of ${d.tables.total} replicating${pending.length ? `; ${pending.slice(0, 10).map((t) => `${displayName(t.schema, t.name)} ${t.stateName}`).join(', ')}${pending.length > 10 ? ', …' : ''}` : ''}`);
    }
    for (const p of d.problems) {
      const sym = p.level === 'warning' ? out.symbol('warn') : out.symbol('fail');
      lines.push(`  ${sym} ${p.message}`);
      if (p.fix) lines.push(`      ${out.style('cyan', 'fix:')} ${p.fix}`);
    }
    lines.push('');
  }
  lines.push(out.style('dim', `checked ${r.checkedAt} in ${r.seconds.toFixed(2)} s`));
  return lines;
}

/** --method timestamp: per table the age of its mark and the last round's counts. */
export function timestampStatusLines(out: Output, r: TimestampStatusReport): string[] {
  const lines: string[] = [out.style(HEALTH_STYLE[r.health], r.verdict), ''];
  for (const d of r.databases) {
    const round = d.lastRound ? `last round ${d.lastRound.round} finished ${d.lastRound.finishedAt}: ${d.lastRound.upserted} upserted, ${d.lastRound.detectDeletes ? `${d.lastRound.deleted} deleted` : 'deletes not tracked'}` : 'no round yet';
    lines.push(out.style('bold', `${d.sourceDatabase} → ${d.targetDatabase}: ${d.health} · ${round}`));
    for (const t of d.tables) {
      lines.push(`  ${displayName(t.schema, t.name)}: mark ${t.ageSeconds.toFixed(1)} s old · ${t.mode}${t.timestampColumn ? ` by ${t.timestampColumn}` : ''} · last round ${t.upserted} upserted, ${t.deleted} deleted`);
    }
    for (const p of d.problems) lines.push(`  ${out.symbol(d.health === 'broken' ? 'fail' : 'warn')} ${p}`);
    lines.push('');
  }
  lines.push(out.style('dim', `checked ${r.checkedAt} in ${r.seconds.toFixed(2)} s`));
  return lines;
}

function limits(argv: StatusArgs): MaxLagLimits {
  if (!argv.maxLag?.length) return DEFAULT_MAX_LAG;
  const m = parseMaxLag(argv.maxLag);
  return { bytes: m.bytes ?? null, seconds: m.seconds ?? null };
}

export const statusCommand = defineCommand<StatusArgs>({
  command: 'status',
  describe: 'Replication health and lag, one screen: exit 0 in sync, 1 lagging, 2 broken, 3 cannot connect',
  builder: (y: Argv<GlobalArgs>) =>
    withDatabaseScopeOptions(y)
      .option('method', {
        choices: ['logical', 'timestamp'] as const,
        describe: `timestamp: the marks of sync --method timestamp in the target (default: as init ran, else logical); --max-lag then takes seconds (default ${TIMESTAMP_DEFAULT_MAX_LAG_SECONDS}s)`,
      })
      .option('max-lag', {
        type: 'string', array: true,
        describe: `Largest lag that still counts as in sync: a size and/or a time, e.g. 16MB,30s (default ${DEFAULT_MAX_LAG.bytes! / 1024 / 1024}MB,${DEFAULT_MAX_LAG.seconds}s)`,
      })
      .option('watch', { type: 'number', describe: 'Refresh every SECONDS until Ctrl-C (redraws in place on a terminal)' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['watch -n 5 pgferry status', 'from the folder with init\'s state (.pgferry)'],
    ['pgferry status --max-lag 1MB,5s --json', 'for scripts: the exit code says healthy (0), lagging (1) or broken (2)'],
    ['pgferry status --watch 2', 'refresh in place every 2 seconds'],
  ],
  epilog:
    'Lag in bytes is the source\'s WAL position minus what the subscription confirmed; lag in seconds is the walsender\'s replay lag ' +
    '(none while idle and caught up: that is 0 s). Without a state directory, give --source and --target: pgferry finds its objects by name.',
  async run(ctx: CommandContext, argv) {
    // Loaded here, not at start-up: every command's definition is read on every run.
    const { runStatus, runTimestampStatus, stateMethod } = await import('../../pipeline/status/index.js');
    const maxLag = limits(argv);
    const scope = await explicitScope(argv, ctx.config);
    if (argv.watch !== undefined && !(argv.watch > 0)) throw new UsageError(`--watch takes a number of seconds above 0 (got ${argv.watch})`);
    // One poll: the report (for --json) and its lines, by method; --watch repeats it.
    const once: () => Promise<{ r: StatusReport | TimestampStatusReport; lines: () => string[] }> =
      (argv.method ?? (await stateMethod(ctx.stateDir))) === 'timestamp'
        ? async () => {
          const seconds = argv.maxLag?.length ? parseMaxLag(argv.maxLag).seconds : undefined;
          const r = await runTimestampStatus({ source: ctx.conn('source'), target: ctx.conn('target'), stateDir: ctx.stateDir, scope, maxLagSeconds: seconds });
          return { r, lines: () => timestampStatusLines(ctx.out, r) };
        }
        : async () => {
          const r = await runStatus({ source: ctx.conn('source'), target: ctx.conn('target'), stateDir: ctx.stateDir, scope, maxLag });
          return { r, lines: () => statusLines(ctx.out, r) };
        };
    if (argv.watch === undefined) {
      const { r, lines } = await once();
      if (ctx.out.json) ctx.out.emitJson(r);
      else for (const l of lines()) ctx.out.print(l);
      return r.exitCode;
    }
    const inPlace = ctx.out.tty && !ctx.out.json;
    let last = 0;
    let drawn = 0;
    while (!ctx.signal.aborted) {
      const { r, lines: linesOf } = await once();
      last = r.exitCode;
      if (ctx.out.json) {
        ctx.out.stdout.write(JSON.stringify(r) + '\n');
      } else {
        const lines = linesOf();
        // Cursor movement only on a terminal; elsewhere each refresh is appended.
        if (inPlace && drawn) ctx.out.stdout.write(`\x1b[${drawn}F\x1b[J`);
        for (const l of lines) ctx.out.print(l);
        drawn = lines.length;
        if (!inPlace) ctx.out.print('');
      }
      await new Promise((res) => {
        const t = setTimeout(res, argv.watch! * 1000);
        ctx.signal.addEventListener('abort', () => { clearTimeout(t); res(undefined); }, { once: true });
      });
    }
    if (ctx.signal.aborted) throw new InterruptedError();
    return last;
  },
});
