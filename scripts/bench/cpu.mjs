/**
 * CPU seconds from /proc for the benchmarks (Linux). On a shared machine wall
 * time depends on the neighbours and on how many processes a method runs; CPU
 * time does not.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const TICKS = 100; // USER_HZ on Linux

/** The fields of /proc/<pid>/stat after the command name. */
function stat(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a live process in seconds (0 once it is gone). */
export function procCpuSeconds(pid) {
  try {
    const f = stat(pid);
    return (Number(f[11]) + Number(f[12])) / TICKS;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds used so far by one local cluster: the postmaster, its reaped
 * children (sessions and parallel workers that exited) and every live child.
 */
export function clusterCpuSeconds(cluster) {
  const pm = Number(readFileSync(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const own = stat(pm);
  let total = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const f = stat(entry);
      if (Number(f[1]) === pm) total += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile: its time is in the postmaster's reaped total
    }
  }
  return total / TICKS;
}
