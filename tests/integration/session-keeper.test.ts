import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { CANONICAL_SETTINGS, withClient, type Client } from '../../src/postgres/connect.js';
import { parseConnInfo, resolveConnInfo, type ResolvedConnInfo } from '../../src/postgres/conninfo.js';
import { keepingSessions, sessionKeeper } from '../../src/postgres/session-keeper.js';
import { exportSnapshot } from '../../src/pipeline/shared/slot.js';
import { createDatabase, useClusters } from '../support/clusters.js';
import { waitFor } from '../support/wait.js';

const { start } = useClusters();
let pg: LocalCluster;
let conn: ResolvedConnInfo;

beforeAll(async () => {
  pg = await start({ name: 'keeper' });
  const db = await createDatabase(pg);
  conn = resolveConnInfo(parseConnInfo(pg.url(db)), { HOME: '/nonexistent' });
});

const pid = (c: Client) => c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((r) => r.rows[0]!.pid);
const alive = async (p: number) => (await pg.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1`, [p]))[0]!.n === 1;

describe('sessions kept for one command', () => {
  it('hands a session back out, reset: settings, temporary tables and prepared statements do not carry over', async () => {
    await keepingSessions(async () => {
      const first = await withClient(conn, async (c) => {
        await c.query("SET application_name = 'changed'");
        await c.query("SET search_path = ''");
        await c.query('CREATE TEMP TABLE scratch (x int)');
        await c.query('PREPARE p AS SELECT 1');
        await c.query('SELECT pg_advisory_lock(42)');
        return pid(c);
      });
      const second = await withClient(conn, async (c) => {
        const { rows } = await c.query<{ app: string; path: string; temp: string | null; prepared: number; locks: number }>(
          `SELECT current_setting('application_name') AS app, current_setting('search_path') AS path,
                  to_regclass('pg_temp.scratch')::text AS temp, (SELECT count(*)::int FROM pg_prepared_statements) AS prepared,
                  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks`,
        );
        return { pid: await pid(c), ...rows[0]! };
      });
      expect(second.pid).toBe(first);
      expect(second).toMatchObject({ app: 'pgferry', path: '"$user", public', temp: null, prepared: 0, locks: 0 });
    });
  });

  it('never hands out a session left in a transaction, after an error, or with other startup settings', async () => {
    await keepingSessions(async () => {
      const open = await withClient(conn, async (c) => {
        await c.query('BEGIN');
        return pid(c);
      });
      const failed = await withClient(conn, pid);
      await expect(
        withClient(conn, async (c) => {
          await c.query('SELECT 1');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      const canonical = await withClient(conn, pid, { settings: { ...CANONICAL_SETTINGS } });
      const again = await withClient(conn, pid);
      expect(failed).not.toBe(open);
      expect(canonical).not.toBe(failed);
      // `failed` was kept, then its session was taken by the throwing call and closed; `again` is new.
      expect(again).not.toBe(failed);
      // The kept canonical session again: its startup settings outlive DISCARD ALL.
      const tz = await withClient(
        conn,
        async (c) => ({ pid: await pid(c), tz: (await c.query<{ tz: string }>("SELECT current_setting('TimeZone') AS tz")).rows[0]!.tz }),
        { settings: { ...CANONICAL_SETTINGS } },
      );
      expect(tz).toEqual({ pid: canonical, tz: 'UTC' });
      await waitFor('the session left in a transaction to close', async () => !(await alive(open)), 10_000, 50);
    });
  });

  it('closes every kept session when the command ends, and one that idles past the limit', async () => {
    const pids: number[] = [];
    await keepingSessions(
      async () => {
        pids.push(await withClient(conn, pid));
        await waitFor('the idle session to close', async () => !(await alive(pids[0]!)), 10_000, 50);
        pids.push(await withClient(conn, pid));
        expect(pids[1]).not.toBe(pids[0]);
        // Two at once: two sessions, both kept.
        pids.push(...(await Promise.all([withClient(conn, pid), withClient(conn, pid)])));
      },
      { maxIdleMs: 300 },
    );
    await waitFor('every kept session to close', async () => !(await Promise.all(pids.map(alive))).some(Boolean), 10_000, 50);
    expect(sessionKeeper()).toBeUndefined();
  });

  it('connects again when a kept session was ended by the server', async () => {
    await keepingSessions(async () => {
      const first = await withClient(conn, pid);
      await pg.query(`SELECT pg_terminate_backend(${first})`);
      await waitFor('the terminated session to go', async () => !(await alive(first)), 10_000, 50);
      await new Promise((r) => setTimeout(r, 100));
      const second = await withClient(conn, pid);
      expect(second).not.toBe(first);
    });
  });

  it('a snapshot exported on a kept session outlives the database\'s idle-in-transaction timeout, and the session comes back reset', async () => {
    const db = await createDatabase(pg);
    await pg.query(`ALTER DATABASE ${db} SET idle_in_transaction_session_timeout = '300ms'`);
    const c2 = resolveConnInfo(parseConnInfo(pg.url(db)), { HOME: '/nonexistent' });
    const setting = (c: Client) => c.query<{ v: string }>("SELECT current_setting('idle_in_transaction_session_timeout') AS v").then((r) => r.rows[0]!.v);
    await keepingSessions(async () => {
      // A setting made by one user of a kept session is gone for the next (DISCARD ALL).
      const kept = await withClient(c2, async (c) => {
        await c.query("SET work_mem = '7MB'");
        return pid(c);
      });
      const h = await exportSnapshot(c2);
      await new Promise((r) => setTimeout(r, 1000));
      const imported = await withClient(c2, async (c) => {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await c.query(`SET TRANSACTION SNAPSHOT '${h.snapshotName}'`);
        await c.query('COMMIT');
        return pid(c);
      });
      expect(imported).not.toBe(kept); // the holder has the kept session
      await h.release();
      const again = await withClient(c2, async (c) => ({ pid: await pid(c), v: await setting(c), wm: await c.query<{ w: string }>('SHOW work_mem').then((r) => r.rows[0]!.w) }));
      // Back to what the session started with: pgferry's sessions carry none of the database's limits (session-defaults.ts).
      expect(again.v).toBe('0');
      expect(again.wm).toBe(await pg.query<{ w: string }>('SHOW work_mem').then((r) => r[0]!.w));
      expect([kept, imported]).toContain(again.pid);
    });
  });

  it('outside a command every withClient has its own session', async () => {
    const a = await withClient(conn, pid);
    const b = await withClient(conn, pid);
    expect(a).not.toBe(b);
  });
});
