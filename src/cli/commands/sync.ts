/** `pgferry sync`: flags → runSync → what was set up and how each table reaches the stream, or one JSON document. */
import type { Argv } from 'yargs';
import { parseMaxLag } from '../../config/precedence.js';
import { UsageError } from '../../errors.js';
import { displayName } from '../../postgres/identifiers.js';
import { runSync, type SyncReport } from '../../pipeline/sync/index.js';
import { DEFAULT_MAX_LAG } from '../../pipeline/status/index.js';
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

export const syncCommand = defineCommand<SyncArgs>({
  command: 'sync',
  describe: 'Start native logical replication exactly where init\'s snapshot ended, and wait until it is in sync (--method timestamp: incremental rounds instead)',
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
      .option('max-lag', {
        type: 'string', array: true, group: SYNC_GROUP,
        describe: `Lag that counts as in sync: a size and/or a time (default ${DEFAULT_MAX_LAG.bytes! / 1024 / 1024}MB,${DEFAULT_MAX_LAG.seconds}s)`,
      }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry sync --source "$SRC" --target "$DST"', 'after init: subscribe on init\'s slot and wait until in sync'],
    ['pgferry sync --source "$SRC" --target "$DST" --subscription-conninfo "host=old-db user=replicator"', 'keep the password out of the target\'s catalog'],
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
    if (argv.method === 'timestamp') return runTimestampCommand(ctx, argv, scope, ctx.config?.timestampColumns ?? {});
    if (!(argv.waitTimeout >= 0)) throw new UsageError(`--wait-timeout must be 0 or more seconds (got ${argv.waitTimeout})`);
    const lag = argv.maxLag?.length ? parseMaxLag(argv.maxLag) : undefined;
    const progress = createProgress(ctx);
    let report: SyncReport;
    try {
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
