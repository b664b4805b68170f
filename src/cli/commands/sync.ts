/** `pgferry sync`: flags → runSync → what was set up and how each table reaches the stream, or one JSON document. */
import type { Argv } from 'yargs';
import { APPLIERS, parseApplier, parseMaxLag, parseSize, type Applier } from '../../config/precedence.js';
import { InterruptedError, UsageError } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import { loadState } from '../../state/checkpoint.js';
import type { ClientSyncReport, SyncReport } from '../../pipeline/sync/index.js';
import { DEFAULT_MAX_LAG } from '../../pipeline/status/defaults.js';
import type { CommandContext } from '../context.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import { createProgress } from '../render/tasks.js';
import { resolveRunScope, wizardRunOptions } from '../run-options.js';
import { explicitScope, withTableScopeOptions, type ScopeArgs } from '../scope-options.js';
import { runTimestampCommand, TIMESTAMP_EPILOG, withTimestampOptions, type TimestampArgs } from './sync-timestamp.js';

const SYNC_GROUP = 'Sync:';

interface SyncArgs extends ScopeArgs, TimestampArgs {
  copyData: boolean;
  setReplicaIdentityFull: boolean;
  subscriptionConninfo?: string;
  force: boolean;
  wait: boolean;
  waitTimeout: number;
  maxLag?: string[];
  applier?: string;
  untilCaughtUp: boolean;
  batchBytes?: string;
}

const ROUTE_TEXT = {
  snapshot: 'streams from init\'s snapshot',
  kept: 'already subscribed',
  resync: 'copied again by PostgreSQL (init copied it after a resume)',
  copy: 'copied by PostgreSQL (--copy-data)',
} as const;

function render(out: Output, r: SyncReport): void {
  for (const d of r.databases) {
    out.print(out.style('bold', `Database ${d.sourceDatabase} → ${d.targetDatabase}`));
    out.print(`  publication  ${d.publication.name} (${d.publication.change}) on the source`);
    out.print(`  subscription ${d.subscription.name} (${d.subscription.action}) on the target, slot ${d.slot.name}${d.slot.createdBySubscription ? ' (new)' : ''}`);
    if (d.subscription.binary !== null) out.print(`               binary = ${d.subscription.binary}, streaming = ${d.subscription.streaming ?? 'off'}`);
    if (d.replicaIdentityFull.length) out.print(`  REPLICA IDENTITY FULL set on ${d.replicaIdentityFull.join(', ')}`);
    if (d.emptied !== 'none') out.print(`  emptied on the target before PostgreSQL copies them again (${d.emptied.toUpperCase()})`);
    for (const t of d.tables) out.print(`  ${displayName(t.schema, t.name)}: ${ROUTE_TEXT[t.route]}${t.filter ? ` · WHERE ${t.filter}` : ''}`);
    out.print();
  }
  if (r.final) out.print(`${out.symbol('ok')} in sync · ${r.final.lag}`);
  else out.print('Replication runs in the background (--no-wait): watch it with pgferry status');
}

function renderClient(out: Output, r: ClientSyncReport): void {
  for (const d of r.databases) {
    out.print(out.style('bold', `Database ${d.sourceDatabase} → ${d.targetDatabase} (client applier)`));
    out.print(`  slot ${d.slot} on the source, publication ${d.publication}; replication origin ${d.origin} on the target`);
    out.print(`  ${d.changes} changes of ${d.transactions} transactions applied in ${d.batches} batches; applied up to ${d.appliedLsn}`);
    if (d.missingRows) out.print(`  ${d.missingRows} updates or deletes found no row on the target (skipped, as the native worker does)`);
    out.print();
  }
  if (r.outcome === 'caught-up') out.print(`${out.symbol('ok')} caught up: the target has everything the source had when sync started`);
  else out.print('Stopped: the position is saved on the target; run sync --applier client again to continue');
}

