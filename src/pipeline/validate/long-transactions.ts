/**
 * Creating a logical replication slot waits until every transaction that was
 * running when it started has ended. A session idle in transaction for hours
 * (or a forgotten prepared transaction) makes `init` hang; report them first.
 */
import type pg from 'pg';
import { quoteLiteral } from '../../postgres/identifiers.js';
import { ok, warn, type CheckResult } from './types.js';

export const DEFAULT_MAX_TRANSACTION_AGE_SECONDS = 60;

export interface OpenTransaction {
  pid: number;
  user: string | null;
  database: string | null;
  state: string | null;
  ageSeconds: number;
  query: string | null;
}

export interface PreparedTransaction {
  gid: string;
  owner: string;
  database: string;
  ageSeconds: number;
}

export interface LongTransactionFacts {
  sessions: OpenTransaction[];
  prepared: PreparedTransaction[];
  seesAllSessions: boolean;
  thresholdSeconds: number;
}

export async function gatherLongTransactions(client: pg.Client, thresholdSeconds: number, seesAllSessions: boolean): Promise<LongTransactionFacts> {
  const { rows: sessions } = await client.query<OpenTransaction>(
    `SELECT pid, usename AS "user", datname AS database, state,
            extract(epoch FROM now() - xact_start)::float8 AS "ageSeconds",
            left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query
       FROM pg_stat_activity
      WHERE pid <> pg_backend_pid()
        AND backend_type = 'client backend'
        AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
        AND xact_start < now() - make_interval(secs => $1)
      ORDER BY xact_start`,
    [thresholdSeconds],
  );
  const { rows: prepared } = await client.query<PreparedTransaction>(
    `SELECT gid, owner::text AS owner, database::text AS database, extract(epoch FROM now() - prepared)::float8 AS "ageSeconds"
       FROM pg_prepared_xacts
      WHERE prepared < now() - make_interval(secs => $1)
      ORDER BY prepared`,
    [thresholdSeconds],
  );
  return { sessions, prepared, seesAllSessions, thresholdSeconds };
}

export function formatAge(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d`;
}

/** Query text may carry a literal password (ALTER ROLE … PASSWORD '…'); never echo it. */
export function maskQuery(query: string | null): string | null {
  return query === null ? null : query.replace(/(\bpassword\s*)('(?:[^']|'')*'?)/gi, "$1'********'");
}

export function checkLongTransactions(f: LongTransactionFacts): CheckResult[] {
  const out: CheckResult[] = [];
  const hidden = f.seesAllSessions ? '' : ' (sessions of other users are hidden from this user: GRANT pg_read_all_stats to see them)';
  if (f.sessions.length) {
    out.push(
      warn(
        'source.long_transactions',
        'source',
        `${f.sessions.length} transaction${f.sessions.length > 1 ? 's have' : ' has'} been open for more than ${formatAge(f.thresholdSeconds)}: creating the replication slot waits until ${f.sessions.length > 1 ? 'they end' : 'it ends'}${hidden}`,
        `let ${f.sessions.length > 1 ? 'them' : 'it'} finish, or end ${f.sessions.length > 1 ? 'them' : 'it'}: ${f.sessions.map((s) => `SELECT pg_terminate_backend(${s.pid});`).join(' ')}`,
        {
          details: f.sessions.map(
            (s) => `pid ${s.pid}, open ${formatAge(s.ageSeconds)}, user ${s.user ?? '?'}, database ${s.database ?? '?'}, ${s.state ?? 'state hidden'}: ${maskQuery(s.query) ?? '(query hidden)'}`,
          ),
        },
      ),
    );
  } else {
    out.push(ok('source.long_transactions', 'source', `no transaction has been open for more than ${formatAge(f.thresholdSeconds)}${hidden}`));
  }
  if (f.prepared.length) {
    out.push(
      warn(
        'source.prepared_transactions',
        'source',
        `${f.prepared.length} prepared transaction${f.prepared.length > 1 ? 's' : ''} older than ${formatAge(f.thresholdSeconds)}: creating the replication slot waits until ${f.prepared.length > 1 ? 'they are' : 'it is'} committed or rolled back`,
        `${f.prepared.map((p) => `COMMIT PREPARED ${quoteLiteral(p.gid)};`).join(' ')}  -- or ROLLBACK PREPARED, in database ${[...new Set(f.prepared.map((p) => p.database))].join(', ')}`,
        { details: f.prepared.map((p) => `${p.gid} (owner ${p.owner}, database ${p.database}, prepared ${formatAge(p.ageSeconds)} ago)`) },
      ),
    );
  }
  return out;
}
