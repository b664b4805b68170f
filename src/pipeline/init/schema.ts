/**
 * Schema through pg_dump / pg_restore. One schema-only archive per database is
 * dumped under the copy's snapshot (`pg_dump --schema-only -Fc --snapshot`,
 * tables outside the scope left out with -T) into the state directory; its
 * pre-data section is restored in one transaction before the data (in parts
 * where it does not fit the target's lock table), its post-data section after it:
 *
 *   pass 0  during the copy, each table's own indexes and constraints as soon
 *           as its data is in (table-post-data.ts);
 *   pass 1  every other post-data item except foreign keys and comments (what
 *           pass 0 left, triggers, rules, policies, materialized view data …):
 *           the own items of small tables as SQL scripts on N sessions
 *           (restoreScripted), the rest with pg_restore -j N;
 *   pass 2  foreign keys, created by pgferry itself (constraints.ts) so that a
 *           key can be made NOT VALID where the scope asks for it;
 *   pass 3  comments and security labels of post-data objects.
 *
 * On a resumed post-data phase, items that already exist on the target are
 * left out of the lists (matched by name through the source catalog OIDs the
 * archive records), so a rerun neither fails on "already exists" nor builds an
 * index twice.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { OperationError, UsageError } from '../../errors.js';
import type { CatalogTable } from '../../postgres/catalog/tables.js';
import { acquireClient, withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { isLockTableFull, lockTableError } from '../../postgres/errors.js';
import { qualifiedName } from '../../postgres/identifiers.js';
import { runTool } from '../../postgres/tools.js';
import { disableEventTriggersSql } from '../shared/event-triggers.js';

export interface SchemaToolOptions {
  pgBinDir?: string | undefined;
  signal?: AbortSignal;
  noOwner: boolean;
  noPrivileges: boolean;
  /** Keep each relation's tablespace (--keep-tablespaces); else all go to the target database's default. */
  keepTablespaces?: boolean;
  /** The target's major version, where known (its pg_restore sessions then clear a transaction_timeout, 17 on). */
  targetMajor?: number;
}

/** pg_dump pattern for exactly one relation: both parts quoted, so nothing in them is a wildcard. */
export function exactPattern(schema: string, name: string): string {
  return qualifiedName(schema, name);
}

/**
 * Relations to leave out of the dump: excluded tables and, for partitioned ones, every relation of
 * their partition trees (read on the source; no session at all when no partitioned table is excluded).
 */
export async function excludedRelations(source: ResolvedConnInfo, allTables: CatalogTable[], inScope: Set<number>): Promise<{ schema: string; name: string }[]> {
  const excluded = allTables.filter((t) => !inScope.has(t.oid));
  const partitioned = excluded.filter((t) => t.relkind === 'p').map((t) => t.oid);
  const out = excluded.filter((t) => t.relkind !== 'p').map((t) => ({ schema: t.schema, name: t.name }));
  if (partitioned.length) {
    const { rows } = await withClient(
      source,
      (c) =>
        c.query<{ schema: string; name: string }>(
          `SELECT n.nspname AS schema, c.relname AS name
             FROM unnest($1::oid[]) x(oid)
             CROSS JOIN LATERAL (SELECT x.oid AS relid UNION SELECT relid FROM pg_partition_tree(x.oid)) t
             JOIN pg_class c ON c.oid = t.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace`,
          [partitioned],
        ),
      { label: 'the source' },
    );
    out.push(...rows);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return out.sort((a, b) => cmp(a.schema, b.schema) || cmp(a.name, b.name));
}

/** Dump the schema-only archive under the snapshot (written to a temporary name, then renamed: a file that exists is complete). */
export async function dumpSchema(
  conn: ResolvedConnInfo,
  file: string,
  o: SchemaToolOptions & { snapshot?: string | undefined; exclude: { schema: string; name: string }[] },
): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  const args = ['--schema-only', '--format=custom', '--no-subscriptions', `--file=${tmp}`];
  if (o.snapshot) args.push(`--snapshot=${o.snapshot}`);
  for (const r of o.exclude) args.push(`--exclude-table=${exactPattern(r.schema, r.name)}`);
  try {
    await runTool('pg_dump', args, { conn, pgBinDir: o.pgBinDir, signal: o.signal, label: `pg_dump --schema-only of source database "${conn.dbname}"` });
  } catch (err) {
    await rm(tmp, { force: true });
    // The message is pg_dump's own (with the table it stopped at); the hint says what to change.
    throw lockTableError(err, null, 'source', 'pg_dump', 'every table it dumps');
  }
  await rename(tmp, file);
}