export const syncCommand = defineCommand<SyncArgs>({
  command: 'sync',
  describe: 'Replicate from exactly where init\'s snapshot ended: a native subscription (waits until in sync), or pgferry applying the stream itself (--applier client); --method timestamp: incremental rounds instead',
  builder: (y: Argv<GlobalArgs>) =>
    withTimestampOptions(withTableScopeOptions(y))
      .option('copy-data', {
        type: 'boolean', default: false, group: SYNC_GROUP,
        describe: 'Let PostgreSQL\'s table synchronisation copy the tables init did not copy (all of them without init). The tables must exist on the target and be empty',
      })
      .option('set-replica-identity-full', {
        type: 'boolean', default: false, group: SYNC_GROUP,
        describe: 'ALTER TABLE … REPLICA IDENTITY FULL on published tables without a key (otherwise they are refused)',
      })
      .option('subscription-conninfo', {
        type: 'string', group: SYNC_GROUP,
        describe: 'Connection string the TARGET server uses to reach the source, e.g. without a password for a .pgpass on that server (default: --source, password included)',
      })
      .option('force', { type: 'boolean', default: false, group: SYNC_GROUP, describe: 'Recreate the subscription (slot and applied position are kept)' })
      .option('wait', { type: 'boolean', default: true, group: SYNC_GROUP, describe: '--no-wait returns once the subscription exists' })
      .option('wait-timeout', { type: 'number', default: 0, group: SYNC_GROUP, describe: 'Give up waiting after this many seconds (0: never); replication goes on' })
      .option('applier', {
        type: 'string', choices: APPLIERS, group: SYNC_GROUP,
        describe: 'Who applies the stream: native (a subscription on the target, the default) or client (pgferry streams and applies itself, in the foreground; the target never connects to the source). Also PGFERRY_APPLIER or applier in the file',
      })
      .option('until-caught-up', {
        type: 'boolean', default: false, group: SYNC_GROUP,
        describe: 'With --applier client: exit 0 once the target has applied everything the source had when sync started (otherwise run until Ctrl-C / SIGTERM)',
      })
      .option('batch-bytes', {
        type: 'string', group: SYNC_GROUP,
        describe: 'With --applier client: memory budget for buffered changes per database (default 4MB); beyond it they go into the open target transaction, so a transaction of any size is applied in pieces and committed whole',
      })
      .option('max-lag', {
        type: 'string', array: true, group: SYNC_GROUP,
        describe: `Lag that counts as in sync: a size and/or a time (default ${DEFAULT_MAX_LAG.bytes! / 1024 / 1024}MB,${DEFAULT_MAX_LAG.seconds}s)`,
      }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry sync --source "$SRC" --target "$DST"', 'after init: subscribe on init\'s slot and wait until in sync'],
    ['pgferry sync --source "$SRC" --target "$DST" --subscription-conninfo "host=old-db user=replicator"', 'keep the password out of the target\'s catalog'],
    ['pgferry sync --source "$SRC" --target "$DST" --applier client --until-caught-up', 'pgferry applies the stream itself (no subscription, no connection from the target to the source)'],
    ['pgferry sync --source "$SRC" --target "$DST" --copy-data --include-tables "public.*"', 'without init: PostgreSQL copies the tables (schema must exist on the target)'],
    ['pgferry sync --method timestamp --interval 30s --detect-deletes', 'after init --method timestamp: a round every 30 seconds, deletes included'],
  ],
  epilog:
    'sync continues from the slot init created: every change committed after init\'s snapshot reaches the target exactly once. ' +
    'Tables init copied after an interrupted run are emptied on the target and copied again by PostgreSQL\'s own table synchronisation, ' +
    'which hands each one over to the stream at an exact position. Without init, --copy-data lets PostgreSQL copy every table; the ' +
    'schema must exist on the target first (pg_dump --schema-only … | psql). Running sync again is safe.' + TIMESTAMP_EPILOG,
  async run(ctx: CommandContext, argv) {
    // Without scope flags sync follows init's recorded scope; the interactive mode only when asked for (--interactive).
    const scope = argv.interactive === true ? await resolveRunScope(ctx, argv, 'sync') : await explicitScope(argv, ctx.config);
    if (argv.method === 'timestamp' && argv.applier !== undefined && argv.applier !== 'native') {
      throw new UsageError('--applier client streams a replication slot; --method timestamp has none', { hint: 'leave out --applier with --method timestamp' });
    }
    if (argv.method === 'timestamp') return runTimestampCommand(ctx, argv, scope, ctx.config?.timestampColumns ?? {});
    if ((await loadState(ctx.stateDir))?.options.method === 'timestamp') {
      throw new UsageError('init ran with --method timestamp: there is no replication slot to stream from', { hint: 'continue with pgferry sync --method timestamp (--once, or --interval 30s)' });
    }
    if (!(argv.waitTimeout >= 0)) throw new UsageError(`--wait-timeout must be 0 or more seconds (got ${argv.waitTimeout})`);
    const lag = argv.maxLag?.length ? parseMaxLag(argv.maxLag) : undefined;
    const applier: Applier = argv.applier === undefined ? 'native' : parseApplier(argv.applier, '--applier');
    if (applier === 'client') return runClient(ctx, argv, scope);
    if (argv.untilCaughtUp || argv.batchBytes !== undefined) throw new UsageError('--until-caught-up and --batch-bytes go with --applier client', { hint: 'add --applier client, or leave them out' });
    const progress = createProgress(ctx);
    let report: SyncReport;
    try {
      const { runSync } = await import('../../pipeline/sync/index.js');
      report = await runSync({
        source: ctx.conn('source'),
        target: ctx.conn('target'),
        scope,
        stateDir: ctx.stateDir,
        copyData: argv.copyData,
        setReplicaIdentityFull: argv.setReplicaIdentityFull || !!wizardRunOptions(ctx).setReplicaIdentityFull,
        subscriptionConninfo: argv.subscriptionConninfo,
        force: argv.force,
        wait: argv.wait,
        waitTimeoutSeconds: argv.waitTimeout,
        maxLag: lag ? { bytes: lag.bytes ?? null, seconds: lag.seconds ?? null } : undefined,
        signal: ctx.signal,
        progress,
      });
    } finally {
      progress.done();
    }
    if (ctx.out.json) ctx.out.emitJson(report);
    else render(ctx.out, report);
    return 0;
  },
});

