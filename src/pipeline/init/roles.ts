/**
 * Roles, once per target server, from `pg_dumpall --roles-only
 * --no-role-passwords` of the source. Each statement runs on its own: roles
 * that exist are kept, and whatever a target refuses (SUPERUSER, REPLICATION,
 * BYPASSRLS without superuser rights, grants of predefined roles, roles of
 * managed services such as rds_* / azure_* / cloudsql*) is skipped and
 * reported as a warning — never a reason to stop.
 */
import { runTool, requireTool, assertToolCanDump } from '../../postgres/tools.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { sqlstate } from '../../postgres/errors.js';

/** Roles that belong to the service or the server, never to the application. */
const MANAGED_ROLE = /^(pg_|rds|azure_|cloudsql|alloydb|google_|aiven|neon_|supabase_|rdsadmin|rdsrepladmin|azuresu|replication$)/i;

export interface RolesReport {
  created: string[];
  existing: string[];
  statements: number;
  skipped: { statement: string; reason: string }[];
}

/** Split a pg_dumpall script into statements, ignoring comments, psql meta-commands and SETs. */
export function splitRoleScript(script: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: '"' | "'" | null = null;
  for (const line of script.split('\n')) {
    if (!quote && !cur && (line.startsWith('--') || line.startsWith('\\') || !line.trim())) continue;
    for (const ch of line) {
      if (quote) {
        if (ch === quote) quote = null;
      } else if (ch === '"' || ch === "'") quote = ch;
      cur += ch;
    }
    if (!quote && cur.trimEnd().endsWith(';')) {
      const stmt = cur.trim();
      if (!/^SET\s/i.test(stmt)) out.push(stmt);
      cur = '';
    } else cur += '\n';
  }
  return out;
}

/** The role a statement is about ("CREATE ROLE x", "ALTER ROLE x …", "GRANT a TO b"), unquoted. */
function identAt(s: string, at: number): string {
  let i = at;
  while (s[i] === ' ') i++;
  if (s[i] === '"') {
    let name = '';
    for (i++; i < s.length; i++) {
      if (s[i] === '"') {
        if (s[i + 1] === '"') {
          name += '"';
          i++;
        } else break;
      } else name += s[i];
    }
    return name;
  }
  const m = /^[^\s;,]+/.exec(s.slice(i));
  return m ? m[0] : '';
}

const ELEVATED = ['SUPERUSER', 'REPLICATION', 'BYPASSRLS'];

export interface CopyRolesOptions {
  source: ResolvedConnInfo;
  /** Any database of the target server. */
  target: ResolvedConnInfo;
  sourceMajor: number;
  pgBinDir?: string | undefined;
  signal?: AbortSignal;
  /** The script of dumpRoles when it was started earlier. */
  script?: Promise<string>;
}

/** The source's roles as a pg_dumpall script (read only: init starts it early, alongside its checks). */
export async function dumpRoles(o: Pick<CopyRolesOptions, 'source' | 'sourceMajor' | 'pgBinDir' | 'signal'>): Promise<string> {
  const tool = requireTool('pg_dumpall', o.pgBinDir);
  assertToolCanDump(tool, o.sourceMajor);
  const { stdout } = await runTool('pg_dumpall', ['--roles-only', '--no-role-passwords'], {
    conn: o.source,
    pgBinDir: o.pgBinDir,
    label: 'pg_dumpall --roles-only of the source',
    signal: o.signal,
  });
  return stdout;
}

export async function copyRoles(o: CopyRolesOptions): Promise<RolesReport> {
  const statements = splitRoleScript(await (o.script ?? dumpRoles(o)));
  const report: RolesReport = { created: [], existing: [], statements: 0, skipped: [] };
  await withClient(
    o.target,
    async (client) => {
      const me = await client.query<{ usr: string; su: boolean }>(
        'SELECT current_user AS usr, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su',
      );
      const currentUser = me.rows[0]!.usr;
      const superuser = me.rows[0]!.su;
      const existing = new Set((await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles')).rows.map((r) => r.rolname));
      const skip = (statement: string, reason: string) => report.skipped.push({ statement, reason });
      for (const raw of statements) {
        let stmt = raw;
        const create = /^CREATE ROLE\s/i.exec(stmt);
        const alter = /^ALTER ROLE\s/i.exec(stmt);
        const grant = /^GRANT\s/i.exec(stmt);
        const comment = /^COMMENT ON ROLE\s/i.exec(stmt);
        let role = '';
        if (create) role = identAt(stmt, create[0].length);
        else if (alter) role = identAt(stmt, alter[0].length);
        else if (comment) role = identAt(stmt, comment[0].length);
        else if (grant) {
          const granted = identAt(stmt, grant[0].length);
          const to = / TO /i.exec(stmt);
          const grantee = to ? identAt(stmt, to.index + 4) : '';
          if (MANAGED_ROLE.test(grantee)) continue;
          if (MANAGED_ROLE.test(granted) && !/^pg_/.test(granted)) continue;
          if (/^pg_/.test(granted) && !superuser) {
            skip(stmt, `granting the predefined role ${granted} needs a superuser on the target`);
            continue;
          }
        }
        if (role && MANAGED_ROLE.test(role)) continue;
        if (create) {
          if (existing.has(role)) {
            report.existing.push(role);
            continue;
          }
        }
        if (alter && role === currentUser && / WITH /i.test(stmt)) {
          // Never change the attributes of the user pgferry is connected as.
          continue;
        }
        if (alter && !superuser && / WITH /i.test(stmt)) {
          // A non-superuser may not even name these attributes (NOSUPERUSER … included); the NO forms are the defaults.
          const dropped = ELEVATED.filter((a) => new RegExp(`\\s${a}\\b`).test(stmt));
          for (const a of ELEVATED) stmt = stmt.replace(new RegExp(`\\s(NO)?${a}\\b`, 'g'), '');
          if (dropped.length) skip(raw, `attributes ${dropped.join(', ')} of role ${role} need a superuser on the target; the role is created without them`);
        }
        try {
          await client.query(stmt);
          report.statements++;
          if (create) {
            report.created.push(role);
            existing.add(role);
          }
        } catch (err) {
          const code = sqlstate(err);
          if (code === '42710' && create) {
            report.existing.push(role);
            continue;
          }
          skip(raw, `${(err as Error).message}${code ? ` (SQLSTATE ${code})` : ''}`);
        }
      }
    },
    { label: 'the target' },
  );
  return report;
}