function restoreArgs(o: SchemaToolOptions): string[] {
  const args = o.keepTablespaces ? ['--exit-on-error'] : ['--no-tablespaces', '--exit-on-error'];
  if (o.noOwner) args.push('--no-owner');
  if (o.noPrivileges) args.push('--no-privileges');
  return args;
}

/** application_name of init's pg_restore sessions on the target, so that a later run finds those a killed run left behind. */
export const RESTORE_APPLICATION_NAME = 'pgferry_restore';

/**
 * pg_restore's sessions flush their commits (synchronous_commit = local) even
 * on a target running with it off: init records a restored schema as done, and
 * a crash must not take back what the state file says exists.
 */
const RESTORE_SETTINGS: Readonly<Record<string, string>> = { synchronous_commit: 'local' };

/**
 * How init's pg_restore runs connect: named RESTORE_APPLICATION_NAME (stopStrayRestores finds what a killed run left), with
 * RESTORE_SETTINGS, and no transaction_timeout where the target has one (pg_restore before 17 does not clear it itself).
 */
function restoreTool(o: SchemaToolOptions & { targetMajor?: number }): { applicationName: string; settings: Record<string, string> } {
  return { applicationName: RESTORE_APPLICATION_NAME, settings: { ...RESTORE_SETTINGS, ...((o.targetMajor ?? 0) >= 17 ? { transaction_timeout: '0' } : {}) } };
}

/**
 * A pg_restore outlives a pgferry killed with SIGKILL, and its index build
 * goes on and commits: it would collide with the rerun building the same item.
 * The state lock says no other run of this migration is alive, so such
 * sessions in this target database are terminated (an unfinished build rolls
 * back) and awaited before the rerun looks at what exists.
 */
export async function stopStrayRestores(target: pg.Client, timeoutMs = 30_000): Promise<number> {
  const sql = `FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()`;
  const { rows } = await target.query<{ n: number }>(`SELECT count(*)::int AS n ${sql}`, [RESTORE_APPLICATION_NAME]);
  if (!rows[0]!.n) return 0;
  try {
    await target.query(`SELECT pg_terminate_backend(pid) ${sql}`, [RESTORE_APPLICATION_NAME]);
  } catch {
    return 0; // not allowed to signal them (another role's sessions): the rerun meets them as before
  }
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    const left = await target.query<{ n: number }>(`SELECT count(*)::int AS n ${sql}`, [RESTORE_APPLICATION_NAME]);
    if (!left.rows[0]!.n) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return rows[0]!.n;
}

/** A script larger than this is left to pg_restore (it is held in memory and sent as one message). */
const SCRIPT_MAX_CHARS = 64 * 1024 ** 2;

/**
 * The pre-data section as SQL (`pg_restore --file=-`, no connection), ready to run as one
 * simple query, or null when it is not plain SQL (a psql meta-command other than the
 * `\restrict` pair that pg_restore 15.14+ puts around its output) or too large.
 */
export async function preDataScript(file: string, o: SchemaToolOptions & { targetMajor: number }): Promise<string | null> {
  return archiveScript(file, ['--section=pre-data'], o, 'pg_restore of the schema (pre-data) as SQL');
}

