/** The pure parts of status and sync: health and verdict from collected facts, lag NULL semantics, subscription options. */
import { describe, expect, it } from 'vitest';
import type { PairFacts } from '../../src/pipeline/shared/health-facts.js';
import { assess, DEFAULT_MAX_LAG, verdict } from '../../src/pipeline/shared/health-verdict.js';
import type { SourceSlot } from '../../src/pipeline/shared/replication-catalog.js';
import { chooseBinary, chooseStreaming, subscriptionConninfo } from '../../src/pipeline/shared/subscription.js';
import { parseConnInfo, resolveConnInfo } from '../../src/postgres/conninfo.js';

const NAMES = { slot: 'pgferry_shop_0123456789', publication: 'pgferry_shop_0123456789', subscription: 'pgferry_shop_0123456789', origin: 'pgferry_shop_0123456789' };
const SYSID = '7300000000000000001';

function slot(over: Partial<SourceSlot> = {}): SourceSlot {
  return {
    name: NAMES.slot, plugin: 'pgoutput', database: 'shop', active: true, activePid: 42, walStatus: 'reserved', confirmedFlushLsn: '0/3000000',
    restartLsn: '0/2FFFF00', retainedBytes: 256, lagBytes: 0, walsenderState: 'streaming', replayLagSeconds: null, ...over,
  };
}

function facts(over: { slots?: SourceSlot[]; sub?: Partial<PairFacts['target']['subscriptions'][number]> | null; publication?: boolean } = {}): PairFacts {
  const sub = over.sub === null ? [] : [{
    oid: 16400, name: NAMES.subscription, enabled: true, slotName: NAMES.slot,
    worker: { pid: 99, receivedLsn: '0/3000000', latestEndLsn: '0/3000000', lastMessageAt: null }, syncWorkers: 0, applyErrors: 0, syncErrors: 0,
    tables: [{ oid: 16500, schema: 'public', name: 'orders', state: 'r' as const }, { oid: 16501, schema: 'public', name: 'items', state: 'r' as const }],
    ...(over.sub ?? {}),
  }];
  return {
    pair: { sourceDatabase: 'shop', targetDatabase: 'shop', sourceConn: undefined as never, targetConn: undefined as never, names: NAMES },
    source: { currentLsn: '0/3000000', slots: over.slots ?? [slot()], publication: { exists: over.publication ?? true, tables: 2 } },
    target: { subscriptions: sub, allSubscriptionOids: sub.map((s) => s.oid), major: 17 },
  };
}

