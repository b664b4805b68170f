import { fileURLToPath } from 'node:url';

/** The CLI's entry script (dist/cli/main.js), for running pgferry as a child process. Resolved beside this module,
 * which stays in dist/cli/ both in tsc's output and in the bundle. */
export function cliEntryPath(): string {
  return fileURLToPath(new URL('./main.js', import.meta.url));
}