/** Part of an archive as SQL, ready to run as one query (executableScript), or null. */
async function archiveScript(file: string, select: string[], o: SchemaToolOptions & { targetMajor: number }, label: string): Promise<string | null> {
  const { stdout } = await runTool('pg_restore', [...select, ...restoreArgs(o), '--file=-', file], { pgBinDir: o.pgBinDir, signal: o.signal, label });
  return executableScript(stdout, o.targetMajor);
}

/** See preDataScript. Exported for its unit test. */
export function executableScript(text: string, targetMajor: number): string | null {
  if (text.length > SCRIPT_MAX_CHARS) return null;
  const lines = text.split('\n');
  const first = lines.findIndex((l) => l.startsWith('\\'));
  if (first >= 0) {
    // \restrict KEY … \unrestrict KEY: psql's guard against meta-commands smuggled into the dump; both lines go.
    const m = /^\\restrict (\S+)$/.exec(lines[first]!);
    const last = lines.lastIndexOf(`\\unrestrict ${m?.[1]}`);
    if (!m || last < 0) return null;
    lines.splice(last, 1);
    lines.splice(first, 1);
  }
  if (lines.some((l) => l.startsWith('\\'))) return null;
  // Written from the archive's server version, not the target's: a source of 17 or later sets a
  // parameter that an older target does not know (pg_restore --dbname leaves it out there).
  const header = lines.findIndex((l) => l.startsWith('-- Name: '));
  if (targetMajor < 17) {
    for (let i = (header < 0 ? lines.length : header) - 1; i >= 0; i--) if (lines[i] === 'SET transaction_timeout = 0;') lines.splice(i, 1);
  }
  return lines.join('\n');
}

/**
 * Restore the pre-data section in one transaction: all of it or nothing.
 *
 * The script goes to the target as one simple query (an implicit transaction, like
 * pg_restore --single-transaction) instead of one round trip per statement: pg_restore
 * waits for each of the ~3 statements per table, which over a network is most of the
 * schema's time (200 small tables, 1 ms of latency each way: 1.8 s against 0.3 s). Where
 * that path cannot be taken or fails, pg_restore runs as before and reports the failing
 * item in its own words (the failed attempt left nothing behind). A schema whose locks do
 * not fit the target's lock table in one transaction (thousands of tables) is restored in
 * parts instead (restorePreDataInParts), with a warning: pg_restore without
 * --single-transaction restores it, so pgferry must too.
 */
export async function restorePreData(
  conn: ResolvedConnInfo,
  file: string,
  o: SchemaToolOptions & { targetMajor: number; warn?: (message: string) => void },
): Promise<void> {
  const script = await preDataScript(file, o).catch((err: unknown) => unlessInterrupted(err, o.signal));
  if (script !== null) {
    try {
      await runScript(conn, script, o);
      return;
    } catch (err) {
      if (o.signal?.aborted) throw err;
      // Rolled back whole; pg_restore --single-transaction would run out the same way. The transaction keeps a lock on
      // every relation it creates (a table with a TOAST table: four) until it commits, and all must fit the lock table.
      if (isLockTableFull(err)) return restorePreDataInParts(conn, file, o, script);
    }
  }
  try {
    await runTool('pg_restore', ['--section=pre-data', '--single-transaction', ...restoreArgs(o), file], {
      conn, pgBinDir: o.pgBinDir, signal: o.signal, ...restoreTool(o), label: `pg_restore of the schema (pre-data) into target database "${conn.dbname}"`,
    });
  } catch (err) {
    const msg = (err as Error).message;
    if (!o.signal?.aborted && isLockTableFull(err)) return restorePreDataInParts(conn, file, o, null);
    if (/role "[^"]+" does not exist/.test(msg)) {
      throw new UsageError(msg, { hint: 'let pgferry copy the roles (leave out --no-roles), create them on the target, or pass --no-owner and --no-privileges' });
    }
    throw err;
  }
}

