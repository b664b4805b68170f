#!/usr/bin/env node
import { runCli } from './program.js';

/**
 * Resolves once everything written to `stream` so far is out. A pipe takes a
 * large write in pieces (64 kB at a time when its reader is slower), and
 * process.exit() drops what is still queued: a `--json` document read by jq
 * or a script arrived cut short.
 */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.writableLength === 0) return resolve();
    // A reader that went away (EPIPE) ends the wait too: nothing more can reach it.
    stream.once('error', () => resolve());
    // Writes complete in order: this callback runs after every earlier one.
    stream.write('', () => resolve());
  });
}

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
// Sessions kept for reuse and other handles must not hold the process once its output is out.
process.exit(code);
