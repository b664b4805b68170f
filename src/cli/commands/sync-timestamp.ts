/** `pgferry sync --method timestamp`: its flags, flags → runTimestampSync, and the round's report (or one JSON document). */
import type { Argv } from 'yargs';
import { parseMaxLag } from '../../config/precedence.js';
import { ExitCode, UsageError } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import type { TimestampSyncReport } from '../../pipeline/sync/timestamp/index.js';
import { TIMESTAMP_DEFAULTS } from '../../pipeline/sync/timestamp/defaults.js';
import type { ScopeSpec } from '../../config/scope.js';
import type { CommandContext } from '../context.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { createProgress } from '../render/tasks.js';

const GROUP = 'Timestamp method:';

export interface TimestampArgs {
  method: 'logical' | 'timestamp';
  timestampColumn: string;
  once: boolean;
  interval?: string;
  batchSize: number;
  detectDeletes: boolean;
  overlap: string;
}

export function withTimestampOptions(y: Argv<GlobalArgs>): Argv<GlobalArgs> {
  return y
    .option('method', {
      choices: ['logical', 'timestamp'] as const, default: 'logical', group: GROUP,
      describe: 'logical: native logical replication. timestamp: rounds that upsert the rows changed since the last round (no slot, no REPLICATION, wal_level = replica is enough)',
    })
    .option('timestamp-column', {
      type: 'string', default: TIMESTAMP_DEFAULTS.column, group: GROUP,
      describe: 'Column that says when a row last changed (a timestamptz maintained by a trigger with now()); per table: [databases.NAME.timestamp_columns] in the file',
    })
    .option('once', { type: 'boolean', default: false, group: GROUP, describe: 'One round, then exit (the default without --interval)' })
    .option('interval', { type: 'string', group: GROUP, describe: 'Run a round every so often (e.g. 30s, 5min) until interrupted' })
    .option('batch-size', { type: 'number', default: TIMESTAMP_DEFAULTS.batchSize, group: GROUP, describe: 'Rows per upsert batch and per compared chunk' })
    .option('detect-deletes', {
      type: 'boolean', default: false, group: GROUP,
      describe: 'Also compare keys chunk by chunk and delete rows the source no longer has (otherwise deletes are not tracked)',
    })
    .option('overlap', {
      type: 'string', default: `${TIMESTAMP_DEFAULTS.overlapSeconds}s`, group: GROUP,
      describe: 'Read this much further back than the safe bound: raise it when the application sets timestamps itself or clocks differ (a standby source is read by transaction ID instead)',
    }) as unknown as Argv<GlobalArgs>;
}

export const TIMESTAMP_EPILOG =
  ' With --method timestamp each round reads, in one snapshot, the rows whose timestamp column is at or after the table\'s mark and upserts ' +
  'them in key order. The mark is the older of the clock and the start of the oldest transaction still open when the round began ' +
  '(minus --overlap), so a transaction that started before a round and commits after it is read by the next one. This assumes the ' +
  'column holds the writing transaction\'s start time (a trigger with now()) on the source\'s clock; timestamps set by the application ' +
  'need a larger --overlap. The source role needs pg_read_all_stats (or superuser) to see other sessions\' transactions; the target ' +
  'role must be able to SET session_replication_role. Tables without the column are compared chunk by chunk each round. State lives ' +
  'in the target database (schema pgferry).';

function seconds(text: string, what: string): number {
  const s = parseMaxLag(text, what).seconds;
  if (s === undefined) throw new UsageError(`${what}: "${text}" is not a time`, { hint: 'write e.g. 30s, 5min, 1h' });
  return s;
}

function render(out: Output, r: TimestampSyncReport): void {
  for (const d of r.databases) {
    out.print(out.style('bold', `Database ${d.sourceDatabase} → ${d.targetDatabase} · round ${d.round}`));
    for (const t of d.tables) {
      const how = t.mode === 'timestamp' ? `by ${t.column}${t.from ? ` from ${t.from}` : ' (every row: no mark yet)'}` : `compared chunk by chunk (${t.reason})`;
      out.print(`  ${displayName(t.schema, t.name)}: ${t.upserted} upserted${d.deletesTracked || t.mode === 'compared' ? `, ${t.deleted} deleted` : ''} · ${how}`);
    }
    if (d.sequencesMoved) out.print(`  ${d.sequencesMoved} sequence${d.sequencesMoved === 1 ? '' : 's'} moved forward to the source's value`);
    out.print(`  next round reads from ${d.nextMark}${d.oldestOpenTransaction ? ` (oldest open transaction started ${d.oldestOpenTransaction})` : ''}`);
    out.print();
  }
  for (const n of r.notes) out.print(`${out.symbol('warn')} ${n}`);
  out.print(`${out.symbol('ok')} ${r.rounds} round${r.rounds === 1 ? '' : 's'} in ${r.seconds.toFixed(1)}s`);
}

export async function runTimestampCommand(
  ctx: CommandContext, argv: TimestampArgs, scope: ScopeSpec | undefined, perTable: Record<string, Record<string, string>>,
): Promise<number> {
  if (argv.once && argv.interval) throw new UsageError('--once and --interval exclude each other');
  const intervalSeconds = argv.interval ? seconds(argv.interval, '--interval') : 0;
  if (argv.interval && !(intervalSeconds > 0)) throw new UsageError('--interval must be longer than zero');
  const progress = createProgress(ctx);
  let report: TimestampSyncReport;
  try {
    const { runTimestampSync } = await import('../../pipeline/sync/timestamp/index.js');
    report = await runTimestampSync({
      source: ctx.conn('source'),
      target: ctx.conn('target'),
      scope,
      stateDir: ctx.stateDir,
      columns: { fallback: argv.timestampColumn, perTable },
      batchSize: argv.batchSize,
      detectDeletes: argv.detectDeletes,
      overlapSeconds: seconds(argv.overlap, '--overlap'),
      intervalSeconds,
      signal: ctx.signal,
      progress,
    });
  } finally {
    progress.done();
  }
  if (ctx.out.json) ctx.out.emitJson(report);
  else render(ctx.out, report);
  return ExitCode.ok;
}