/** Pre-data items per transaction when the whole section does not fit one (PRE_DATA_PART_ITEMS × 4 locks at most). */
const PRE_DATA_PART_ITEMS = 200;

/**
 * The pre-data section in parts of PRE_DATA_PART_ITEMS items, in the archive's order (each part's
 * dependencies are in earlier parts), each part one transaction, on one session. Not all-or-nothing:
 * a part that fails leaves the parts before it on the target, and the error says so. The parts are
 * cut from the whole section's script where its item headers line up with the archive's items
 * (splitScript); otherwise pg_restore writes each part (a process start that reads the whole
 * archive: 0.13 s each for 20 000 tables, a hundred times).
 */
async function restorePreDataInParts(
  conn: ResolvedConnInfo,
  file: string,
  o: SchemaToolOptions & { targetMajor: number; warn?: (message: string) => void },
  script: string | null,
): Promise<void> {
  const { stdout } = await runTool('pg_restore', ['--list', '--section=pre-data', file], { pgBinDir: o.pgBinDir, signal: o.signal, label: 'pg_restore --list' });
  const entries = parseToc(stdout);
  const parts: TocEntry[][] = [];
  for (let i = 0; i < entries.length; i += PRE_DATA_PART_ITEMS) parts.push(entries.slice(i, i + PRE_DATA_PART_ITEMS));
  const scripts = script === null ? null : splitScript(script, entries.length, PRE_DATA_PART_ITEMS);
  o.warn?.(
    `the schema of target database "${conn.dbname}" (${entries.length} items) does not fit the target's lock table in one transaction; ` +
      `restoring it in ${parts.length} transactions (raise max_locks_per_transaction on the target to restore it all-or-nothing)`,
  );
  const listFile = `${file}.pre-data.list`;
  let done = 0;
  try {
    await withScriptSession(conn, o, async (run) => {
      for (const [i, part] of parts.entries()) {
        let sql = scripts?.[i] ?? null;
        if (sql === null) {
          await writeFile(listFile, part.map((e) => e.line).join('\n') + '\n', { mode: 0o600 });
          sql = await archiveScript(file, [`--use-list=${listFile}`], o, 'pg_restore of the schema (pre-data) as SQL');
        }
        if (sql !== null) await run(sql);
        else {
          await runTool('pg_restore', [`--use-list=${listFile}`, '--single-transaction', ...restoreArgs(o), file], {
            conn, pgBinDir: o.pgBinDir, signal: o.signal, ...restoreTool(o), label: `pg_restore of the schema (pre-data) into target database "${conn.dbname}"`,
          });
        }
        done++;
      }
    });
  } catch (err) {
    if (o.signal?.aborted || !done) throw err;
    throw new OperationError(`${(err as Error).message}\n(${done} of ${parts.length} parts of the schema were restored before this one and stay on the target)`, {
      hint: 'fix the cause, then start over with --restart --drop-existing',
    });
  } finally {
    await rm(listFile, { force: true });
  }
}

/**
 * A script of pg_restore's in parts of `perPart` items each, every part behind the script's
 * preamble (its SET lines), or null unless the script holds exactly `items` item headers
 * (`--` / `-- Name: …` / `--`, which pg_restore writes before each item): a function body
 * holding such lines would shift the cuts. Exported for its unit test.
 */
export function splitScript(script: string, items: number, perPart: number): string[] | null {
  const starts: number[] = [];
  const header = /^--\n-- Name: [^\n]*\n--\n/gm;
  for (let m = header.exec(script); m; m = header.exec(script)) starts.push(m.index);
  if (starts.length !== items || !items) return null;
  const preamble = script.slice(0, starts[0]);
  const parts: string[] = [];
  for (let i = 0; i < starts.length; i += perPart) parts.push(preamble + script.slice(starts[i], starts[i + perPart] ?? script.length));
  return parts;
}

