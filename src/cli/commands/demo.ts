/** `pgferry demo`: a whole live migration on two throwaway local clusters. */
import path from 'node:path';
import type { Argv } from 'yargs';
import { UsageError } from '../../errors.js';
import { defineCommand } from '../define.js';
import type { GlobalArgs } from '../options.js';

interface DemoArgs {
  keep: boolean;
  stop: boolean;
  dir: string;
  watch: number;
}

export const demoCommand = defineCommand<DemoArgs>({
  command: 'demo',
  describe: 'Run a whole live migration between two throwaway local clusters (needs PostgreSQL server binaries)',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('keep', { type: 'boolean', default: false, describe: 'Leave both clusters running and print how to use them' })
      .option('stop', { type: 'boolean', default: false, describe: 'Stop the clusters an earlier --keep left running' })
      .option('dir', { type: 'string', default: './.pgferry-demo', describe: "The demo's connection files and state" })
      .option('watch', { type: 'number', default: 5, describe: 'Seconds to watch rows arrive on the target' }) as unknown as Argv<GlobalArgs>,
  examples: [
    ['pgferry demo', 'validate → init → sync → status → sequences → verify → cleanup, then remove the clusters'],
    ['pgferry demo --keep', 'the same, and leave the clusters running to explore'],
  ],
  epilog:
    'Server binaries come from --pg-bin-dir, PGFERRY_PG_BIN_DIR, PATH, pg_config or /usr/lib/postgresql/<newest>/bin. ' +
    'Ctrl-C at any point stops the writer and removes both clusters.',
  async run(ctx, argv) {
    const dir = path.resolve(argv.dir);
    // Loaded by this command only: the demo's modules are not needed by the others.
    const { runDemo, stopKeptDemo } = await import('../demo/run.js');
    if (argv.stop) return stopKeptDemo(dir, ctx.out);
    if (ctx.out.json) throw new UsageError('demo prints for people and has no --json', { hint: 'run the commands it shows with --json' });
    return runDemo({ out: ctx.out, signal: ctx.signal, workDir: dir, keep: argv.keep, pgBinDir: ctx.pgBinDir, watchSeconds: argv.watch });
  },
});
