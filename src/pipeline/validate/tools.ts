/**
 * Client tools: pg_dump, pg_restore, pg_dumpall and psql must be present
 * (honouring --pg-bin-dir), and pg_dump / pg_dumpall must be at least the
 * source's major version (they refuse newer servers).
 */
import { PgferryError } from '../../errors.js';
import { assertToolCanDump, findTool, PG_TOOLS, type PgTool, type ToolLocation } from '../../postgres/tools.js';
import { fail, ok, type CheckResult } from './types.js';

const PURPOSE: Record<PgTool, string> = {
  pg_dump: 'init dumps the schema with it',
  pg_restore: 'init restores the schema with it',
  pg_dumpall: 'init copies roles with it',
  psql: 'init runs SQL scripts with it',
};

export type ToolLookup = (tool: PgTool, pgBinDir?: string) => ToolLocation | undefined;

export function checkTools(pgBinDir: string | undefined, sourceMajor: number | undefined, lookup: ToolLookup = findTool): CheckResult[] {
  return PG_TOOLS.map((tool) => {
    const id = `tools.${tool}`;
    const t = lookup(tool, pgBinDir);
    if (!t) {
      const where = pgBinDir ? `in ${pgBinDir} (--pg-bin-dir)` : 'in PATH or pg_config --bindir';
      const major = sourceMajor ?? 'the source';
      return fail(
        id,
        'tools',
        `${tool} not found ${where}; ${PURPOSE[tool]}`,
        `install the PostgreSQL ${major} client tools (Debian/Ubuntu: apt-get install postgresql-client-${major}; RHEL: postgresql${major}) and pass --pg-bin-dir /usr/lib/postgresql/${major}/bin`,
      );
    }
    if (sourceMajor !== undefined) {
      try {
        assertToolCanDump(t, sourceMajor);
      } catch (err) {
        if (!(err instanceof PgferryError)) throw err;
        return fail(id, 'tools', err.message, err.hint ?? `install the PostgreSQL ${sourceMajor} client tools`);
      }
    }
    return ok(id, 'tools', `${tool} ${t.version} (${t.path})`);
  });
}