/** A script that could not be written is left to pg_restore, unless the run is being interrupted. */
function unlessInterrupted(err: unknown, signal: AbortSignal | undefined): null {
  if (signal?.aborted) throw err;
  return null;
}

/** One simple query on a session of its own (withScriptSession). */
async function runScript(conn: ResolvedConnInfo, script: string, o: SchemaToolOptions & { targetMajor: number }): Promise<void> {
  await withScriptSession(conn, o, (run) => run(script));
}

/**
 * A target session with pg_restore's session settings (restoreTool), no timeouts, and its
 * application_name, so that a run after a crash finds and stops it (stopStrayRestores). `run`
 * sends a script as one simple query; an interrupt closes the socket, and the server rolls the
 * script back once it notices. The session is not handed on: scripts change its search_path.
 */
async function withScriptSession<T>(
  conn: ResolvedConnInfo,
  o: SchemaToolOptions & { targetMajor: number },
  fn: (run: (script: string) => Promise<void>) => Promise<T>,
): Promise<T> {
  const settings: Record<string, string> = { ...RESTORE_SETTINGS, statement_timeout: '0', lock_timeout: '0' };
  if (o.targetMajor >= 17) settings.transaction_timeout = '0';
  const session = await acquireClient(conn, { applicationName: RESTORE_APPLICATION_NAME, settings, label: 'the target' });
  const onAbort = () => session.client.connection.stream.destroy();
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(async (script) => {
      await session.client.query(script);
    });
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    await session.release(false);
  }
}

/** Items per script of restoreScripted: one transaction each, whose locks (a few per item) must fit the lock table. */
const SCRIPT_ITEMS = 200;

/**
 * Build post-data items as SQL scripts: one target session per bin, the bins at once, and each
 * run of up to SCRIPT_ITEMS items of a bin one query (one transaction). For items that need
 * nothing else built first and touch one table each (indexes and key, check and exclusion
 * constraints of plain tables), kept in one bin per table: pg_restore --jobs sends each item
 * as a statement of its own and waits for it, which over a network is a round trip per index.
 *
 * Returns what is left to pg_restore: the items of a run that could not be made one query or
 * whose query failed (rolled back whole), and every later run of its bin. pg_restore then
 * builds them, or reports the failing item in its own words.
 */
export async function restoreScripted(
  conn: ResolvedConnInfo,
  file: string,
  bins: TocEntry[][],
  listPrefix: string,
  o: SchemaToolOptions & { targetMajor: number },
): Promise<TocEntry[]> {
  const left = await Promise.all(
    bins.filter((b) => b.length).map(async (bin, b) => {
      const runs: TocEntry[][] = [];
      for (let i = 0; i < bin.length; i += SCRIPT_ITEMS) runs.push(bin.slice(i, i + SCRIPT_ITEMS));
      try {
        return await withScriptSession(conn, o, async (run) => {
          for (const [r, items] of runs.entries()) {
            const listFile = `${listPrefix}.${b + 1}.${r + 1}.list`;
            await writeFile(listFile, items.map((e) => e.line).join('\n') + '\n', { mode: 0o600 });
            const script = await archiveScript(file, [`--use-list=${listFile}`], o, 'pg_restore of post-data items as SQL').catch((err: unknown) =>
              unlessInterrupted(err, o.signal),
            );
            try {
              if (script === null) return runs.slice(r).flat();
              await run(script);
            } catch (err) {
              if (o.signal?.aborted) throw err;
              return runs.slice(r).flat();
            } finally {
              await rm(listFile, { force: true });
            }
          }
          return [];
        });
      } catch (err) {
        if (o.signal?.aborted) throw err;
        return bin; // no session: pg_restore reports why, with the items it builds
      }
    }),
  );
  return left.flat();
}

export interface TocEntry {
  line: string;
  dumpId: number;
  tableOid: number;
  oid: number;
  desc: string;
}

