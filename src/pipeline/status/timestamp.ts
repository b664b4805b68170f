/**
 * `status` of the timestamp method: read from the target's pgferry schema
 * (shared/timestamp-state.ts), per table the age of its mark (how far back
 * the next round reads: roughly the time since the last round began) and the
 * last round's counts. Healthy when every mark is younger than --max-lag
 * (seconds), lagging otherwise, broken without state.
 */
import { emptyScope, type ScopeSpec } from '../../config/scope.js';
import { withClient } from '../../postgres/connect.js';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { displayName } from '../../postgres/identifiers.js';
import { loadState } from '../../state/checkpoint.js';
import { resolvePairs } from '../shared/pairs.js';
import { HEALTH_EXIT, type Health } from '../shared/health-verdict.js';
import { lastRound, readMarks, type RoundRecord, type TableMark } from '../shared/timestamp-state.js';

/** Marks older than this are lagging when --max-lag gives no time: a few rounds of a typical --interval. */
import { TIMESTAMP_DEFAULT_MAX_LAG_SECONDS } from './defaults.js';

export { TIMESTAMP_DEFAULT_MAX_LAG_SECONDS };

export interface TimestampStatusOptions {
  source: ResolvedConnInfo;
  target: ResolvedConnInfo;
  stateDir: string;
  scope?: ScopeSpec | undefined;
  maxLagSeconds?: number | undefined;
}

export interface TimestampDatabaseStatus {
  sourceDatabase: string;
  targetDatabase: string;
  health: Health;
  lastRound: RoundRecord | null;
  /** Age of the oldest mark, seconds (null without marks). */
  lagSeconds: number | null;
  tables: TableMark[];
  problems: string[];
}

export interface TimestampStatusReport {
  command: 'status';
  method: 'timestamp';
  checkedAt: string;
  health: Health;
  exitCode: 0 | 1 | 2;
  verdict: string;
  maxLagSeconds: number;
  databases: TimestampDatabaseStatus[];
  seconds: number;
}

/** Whether the state directory holds an init --method timestamp. */
export async function stateMethod(stateDir: string): Promise<'logical' | 'timestamp' | null> {
  const s = await loadState(stateDir);
  return s ? (s.options.method ?? 'logical') : null;
}

const ORDER: Health[] = ['healthy', 'lagging', 'broken'];

export async function runTimestampStatus(o: TimestampStatusOptions): Promise<TimestampStatusReport> {
  const started = performance.now();
  const maxLag = o.maxLagSeconds ?? TIMESTAMP_DEFAULT_MAX_LAG_SECONDS;
  const state = await loadState(o.stateDir);
  const { pairs } = await resolvePairs(o.source, o.target, o.scope ?? state?.scope ?? emptyScope(), state, o.stateDir);
  const databases: TimestampDatabaseStatus[] = [];
  for (const p of pairs) {
    const { tables, round } = await withClient(p.targetConn, async (c) => ({ tables: await readMarks(c), round: await lastRound(c) }), { label: 'the target' });
    const problems: string[] = [];
    let health: Health = 'healthy';
    const lag = tables.length ? Math.max(...tables.map((t) => t.ageSeconds)) : null;
    if (!tables.length) {
      health = 'broken';
      problems.push(`no timestamp state in target database "${p.targetDatabase}": run pgferry init --method timestamp, then sync --method timestamp`);
    } else if (lag! > maxLag) {
      health = 'lagging';
      const old = tables.filter((t) => t.ageSeconds > maxLag).map((t) => displayName(t.schema, t.name));
      problems.push(`${old.length} table mark${old.length > 1 ? 's are' : ' is'} older than ${maxLag}s (${old.slice(0, 5).join(', ')}${old.length > 5 ? ', …' : ''}): run a round (sync --method timestamp)`);
    }
    databases.push({ sourceDatabase: p.sourceDatabase, targetDatabase: p.targetDatabase, health, lastRound: round, lagSeconds: lag, tables, problems });
  }
  const health = databases.reduce<Health>((h, d) => (ORDER.indexOf(d.health) > ORDER.indexOf(h) ? d.health : h), 'healthy');
  const worst = databases.length ? Math.max(...databases.map((d) => d.lagSeconds ?? 0)) : 0;
  const verdict = health === 'broken' ? 'broken: no timestamp state' : `${health === 'healthy' ? 'in sync' : 'lagging'} · marks up to ${worst.toFixed(1)} s old (max ${maxLag} s)`;
  return {
    command: 'status', method: 'timestamp', checkedAt: new Date().toISOString(), health, exitCode: HEALTH_EXIT[health], verdict, maxLagSeconds: maxLag,
    databases, seconds: (performance.now() - started) / 1000,
  };
}
