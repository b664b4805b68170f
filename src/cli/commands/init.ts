/** `pgferry init`: flags → runInit → a summary (or the plan with --dry-run), or one JSON document. */
import type { Argv } from 'yargs';
import { ExitCode, UsageError } from '../../errors.js';
import { parseSize } from '../../config/precedence.js';
import { formatBytes, formatDuration } from '../../units.js';
import type { InitPlan } from '../../pipeline/init/plan.js';
import type { InitReport } from '../../pipeline/init/run.js';
import { displayName } from '../../postgres/identifiers.js';
import { confirm } from '../confirm.js';
import type { CommandContext } from '../context.js';
import { defineCommand } from '../define.js';
import { jobsOption, type GlobalArgs } from '../options.js';
import type { Output } from '../render/output.js';
import type { ProgressSink } from '../../pipeline/shared/progress.js';
import { createProgress, type ProgressRenderer } from '../render/tasks.js';
import { confirmedByWizard, resolveRunScope, wizardRunOptions } from '../run-options.js';
import { withTableScopeOptions, type ScopeArgs } from '../scope-options.js';

interface InitArgs extends ScopeArgs {
  jobs: number;
  sync: boolean;
  method: 'logical' | 'timestamp';
  owner: boolean;
  privileges: boolean;
  keepTablespaces: boolean;
  roles: boolean;
  fkNotValid: boolean;
  setReplicaIdentityFull: boolean;
  dropExisting: boolean;
  restart: boolean;
  dryRun: boolean;
  splitTablesLargerThan: string;
  maxParts: number;
}

const INIT_GROUP = 'Init:';


/** The plan; `refusals` (the pipeline's, set for --dry-run) are summed up at the end. */
function printPlan(out: Output, plan: InitPlan, dropExisting: boolean, refusals: string[] | null, method: 'logical' | 'timestamp' = 'logical'): void {
  const dryRun = refusals !== null;
  out.print(out.style('bold', dryRun ? 'Plan (dry run: nothing is written)' : 'Plan'));
  for (const d of plan.databases) {
    const target =
      d.targetStatus === 'missing' ? 'will be created'
      : d.targetStatus === 'empty' ? 'exists, empty: used as is'
      : d.targetStatus === 'prepared' ? 'prepared by the earlier run'
      : dropExisting ? `not empty (${d.targetContents}): dropped and re-created (--drop-existing)`
      : `not empty (${d.targetContents}): refused without --drop-existing`;
    out.print();
    out.print(`Database ${d.source} → ${d.target} (${target})`);
    out.print(`  snapshot: ${d.slot ? `replication slot ${d.slot} with an exported snapshot` : `pg_export_snapshot() without a slot (${method === 'timestamp' ? '--method timestamp' : '--no-sync'})`}`);
    if (d.resume) out.print(`  resumes an earlier run in phase ${d.resume.phase}, ${d.resume.tablesDone} tables already copied`);
    const copied = d.tables.filter((t) => !t.schemaOnly);
    out.print(`  copy order (largest first, ${plan.jobs} job${plan.jobs > 1 ? 's' : ''}):`);
    for (const t of copied) {
      const bits = [formatBytes(t.estimatedBytes), `~${t.estimatedRows} rows`, `${t.parts} part${t.parts === 1 ? '' : 's'}`];
      if (t.format) bits.push(t.format);
      if (t.filter) bits.push(`WHERE ${t.filter}`);
      if (t.done) bits.push('already copied');
      out.print(`    ${displayName(t.schema, t.name)}  ${bits.join(' · ')}`);
    }
    const so = d.tables.filter((t) => t.schemaOnly);
    if (so.length) out.print(`  structure only: ${so.map((t) => displayName(t.schema, t.name)).join(', ')}`);
    if (d.excluded.length) out.print(`  excluded: ${d.excluded.join(', ')}`);
    for (const p of d.foreignKeyProblems) out.print(`  ${out.symbol(p.blocking ? 'fail' : 'warn')} ${p.message}${p.blocking ? '' : ' (created NOT VALID)'}`);
    for (const p of d.replicationProblems) out.print(`  ${out.symbol('fail')} ${p}`);
  }
  out.print();
  out.print(`Estimated: ${formatBytes(plan.estimatedBytes)} of rows, ${estimateText(plan)}`);
  if (refusals?.length) {
    out.print();
    out.print(`${out.symbol('fail')} init would stop: ${refusals.length} problem${refusals.length > 1 ? 's' : ''} above`);
  }
}

function estimateText(plan: InitPlan): string {
  const b = plan.estimateBasis;
  const time = formatDuration(plan.estimatedSeconds * 1000);
  if (b.kind === 'nominal') return `roughly ${time} with ${plan.jobs} jobs (a nominal rate; indexes come on top)`;
  return `at least ${time} with ${plan.jobs} jobs: the source read ${b.table} at ${formatBytes(Math.round(b.bytesPerSecondPerJob))}/s per stream in a sample; `
    + 'the target\'s writes and the indexes come on top, and the copy shows the rate it measures';
}

