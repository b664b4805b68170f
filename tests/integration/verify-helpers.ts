/** Shared pieces of the verify tests: the rich fixture loaded on a cluster, and verify() options. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { LocalCluster } from '../../src/local/cluster.js';
import { emptyScope, type ScopeSpec } from '../../src/config/scope.js';
import { verify, VERIFY_DEFAULTS, type VerifyOptions, type VerifyReport } from '../../src/pipeline/verify/index.js';
import { createDatabase, uniqueDbName } from '../support/clusters.js';
import { repoRoot } from '../support/cli.js';

export const RICH_SCHEMA = readFileSync(path.join(repoRoot, 'tests/fixtures/rich-schema.sql'), 'utf8');

/** A new database holding the rich fixture (deterministic: two loads are equal). */
export async function richDatabase(c: LocalCluster, name = uniqueDbName('verify')): Promise<string> {
  await createDatabase(c, name, RICH_SCHEMA);
  return name;
}

export function runVerify(
  source: LocalCluster,
  sourceDb: string,
  target: LocalCluster,
  targetDb: string,
  extra: Partial<VerifyOptions> = {},
): Promise<VerifyReport> {
  const scope: ScopeSpec = extra.scope ?? emptyScope();
  return verify({
    source: source.conn(sourceDb),
    target: target.conn(targetDb),
    scope,
    jobs: 2,
    chunkRows: 500,
    maxDiffs: VERIFY_DEFAULTS.maxDiffs,
    recheck: VERIFY_DEFAULTS.recheck,
    lagTimeoutMs: 20_000,
    sequences: true,
    ...extra,
  });
}

/** Table report by "schema.name". */
export function table(report: VerifyReport, schema: string, name: string) {
  const t = report.databases.flatMap((d) => d.tables).find((x) => x.schema === schema && x.name === name);
  if (!t) throw new Error(`no report for ${schema}.${name}`);
  return t;
}

/** Every table that is not equal, with its problems, for readable assertion failures. */
export function unequal(report: VerifyReport): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const t of report.databases.flatMap((d) => d.tables)) {
    if (t.status !== 'equal') out[`${t.schema}.${t.name}`] = { status: t.status, diffs: t.diffs, schema: t.schemaDifferences, notes: t.notes, error: t.error };
  }
  return out;
}

/** The next larger double: changes only the last digit of its shortest text form. */
export function nextDouble(text: string): string {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Number(text));
  view.setBigUint64(0, view.getBigUint64(0) + (Number(text) >= 0 ? 1n : -1n));
  return String(view.getFloat64(0));
}
