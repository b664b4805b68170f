import { beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import { runCliProcess } from '../support/cli.js';
import { useClusters } from '../support/clusters.js';

const DDL = `
  CREATE SCHEMA "Billing";
  CREATE SEQUENCE "Billing"."Invoice No" START 1000;
  CREATE SEQUENCE public.ahead;
  CREATE SEQUENCE public.never_called;
  CREATE SEQUENCE public.countdown INCREMENT -1;
  CREATE TABLE public.t (id serial PRIMARY KEY);
`;

describe('pgferry sequences', () => {
  const { start } = useClusters();
  let s: LocalCluster;
  let t: LocalCluster;
  const args = () => ['--source', s.url('app'), '--target', t.url('app')];

  beforeAll(async () => {
    [s, t] = await Promise.all([start({ name: 'seq-src' }), start({ name: 'seq-tgt' })]);
    for (const c of [s, t]) {
      await c.query('CREATE DATABASE app');
      await c.query(DDL, undefined, 'app');
    }
    await s.query(`SELECT setval('"Billing"."Invoice No"', 1500); SELECT setval('public.ahead', 10); INSERT INTO public.t SELECT FROM generate_series(1, 42);
      SELECT nextval('public.countdown') FROM generate_series(1, 30);`, undefined, 'app');
    // A descending sequence the target used a little already: its value there (-5) is behind the source's (-30).
    await t.query("SELECT nextval('public.countdown') FROM generate_series(1, 5)", undefined, 'app');
    await t.query("SELECT setval('public.ahead', 99)", undefined, 'app');
  });

  it('dry run changes nothing; a run moves target sequences forward only; a rerun is harmless', async () => {
    const dry = await runCliProcess(['sequences', '--dry-run', ...args()]);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toContain('"Billing"."Invoice No": unset → 1500');
    const [before] = await t.query<{ v: string }>(`SELECT last_value::text AS v FROM "Billing"."Invoice No"`, undefined, 'app');
    expect(before!.v).toBe('1000');

    const run = await runCliProcess(['sequences', ...args()]);
    expect(run.exitCode).toBe(0);
    const rows = await t.query<{ seq: string; v: string | null }>(
      `SELECT sequencename AS seq, last_value::text AS v FROM pg_sequences ORDER BY 1`,
      undefined,
      'app',
    );
    expect(Object.fromEntries(rows.map((r) => [r.seq, r.v]))).toEqual({ 'Invoice No': '1500', ahead: '99', countdown: '-30', never_called: null, t_id_seq: '42' });
    // The next value on the target continues after the source's (downwards for a descending one: before, it stayed at -5).
    const [next] = await t.query<{ n: string; d: string }>(`SELECT nextval('public.t_id_seq')::text AS n, nextval('public.countdown')::text AS d`, undefined, 'app');
    expect(next).toEqual({ n: '43', d: '-31' });

    const again = await runCliProcess(['sequences', '--json', ...args()]);
    expect(again.exitCode).toBe(0);
    const doc = JSON.parse(again.stdout) as { databases: { sequences: { name: string; action: string }[] }[] };
    expect(doc.databases[0]!.sequences.every((x) => x.action === 'unchanged')).toBe(true);
  });

  it('exits 1 naming a sequence that is missing on the target', async () => {
    await s.query('CREATE SEQUENCE public.only_on_source', undefined, 'app');
    const r = await runCliProcess(['sequences', ...args()]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toContain('public.only_on_source: missing on the target');
  });
});
