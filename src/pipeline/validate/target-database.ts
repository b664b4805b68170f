/**
 * A target database that exists already: can the target user create the
 * schema in it (CREATE on the database for schemas and subscriptions, CREATE
 * on schema public), and does it already hold tables that init would meet?
 */
import type pg from 'pg';
import { notExtensionMemberSql } from '../../postgres/catalog/tables.js';
import { quoteIdent } from '../../postgres/identifiers.js';
import { fail, ok, warn, type CheckResult } from './types.js';

export interface TargetDatabaseFacts {
  name: string;
  user: string;
  superuser: boolean;
  canCreate: boolean;
  /** null when there is no schema public. */
  canCreateInPublic: boolean | null;
  /** User tables already present, schema-qualified. */
  existingTables: string[];
}

export async function gatherTargetDatabase(client: pg.Client): Promise<TargetDatabaseFacts> {
  const { rows } = await client.query<{ name: string; user: string; superuser: boolean; can_create: boolean; can_public: boolean | null }>(
    `SELECT current_database() AS name, current_user AS "user",
            (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
            has_database_privilege(current_database(), 'CREATE') AS can_create,
            (SELECT has_schema_privilege(n.oid, 'CREATE') FROM pg_namespace n WHERE n.nspname = 'public') AS can_public`,
  );
  const { rows: tables } = await client.query<{ t: string }>(
    `SELECT format('%I.%I', n.nspname, c.relname) AS t
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
        AND ${notExtensionMemberSql('c')}
      ORDER BY 1`,
  );
  const r = rows[0]!;
  return {
    name: r.name,
    user: r.user,
    superuser: r.superuser,
    canCreate: r.can_create,
    canCreateInPublic: r.can_public,
    existingTables: tables.map((t) => t.t),
  };
}

export function checkTargetDatabase(f: TargetDatabaseFacts): CheckResult[] {
  const out: CheckResult[] = [];
  const role = quoteIdent(f.user);
  const db = quoteIdent(f.name);
  if (f.superuser) {
    out.push(ok('database.target_privileges', 'target', `target database ${f.name} exists; ${f.user} is a superuser there`));
  } else {
    const missing: string[] = [];
    const fixes: string[] = [];
    if (!f.canCreate) {
      missing.push(`CREATE on database ${f.name} (for schemas and the subscription)`);
      fixes.push(`GRANT CREATE ON DATABASE ${db} TO ${role};`);
    }
    if (f.canCreateInPublic === false) {
      missing.push('CREATE on schema public');
      fixes.push(`GRANT CREATE ON SCHEMA public TO ${role};  -- in database ${f.name}`);
    }
    out.push(
      missing.length
        ? fail('database.target_privileges', 'target', `${f.user} lacks ${missing.join(' and ')} on the target`, fixes.join(' '))
        : ok('database.target_privileges', 'target', `target database ${f.name} exists; ${f.user} may create objects in it`),
    );
  }
  if (f.existingTables.length) {
    out.push(
      warn(
        'database.target_not_empty',
        'target',
        `target database ${f.name} already holds ${f.existingTables.length} table${f.existingTables.length > 1 ? 's' : ''}: ` +
          'init refuses it (exit 2, nothing written) unless run with --drop-existing, which drops and re-creates the database after a confirmation (--yes skips it)',
        `point --target at another database (init creates it), pass --drop-existing to init, or empty it first: DROP DATABASE ${db};`,
        { details: f.existingTables },
      ),
    );
  }
  return out;
}