function printReport(out: Output, r: InitReport): void {
  const tables = r.databases.flatMap((d) => d.tables);
  const copied = tables.filter((t) => !t.schemaOnly);
  const rows = copied.reduce((n, t) => n + t.rows, 0);
  const bytes = copied.reduce((n, t) => n + t.bytes, 0);
  out.print(
    `${out.symbol('ok')} init ${r.resumed ? 'resumed and ' : ''}done in ${formatDuration(r.seconds * 1000)}: ${r.databases.length} database${r.databases.length === 1 ? '' : 's'}, ` +
      `${copied.length} tables, ${rows} rows, ${formatBytes(bytes)}`,
  );
  for (const d of r.databases) {
    out.print();
    out.print(`Database ${d.source} → ${d.target}`);
    out.print(d.slot ? `  replication slot ${d.slot.name}, consistent point ${d.slot.consistentLsn}` : `  no replication slot (${r.method === 'timestamp' ? '--method timestamp: continue with pgferry sync --method timestamp' : '--no-sync'})`);
    const late = d.tables.filter((t) => !t.schemaOnly && !t.consistentWithSlot);
    if (late.length) {
      out.print(
        `  ${late.length} table${late.length > 1 ? 's were' : ' was'} copied after a resume, under a later snapshot: ` +
          `${late.map((t) => displayName(t.schema, t.name)).join(', ')}${d.slot ? ' (sync re-synchronises them)' : ''}`,
      );
    }
    if (d.notValidForeignKeys.length) {
      out.print(`  foreign keys created NOT VALID: ${d.notValidForeignKeys.map((k) => `${k.name} on ${displayName(k.schema, k.table)} (${k.reason})`).join(', ')}`);
    }
    const phases = Object.entries(d.runPhaseSeconds).map(([k, v]) => `${k} ${formatDuration(v * 1000)}`).join(' · ');
    if (phases) out.print(`  this run: ${phases}`);
    if (d.largeObjects) out.print(`  large objects: ${d.largeObjects}`);
  }
  if (r.databases.some((d) => d.slot)) {
    out.print();
    out.print('Next: pgferry sync (the slot retains WAL on the source until sync consumes it; pgferry cleanup removes it)');
  }
}

