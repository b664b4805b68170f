/**
 * The lock of a state directory: one run at a time per migration. The file
 * `lock` holds the owner's pid, host, process start time and when it started.
 * A lock whose process is gone (kill -9, a crash, a reboot) is taken over; a
 * live one is refused with exit 2 naming the pid.
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { processAlive, registerCleanup } from '../lifecycle.js';

interface LockInfo {
  pid: number;
  host: string;
  /** Kernel start time of the process (Linux), to tell a recycled pid from the owner. */
  processStart: string | null;
  startedAt: string;
}

function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counted after the ")" that ends the command name.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

function alive(info: LockInfo): boolean {
  if (!processAlive(info.pid)) return false;
  const start = processStartTime(info.pid);
  return !(info.processStart && start && start !== info.processStart);
}

async function readLock(file: string): Promise<LockInfo | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LockInfo;
  } catch {
    return undefined;
  }
}

/**
 * Take the lock of `stateDir` (creating the folder). Returns the release
 * function; the lock is also removed when the process exits normally or on a
 * signal.
 */
export async function acquireLock(stateDir: string): Promise<() => Promise<void>> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = path.join(stateDir, 'lock');
  const mine: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    processStart: processStartTime(process.pid),
    startedAt: new Date().toISOString(),
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(file, 'wx', 0o600);
      try {
        // Not fsynced (19 ms of every start on a small VM): other processes read it from the page cache, and after a
        // crash its owner is gone anyway; an empty or torn file is taken over as unreadable (below).
        await fh.writeFile(JSON.stringify(mine) + '\n');
      } finally {
        await fh.close();
      }
      const removeSync = () => {
        try {
          const now = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
          if (now.pid === mine.pid && now.startedAt === mine.startedAt) rmSync(file, { force: true });
        } catch {
          // already gone
        }
      };
      const dispose = registerCleanup(removeSync);
      return async () => dispose();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new UsageError(`cannot create the lock file ${file}: ${(err as Error).message}`, {
          hint: 'check that the state directory is writable, or choose another with --state-dir',
        });
      }
    }
    const other = await readLock(file);
    if (other && other.host !== mine.host) {
      throw new UsageError(`the state in ${stateDir} is locked by process ${other.pid} on host ${other.host} (since ${other.startedAt})`, {
        hint: `if no pgferry runs there any more, delete ${file}`,
      });
    }
    if (other && alive(other)) {
      throw new UsageError(`another pgferry run (pid ${other.pid}, started ${other.startedAt}) is using the state in ${stateDir}`, {
        hint: `wait for it to finish or stop it (kill ${other.pid}); a lock left by a dead process is taken over automatically`,
      });
    }
    // Stale (owner gone) or unreadable (a crash while writing it): take it over.
    await rm(file, { force: true });
  }
  throw new UsageError(`cannot take the lock ${file}: another run keeps taking it`);
}