const MULTI_WORD_DESCS = [
  'FK CONSTRAINT', 'CHECK CONSTRAINT', 'INDEX ATTACH', 'MATERIALIZED VIEW DATA', 'ROW SECURITY', 'EVENT TRIGGER', 'SECURITY LABEL',
  'PUBLICATION TABLES IN SCHEMA', 'PUBLICATION TABLE', 'DEFAULT ACL', 'TABLE ATTACH', 'TABLE DATA', 'SEQUENCE SET', 'SEQUENCE OWNED BY',
  'LARGE OBJECT', 'BLOB METADATA', 'STATISTICS DATA', 'FOREIGN TABLE', 'FOREIGN SERVER', 'USER MAPPING', 'TEXT SEARCH', 'OPERATOR CLASS',
  'OPERATOR FAMILY', 'PROCEDURAL LANGUAGE', 'DEFAULT',
];

export function parseToc(listing: string): TocEntry[] {
  const out: TocEntry[] = [];
  for (const line of listing.split('\n')) {
    const m = /^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const rest = m[4]!;
    const desc = MULTI_WORD_DESCS.find((d) => rest.startsWith(`${d} `)) ?? rest.split(' ')[0]!;
    out.push({ line, dumpId: Number(m[1]), tableOid: Number(m[2]), oid: Number(m[3]), desc });
  }
  return out;
}

export async function listPostData(file: string, o: SchemaToolOptions): Promise<TocEntry[]> {
  const { stdout } = await runTool('pg_restore', ['--list', '--section=post-data', file], { pgBinDir: o.pgBinDir, signal: o.signal, label: 'pg_restore --list' });
  return parseToc(stdout);
}

/** Catalog OIDs of post-data objects and a name key that is the same on source and target. */
const OBJECT_KEYS_SQL = `
SELECT 1259 AS cat, c.oid::bigint AS oid, json_build_array(n.nspname, c.relname)::text AS key
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('i', 'I') AND ($1::oid[] IS NULL OR c.oid = ANY($1))
UNION ALL
SELECT 2606, c.oid, json_build_array(n.nspname, coalesce(t.relname, ty.typname), c.conname)::text
  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
  LEFT JOIN pg_class t ON t.oid = c.conrelid LEFT JOIN pg_type ty ON ty.oid = c.contypid
 WHERE ($1::oid[] IS NULL OR c.oid = ANY($1))
UNION ALL
SELECT 2620, g.oid, json_build_array(n.nspname, t.relname, g.tgname)::text
  FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE NOT g.tgisinternal AND ($1::oid[] IS NULL OR g.oid = ANY($1))
UNION ALL
SELECT 2618, r.oid, json_build_array(n.nspname, t.relname, r.rulename)::text
  FROM pg_rewrite r JOIN pg_class t ON t.oid = r.ev_class JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE ($1::oid[] IS NULL OR r.oid = ANY($1))
UNION ALL
SELECT 3256, p.oid, json_build_array(n.nspname, t.relname, p.polname)::text
  FROM pg_policy p JOIN pg_class t ON t.oid = p.polrelid JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE ($1::oid[] IS NULL OR p.oid = ANY($1))
UNION ALL
SELECT 3381, s.oid, json_build_array(n.nspname, s.stxname)::text
  FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
 WHERE ($1::oid[] IS NULL OR s.oid = ANY($1))
UNION ALL
SELECT 3466, e.oid, json_build_array(e.evtname)::text FROM pg_event_trigger e WHERE ($1::oid[] IS NULL OR e.oid = ANY($1))
UNION ALL
SELECT 6104, p.oid, json_build_array(p.pubname)::text FROM pg_publication p WHERE ($1::oid[] IS NULL OR p.oid = ANY($1))
UNION ALL
SELECT 6106, pr.oid, json_build_array(p.pubname, n.nspname, t.relname)::text
  FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN pg_class t ON t.oid = pr.prrelid JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE ($1::oid[] IS NULL OR pr.oid = ANY($1))`;

