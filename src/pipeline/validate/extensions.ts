/**
 * Every extension installed in a source database must be installable on the
 * target (pg_dump's schema says CREATE EXTENSION for it): the same name, at
 * the same or a later version.
 */
import { quoteIdent } from '../../postgres/identifiers.js';
import type { InstalledExtension } from './database-facts.js';
import { fail, ok, warn, type CheckResult } from './types.js';
import { plural } from '../../units.js';

/** Compare extension versions such as "1.6", "1.10", "2.1.3"; non-numeric versions compare as text. */
export function compareVersions(a: string, b: string): number {
  const pa = a.match(/\d+/g);
  const pb = b.match(/\d+/g);
  if (!pa || !pb) return a === b ? 0 : a < b ? -1 : 1;
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = Number(pa[i] ?? 0);
    const y = Number(pb[i] ?? 0);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export function checkExtensions(extensions: InstalledExtension[], available: Map<string, string[]>, targetMajor: number): CheckResult[] {
  const id = 'database.extensions';
  const out: CheckResult[] = [];
  for (const e of extensions) {
    const versions = available.get(e.name);
    if (!versions?.length) {
      out.push(
        fail(
          id,
          'target',
          `extension ${e.name} ${e.version} is installed on the source but not available on the target (no ${e.name}.control in its extension directory)`,
          `install extension ${e.name} (version ${e.version} or later) for PostgreSQL ${targetMajor} on the target server (e.g. apt-get install postgresql-${targetMajor}-${e.name.replace(/_/g, '-')}, or the postgresql-contrib package), or drop it from the source if unused: DROP EXTENSION ${quoteIdent(e.name)};`,
        ),
      );
      continue;
    }
    if (versions.some((v) => compareVersions(v, e.version) >= 0)) continue;
    const best = [...versions].sort(compareVersions).at(-1)!;
    out.push(
      warn(
        id,
        'target',
        `extension ${e.name} is at version ${e.version} on the source; the target offers only up to ${best}: it installs, but objects of newer versions may be missing`,
        `install ${e.name} ${e.version} or later for PostgreSQL ${targetMajor} on the target server (its ${e.name}--${e.version}.sql script must be in the extension directory)`,
      ),
    );
  }
  if (!out.length) {
    out.push(
      ok(
        id,
        'target',
        extensions.length
          ? `${plural(extensions.length, 'extension')} installed, all available on the target (${extensions.map((e) => `${e.name} ${e.version}`).join(', ')})`
          : 'no extensions installed',
      ),
    );
  }
  return out;
}
