/**
 * Rows of small tables read ahead. While the pre-data section is restored (one
 * target session, for seconds on a schema of many tables) the source has
 * nothing to do; a session under the copy's snapshot then reads the COPY output
 * of the smallest tables into memory, up to a bound, and the data phase writes
 * those parts from memory instead of reading them again (copy-part.ts).
 * pg_dump + pg_restore cannot overlap the two; pgferry can.
 *
 * A part read ahead is used only when the data phase's plan asks the source for
 * the very same statement, under the same snapshot: the rows are then the ones
 * it would have read. Reading stops when the data phase starts (the part being
 * read is finished first); a failure here only means the data phase reads
 * everything itself.
 */
import type pg from 'pg';
import type { ResolvedConnInfo } from '../../postgres/conninfo.js';
import { copyOutFrames } from './copy-frames.js';
import { copyOutSql, readyForQuery } from './copy-part.js';
import { planCopy, type CopyPlanOptions, type CopyTableInput } from './copy-plan.js';
import { killClient, openSource } from './copy-session.js';

/** One part's COPY output as the relay passes it on (CopyData frames), with the statement that produced it. */
export interface ReadAheadPart {
  sql: string;
  frames: Buffer[];
  rows: number;
  bytes: number;
}

export interface ReadAhead {
  /** The part's rows if they were read ahead by exactly `sql`; a part is handed out once. */
  take(partId: string, sql: string): ReadAheadPart | undefined;
  /** Stop reading (the part being read finishes first) and close the session. */
  stop(): Promise<void>;
  /** Stop at once (the session is closed under the part being read) and let go of what was not taken. */
  kill(): Promise<void>;
  /** Parts handed out so far. */
  readonly used: number;
}

/** Memory held by parts read ahead, at most. */
export const READ_AHEAD_MAX_BYTES = 64 * 1024 ** 2;
/** Only relations estimated below this are read ahead (they are copied last, largest first, and held until then). */
export const READ_AHEAD_PART_MAX_BYTES = 1024 ** 2;

export interface ReadAheadOptions {
  source: ResolvedConnInfo;
  snapshot: string;
  tables: readonly CopyTableInput[];
  plan: CopyPlanOptions;
  maxBytes?: number;
}

export function startReadAhead(o: ReadAheadOptions): ReadAhead {
  const ready = new Map<string, ReadAheadPart>();
  let stopping = false;
  let used = 0;
  let session: pg.Client | undefined;
  const run = (async () => {
    const src = await openSource(o.source, o.snapshot);
    session = src;
    if (stopping) killClient(src);
    try {
      const plans = await planCopy(src, o.tables, o.plan);
      // In the data phase's order (largest first), so that the first parts it takes are the first read.
      const wanted = plans
        .flatMap((plan) => plan.parts.filter((part) => part.count === 1 && part.range === null && part.estimatedBytes <= READ_AHEAD_PART_MAX_BYTES).map((part) => ({ plan, part })))
        .sort((a, b) => b.part.estimatedBytes - a.part.estimatedBytes);
      let held = 0;
      for (const { plan, part } of wanted) {
        if (stopping || held + part.estimatedBytes > (o.maxBytes ?? READ_AHEAD_MAX_BYTES)) break;
        const sql = copyOutSql(part.relation, plan.columns, plan.format, plan.filter, null, plan.select);
        const stream = src.query(copyOutFrames(sql));
        const done = readyForQuery(src, stream);
        const frames: Buffer[] = [];
        let bytes = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          frames.push(chunk);
          bytes += chunk.length;
        }
        await done;
        ready.set(part.id, { sql, frames, rows: stream.rowCount, bytes });
        held += bytes;
      }
    } finally {
      await src.query('COMMIT').catch(() => {});
      await src.end().catch(() => {});
    }
  })();
  run.catch(() => {});
  return {
    take(partId, sql) {
      const p = ready.get(partId);
      if (!p || p.sql !== sql) return undefined;
      ready.delete(partId);
      used++;
      return p;
    },
    async stop() {
      stopping = true;
      await run.catch(() => {});
    },
    async kill() {
      stopping = true;
      if (session) killClient(session);
      await run.catch(() => {});
      ready.clear(); // what was not taken is let go
    },
    get used() {
      return used;
    },
  };
}