describe('status verdict', () => {
  it('healthy: a NULL replay lag from a streaming walsender is caught up, not behind', () => {
    const d = assess(facts(), SYSID, DEFAULT_MAX_LAG);
    expect(d.health).toBe('healthy');
    expect(d.lag).toEqual({ bytes: 0, seconds: 0 });
    expect(verdict([d])).toEqual({ health: 'healthy', exitCode: 0, text: 'in sync · lag 0 B / 0.0 s' });
  });

  it('lagging over --max-lag in bytes or seconds, healthy within it', () => {
    const behind = facts({ slots: [slot({ lagBytes: 40 * 1024 * 1024, replayLagSeconds: 3.25 })] });
    const d = assess(behind, SYSID, DEFAULT_MAX_LAG);
    expect(d.health).toBe('lagging');
    const v = verdict([d]);
    expect(v.exitCode).toBe(1);
    expect(v.text).toBe('lagging · behind by 40.0 MB / 3.3 s (limit 16.0 MB / 30.0 s) — wait and check again; if it keeps growing, the target applies more slowly than the source writes · lag 40.0 MB / 3.3 s');
    expect(assess(behind, SYSID, { bytes: null, seconds: 60 }).health).toBe('healthy');
    expect(assess(facts({ slots: [slot({ replayLagSeconds: 45 })] }), SYSID, { bytes: null, seconds: 30 }).health).toBe('lagging');
  });

  it('lagging while tables synchronise', () => {
    const d = assess(facts({ sub: { tables: [{ oid: 1, schema: 'public', name: 'orders', state: 'd' }, { oid: 2, schema: 'public', name: 'items', state: 'r' }] } }), SYSID, DEFAULT_MAX_LAG);
    expect(d.health).toBe('lagging');
    expect(d.tables).toMatchObject({ total: 2, replicating: 1, synchronising: 1 });
    expect(verdict([d]).text).toMatch(/^lagging · 1 of 2 tables are still synchronising: public\.orders \(copying\)/);
  });

  it('broken: subscription missing, slot missing, disabled, worker down, slot lost', () => {
    const cases: [PairFacts, RegExp][] = [
      [facts({ sub: null }), /subscription \S+ does not exist .* run pgferry sync/],
      [facts({ sub: null, slots: [], publication: false }), /no replication is set up .* run pgferry init, then pgferry sync/],
      [facts({ slots: [] }), /replication slot \S+ is missing on the source/],
      [facts({ sub: { enabled: false }, slots: [slot({ active: false, walsenderState: null })] }), /is disabled/],
      [facts({ sub: { worker: null, applyErrors: 3 } }), /apply worker .* is not running \(3 apply errors\)/],
      [facts({ slots: [slot({ walStatus: 'lost' })] }), /lost WAL/],
    ];
    for (const [f, re] of cases) {
      const d = assess(f, SYSID, DEFAULT_MAX_LAG);
      expect(d.health).toBe('broken');
      const v = verdict([d]);
      expect(v.exitCode).toBe(2);
      expect(v.text).toMatch(/^BROKEN · /);
      expect(v.text).toMatch(re);
    }
  });

  it('past errors of a running worker are a warning, not a break', () => {
    const d = assess(facts({ sub: { applyErrors: 2 } }), SYSID, DEFAULT_MAX_LAG);
    expect(d.health).toBe('healthy');
    expect(d.problems).toEqual([expect.objectContaining({ level: 'warning', message: expect.stringMatching(/2 apply errors/) })]);
  });

  it('leftovers: table-sync slots of ours for finished tables, of vanished subscriptions; never those of other servers or active ones', () => {
    const ts = (name: string, over: Partial<SourceSlot> = {}) => slot({ name, active: false, activePid: null, walsenderState: null, ...over });
    const d = assess(
      facts({
        slots: [
          slot(),
          ts(`pg_16400_sync_16500_${SYSID}`), // ours, table already replicating: orphan
          ts(`pg_16400_sync_16501_${SYSID}`, { active: true }), // in use: not an orphan
          ts(`pg_15000_sync_16500_${SYSID}`), // subscription gone from the target: orphan
          ts('pg_15000_sync_16500_999'), // another subscriber server: not ours to judge
          ts('pgferry_other_abcdef0123'), // a pgferry slot no subscription here uses
        ],
      }),
      SYSID,
      DEFAULT_MAX_LAG,
    );
    expect(d.leftovers.map((l) => [l.kind, l.name])).toEqual([
      ['tablesync-slot', `pg_16400_sync_16500_${SYSID}`],
      ['tablesync-slot', `pg_15000_sync_16500_${SYSID}`],
      ['slot', 'pgferry_other_abcdef0123'],
    ]);
    expect(d.health).toBe('healthy');
  });

  it('several databases: the worst decides, and the verdict names the database', () => {
    const ok = assess(facts(), SYSID, DEFAULT_MAX_LAG);
    const bad = { ...assess(facts({ slots: [] }), SYSID, DEFAULT_MAX_LAG), sourceDatabase: 'crm' };
    const v = verdict([ok, bad]);
    expect(v.exitCode).toBe(2);
    expect(v.text).toMatch(/^BROKEN · crm: replication slot/);
  });
});

describe('subscription options', () => {
  it('binary only between 14+ servers, not to an older target, and only for built-in types', () => {
    expect(chooseBinary(15, 17, [23, 25, 1184])).toBe(true);
    expect(chooseBinary(13, 17, [23])).toBe(false);
    expect(chooseBinary(16, 15, [23])).toBe(false);
    expect(chooseBinary(15, 15, [23, 16390])).toBe(false);
  });

  it('streaming: parallel on 16+, on from 14, off before', () => {
    expect(chooseStreaming(16, 17)).toBe('parallel');
    expect(chooseStreaming(15, 17)).toBe('on');
    expect(chooseStreaming(13, 17)).toBeNull();
  });

  it('the connection string: the source password unless --subscription-conninfo replaces it; dbname per database', () => {
    const src = resolveConnInfo(parseConnInfo('postgresql://app:s3cret@old-db:5433/shop?sslmode=require'), {});
    const def = subscriptionConninfo(src, 'crm');
    expect(def).toMatchObject({ hasPassword: true, custom: false });
    expect(def.conninfo).toMatch(/host=old-db/);
    expect(def.conninfo).toMatch(/port=5433/);
    expect(def.conninfo).toMatch(/dbname=crm/);
    expect(def.conninfo).toMatch(/password=s3cret/);
    const custom = subscriptionConninfo(src, 'crm', 'host=10.0.0.5 user=replicator');
    expect(custom).toMatchObject({ hasPassword: false, custom: true });
    expect(custom.conninfo).toBe(
      "host=10.0.0.5 dbname=crm user=replicator options='-c row_security=off -c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0'",
    );
    // The walsender gets pgferry's session defaults too, before options of the connection string.
    expect(subscriptionConninfo(src, 'crm', "host=h options='-c work_mem=1MB'").conninfo).toMatch(/options='-c row_security=off .* -c work_mem=1MB'$/);
  });
});