/** Dump ids of entries whose object already exists on the target. */
export async function entriesPresentOnTarget(source: pg.Client, target: pg.Client, entries: TocEntry[]): Promise<Set<number>> {
  const oids = entries.filter((e) => e.oid > 0).map((e) => e.oid);
  const present = new Set<number>();
  if (!oids.length) return present;
  const src = await source.query<{ cat: number; oid: string; key: string }>(OBJECT_KEYS_SQL, [oids]);
  const tgt = await target.query<{ cat: number; oid: string; key: string }>(OBJECT_KEYS_SQL, [null]);
  const onTarget = new Set(tgt.rows.map((r) => `${r.cat}:${r.key}`));
  const keyOf = new Map(src.rows.map((r) => [`${r.cat}:${r.oid}`, `${r.cat}:${r.key}`]));
  for (const e of entries) {
    const key = keyOf.get(`${e.tableOid}:${e.oid}`);
    if (key && onTarget.has(key)) present.add(e.dumpId);
  }
  return present;
}

/** Restore the entries of a list with pg_restore -L (parallel with jobs > 1). */
export async function restoreEntries(
  conn: ResolvedConnInfo,
  file: string,
  entries: TocEntry[],
  listFile: string,
  jobs: number,
  o: SchemaToolOptions,
  what: string,
): Promise<void> {
  if (!entries.length) return;
  await writeFile(listFile, entries.map((e) => e.line).join('\n') + '\n', { mode: 0o600 });
  const args = [`--use-list=${listFile}`, ...restoreArgs(o)];
  // pg_restore forks one worker per job: more than there are entries would only idle.
  const workers = Math.min(jobs, entries.length);
  if (workers > 1) args.push(`--jobs=${workers}`);
  args.push(file);
  await runTool('pg_restore', args, { conn, pgBinDir: o.pgBinDir, signal: o.signal, ...restoreTool(o), label: `pg_restore of ${what} into target database "${conn.dbname}"` });
}

/**
 * The archive's event triggers, last and disabled (shared/event-triggers.ts): created and disabled in one
 * transaction, so that none fires on anything pgferry does to the target before cutover enables them.
 */
export async function restoreEventTriggers(conn: ResolvedConnInfo, file: string, entries: TocEntry[], listFile: string, o: SchemaToolOptions & { targetMajor: number }): Promise<'restored' | 'not-superuser'> {
  if (!entries.length) return 'restored';
  // The target database's own event triggers (one that existed before init) are left as they are.
  const { own, superuser } = await withClient(conn, async (c) => ({
    own: (await c.query<{ name: string }>('SELECT evtname AS name FROM pg_event_trigger')).rows.map((r) => r.name),
    superuser: (await c.query<{ su: boolean }>('SELECT rolsuper AS su FROM pg_roles WHERE rolname = current_user')).rows[0]?.su ?? false,
  }), { label: 'the target' });
  // Only a superuser may create one; the copy is not held up for it (the caller names them).
  if (!superuser) return 'not-superuser';
  const disable = disableEventTriggersSql(own);
  await writeFile(listFile, entries.map((e) => e.line).join('\n') + '\n', { mode: 0o600 });
  const sql = await archiveScript(file, [`--use-list=${listFile}`], o, 'pg_restore of the event triggers as SQL');
  if (sql !== null) {
    await runScript(conn, `${sql}\n;\n${disable};\n`, o);
    return 'restored';
  }
  // Not plain SQL: restored, then disabled at once (nothing else runs on the target meanwhile).
  await restoreEntries(conn, file, entries, listFile, 1, o, 'event triggers');
  await withScriptSession(conn, o, (run) => run(disable));
  return 'restored';
}

export function archiveExists(file: string): boolean {
  return existsSync(file);
}