async function runClient(ctx: CommandContext, argv: SyncArgs, scope: Awaited<ReturnType<typeof explicitScope>>): Promise<number> {
  if (argv.copyData || argv.subscriptionConninfo !== undefined || argv.force) {
    throw new UsageError('--copy-data, --subscription-conninfo and --force go with the native applier', { hint: 'leave them out with --applier client' });
  }
  const batchBytes = argv.batchBytes !== undefined ? parseSize(argv.batchBytes, '--batch-bytes') : undefined;
  if (batchBytes !== undefined && batchBytes < 1024) throw new UsageError(`--batch-bytes must be at least 1kB (got ${argv.batchBytes})`);
  const progress = createProgress(ctx);
  let report: ClientSyncReport;
  try {
    const { runClientSync } = await import('../../pipeline/sync/index.js');
    report = await runClientSync({
      source: ctx.conn('source'),
      target: ctx.conn('target'),
      scope,
      stateDir: ctx.stateDir,
      setReplicaIdentityFull: argv.setReplicaIdentityFull || !!wizardRunOptions(ctx).setReplicaIdentityFull,
      untilCaughtUp: argv.untilCaughtUp,
      batchBytes,
      signal: ctx.signal,
      progress,
    });
  } finally {
    progress.done();
  }
  if (ctx.out.json) ctx.out.emitJson(report);
  else renderClient(ctx.out, report);
  // Stopped by a signal: the position is saved; the exit code says how it ended (130 / 143).
  if (report.outcome === 'stopped') throw new InterruptedError('interrupted: the client applier stopped cleanly, its position is saved on the target');
  return 0;
}
