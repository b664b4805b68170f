/**
 * Filters from a configuration file, checked by `pgferry validate` before
 * anything is created: a volatile predicate, a predicate outside the replica
 * identity, and a filter or exclusion that would break a foreign key among
 * the copied tables all fail; a consistent set passes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/local/cluster.js';
import type { CheckResult } from '../../src/pipeline/validate/types.js';
import { runCliProcess } from '../support/cli.js';
import { createDatabase, useClusters } from '../support/clusters.js';

const SCHEMA = `
CREATE TABLE customers (id bigint PRIMARY KEY, region text NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, created_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE orders REPLICA IDENTITY FULL;
CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz NOT NULL);
CREATE TABLE notes (id bigint PRIMARY KEY, author text);
INSERT INTO customers SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 200) g;
INSERT INTO orders SELECT g, 1 + g % 200 FROM generate_series(1, 600) g;
`;

interface ValidateDoc {
  checks: CheckResult[];
  exitCode: number;
}

describe('filters from --config, checked by validate', () => {
  const clusters = useClusters();
  let source: LocalCluster;
  let target: LocalCluster;
  let db: string;
  let dir: string;

  beforeAll(async () => {
    [source, target] = await Promise.all([clusters.start({ name: 'filters-src' }), clusters.start({ name: 'filters-tgt' })]);
    db = await createDatabase(source, undefined, SCHEMA);
    dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-filters-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function validate(toml: string | undefined, extra: string[] = []): Promise<ValidateDoc> {
    const args = ['validate', '--source', source.url(db), '--target', target.url(db), '--json', ...extra];
    if (toml !== undefined) {
      const file = path.join(dir, `f${Math.random().toString(36).slice(2)}.toml`);
      writeFileSync(file, toml);
      args.push('--config', file);
    }
    const r = await runCliProcess(args);
    expect(r.stdout, r.stderr).toMatch(/^\{/);
    return JSON.parse(r.stdout) as ValidateDoc;
  }
  const failures = (d: ValidateDoc, id: string) => d.checks.filter((c) => c.id === id && c.status === 'fail');

  it('a volatile predicate, a column outside the replica identity, and a filtered parent each fail with a fix', async () => {
    const doc = await validate(`
[[table_filters]]
table = "events"
where = "at > now() - interval '1 day'"

[[table_filters]]
table = "notes"
where = "author = 'ann'"

[[table_filters]]
table = "customers"
where = "region = 'eu'"
`);
    expect(doc.exitCode).toBe(1);
    const rowFilters = failures(doc, 'tables.row_filter');
    const events = rowFilters.find((c) => c.message.includes('public.events'))!;
    expect(events.message).toContain('is not accepted');
    expect(events.fix).toMatch(/immutable/);
    const notes = rowFilters.find((c) => c.message.includes('public.notes'))!;
    expect(notes.message).toContain('not part of the replica identity');
    expect(notes.fix).toContain('REPLICA IDENTITY FULL');
    // customers keeps only 'eu' rows (region is not its key either) — and orders still points at the others
    const fk = failures(doc, 'tables.foreign_keys');
    expect(fk).toHaveLength(1);
    expect(fk[0]!.message).toMatch(/foreign key "orders_customer_id_fkey" on public\.orders references public\.customers, but the filter on public\.customers leaves out rows that public\.orders keeps/);
    expect(fk[0]!.fix).toContain('--fk-not-valid');
  });

  it('filters that keep the foreign key satisfied pass', async () => {
    const doc = await validate(`
[[table_filters]]
table = "customers"
where = "id <= 100"

[[table_filters]]
table = "orders"
where = "customer_id <= 100"
`);
    expect(failures(doc, 'tables.row_filter')).toEqual([]);
    const fk = doc.checks.filter((c) => c.id === 'tables.foreign_keys');
    expect(fk).toEqual([expect.objectContaining({ status: 'ok', message: expect.stringContaining('stay satisfied') })]);
  });

  it('leaving out a referenced table fails naming the key', async () => {
    const doc = await validate(undefined, ['--exclude-tables', 'public.customers']);
    const fk = failures(doc, 'tables.foreign_keys');
    expect(fk).toHaveLength(1);
    expect(fk[0]!.message).toContain('which is excluded from the scope');
  });
});
