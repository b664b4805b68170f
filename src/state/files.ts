/** Files of the state directory: written so that a crash leaves either the old or the new content, never half. */
import { mkdirSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';

/** Write JSON atomically: a private tmp file, fsync, rename over the target, fsync the directory. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(JSON.stringify(value, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  // Asynchronous, like the file's own fsync: a synchronous one blocks every copy worker of the process
  // for the length of a disk flush, once per record (hundreds on a database of many small tables).
  try {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } catch {
    // Some file systems cannot fsync a directory; the rename is still atomic.
  }
}