function jsonDoc(r: InitReport, ok: boolean, exitCode: number): Record<string, unknown> {
  return {
    command: 'init',
    ok,
    exitCode,
    dryRun: r.dryRun,
    resumed: r.resumed,
    stateDir: r.stateDir,
    source: r.source,
    target: r.target,
    seconds: round(r.seconds),
    phases: Object.fromEntries(Object.entries(r.phaseSeconds).map(([k, v]) => [k, round(v)])),
    roles: r.roles && { created: r.roles.created, existing: r.roles.existing, skipped: r.roles.skipped },
    databases: r.databases.map((d) => ({
      source: d.source,
      target: d.target,
      slot: d.slot,
      snapshotsUsed: d.snapshotsUsed,
      phase: d.phase,
      phases: Object.fromEntries(Object.entries(d.runPhaseSeconds).map(([k, v]) => [k, round(v)])),
      tables: d.tables.map((t) => ({ ...t, seconds: round(t.seconds) })),
      largeObjects: d.largeObjects,
      sequences: d.sequences,
      notValidForeignKeys: d.notValidForeignKeys,
    })),
    plan: r.plan,
    warnings: r.warnings,
  };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

export const initCommand = defineCommand<InitArgs>({
  command: 'init',
  describe: 'Copy schema and data to the target under one consistent snapshot (resumable)',
  builder: (y: Argv<GlobalArgs>) =>
    withTableScopeOptions(y)
      .option('jobs', jobsOption(4, INIT_GROUP, 'Parallel COPY streams (and pg_restore jobs for indexes)'))
      .option('sync', {
        type: 'boolean',
        default: true,
        group: INIT_GROUP,
        describe: '--no-sync: a one-off copy from pg_export_snapshot(), without a replication slot (nothing retained on the source)',
      })
      .option('method', {
        choices: ['logical', 'timestamp'] as const, default: 'logical', group: INIT_GROUP,
        describe: 'timestamp: for sync --method timestamp; no slot, no publication, no REPLICATION right (wal_level = replica is enough); records where each table\'s incremental sync starts in the target (schema pgferry)',
      })
      .option('owner', { type: 'boolean', default: true, group: INIT_GROUP, describe: '--no-owner: objects on the target are owned by the connecting user' })
      .option('privileges', { type: 'boolean', default: true, group: INIT_GROUP, describe: '--no-privileges: leave out GRANTs' })
      .option('keep-tablespaces', {
        type: 'boolean', default: false, group: INIT_GROUP,
        describe: 'create each table, index and materialized view in the tablespace it uses on the source (each must exist on the target); without it, all go to the target database\'s default tablespace',
      })
      .option('roles', {
        type: 'boolean',
        default: true,
        group: INIT_GROUP,
        describe: '--no-roles: do not copy roles (pg_dumpall --roles-only --no-role-passwords)',
      })
      .option('fk-not-valid', {
        type: 'boolean',
        default: false,
        group: INIT_GROUP,
        describe: 'Create foreign keys that the filters leave violated as NOT VALID instead of stopping',
      })
      .option('set-replica-identity-full', {
        type: 'boolean',
        default: false,
        group: INIT_GROUP,
        describe: 'Give tables without a primary key REPLICA IDENTITY FULL on the source, so that UPDATE/DELETE keep working once published',
      })
      .option('drop-existing', {
        type: 'boolean',
        default: false,
        group: INIT_GROUP,
        describe: 'Drop and re-create target databases that exist and are not empty (asks first; --yes skips the question)',
      })
      .option('restart', {
        type: 'boolean',
        default: false,
        group: INIT_GROUP,
        describe: 'Discard the state of an earlier run (and drop its replication slot) and start over',
      })
      .option('dry-run', { type: 'boolean', default: false, group: INIT_GROUP, describe: 'Print the plan and estimates; write nothing' })
      .option('split-tables-larger-than', {
        type: 'string',
        default: '1GB',
        group: INIT_GROUP,
        describe: 'Copy tables larger than this in parts, in parallel (CTID or integer-key ranges)',
      })
      .option('max-parts', { type: 'number', default: 16, group: INIT_GROUP, describe: 'At most this many parts per table' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry init --source postgres://… --target postgres://…', 'copy the database named in --source'],
    ['pgferry init --dry-run --exclude-tables "audit.*"', 'show the plan without writing anything'],
    ['pgferry init --no-sync --jobs 8 --yes', 'a one-off copy, no replication slot'],
  ],
  epilog:
    'init is resumable: after an interruption (Ctrl-C, a crash, kill -9) run the same command again. Tables finished under the ' +
    "slot's snapshot are kept; the rest are copied again. --restart starts over. State lives in --state-dir (default ./.pgferry).",
  async run(ctx: CommandContext, argv) {
    const out = ctx.out;
    if (!Number.isInteger(argv.maxParts) || argv.maxParts < 1) throw new UsageError(`--max-parts must be a whole number of at least 1 (got ${argv.maxParts})`);
    const splitThresholdBytes = parseSize(argv.splitTablesLargerThan, '--split-tables-larger-than');
    const source = ctx.conn('source');
    const target = ctx.conn('target');
    const scope = await resolveRunScope(ctx, argv, 'init');
    const askBeforeCopy = ctx.interactive && !argv.dryRun && !confirmedByWizard(ctx);
    // Created on the first event, and again after the question before copying (a task tree and a prompt cannot share the terminal).
    let renderer: ProgressRenderer | undefined;
    const progress: ProgressSink = (e) => (renderer ??= createProgress(ctx))(e);
    const pauseProgress = () => {
      renderer?.done();
      renderer = undefined;
    };
    let report: InitReport;
    try {
      const { runInit } = await import('../../pipeline/init/run.js');
      report = await runInit({
        source,
        target,
        scope,
        stateDir: ctx.stateDir,
        pgBinDir: ctx.pgBinDir,
        jobs: argv.jobs,
        noSync: !argv.sync || !!wizardRunOptions(ctx).noSync || argv.method === 'timestamp',
        method: argv.method,
        noOwner: !argv.owner,
        noPrivileges: !argv.privileges,
        keepTablespaces: argv.keepTablespaces,
        noRoles: !argv.roles,
        fkNotValid: argv.fkNotValid,
        setReplicaIdentityFull: argv.setReplicaIdentityFull || !!wizardRunOptions(ctx).setReplicaIdentityFull,
        dropExisting: argv.dropExisting,
        restart: argv.restart,
        dryRun: argv.dryRun,
        splitThresholdBytes,
        maxParts: argv.maxParts,
        signal: ctx.signal,
        progress,
        confirm: {
          ...(askBeforeCopy
            ? {
                startCopy: async (plan: InitPlan) => {
                  pauseProgress();
                  printPlan(out, plan, argv.dropExisting, null, argv.method === 'timestamp' ? 'timestamp' : 'logical');
                  return confirm(ctx, `Copy ${formatBytes(plan.estimatedBytes)} to the target now?`);
                },
              }
            : {}),
          dropDatabase: (db, contents) => (pauseProgress(), confirm(ctx, `Drop the target database "${db}" (${contents}) and re-create it?`, '--yes (with --drop-existing)')),
          dropSlots: (slots) => (pauseProgress(), confirm(ctx, `Drop replication slot${slots.length > 1 ? 's' : ''} ${slots.join(', ')} of the earlier run and start over?`, '--yes (with --restart)')),
        },
      });
    } finally {
      pauseProgress();
    }
    if (report.dryRun && report.plan) {
      const refusals = report.refusals;
      const code = refusals.length ? ExitCode.usage : ExitCode.ok;
      if (out.json) out.emitJson({ ...jsonDoc(report, !refusals.length, code), problems: refusals });
      else printPlan(out, report.plan, argv.dropExisting, refusals, report.method);
      return code;
    }
    if (out.json) out.emitJson({ ...jsonDoc(report, true, ExitCode.ok), method: argv.method });
    else printReport(out, report);
    return ExitCode.ok;
  },
});
