/** How a timestamp round plans a table: key, shared columns, the timestamp column (flag, file, per database), refusals. */
import { describe, expect, it } from 'vitest';
import type { ScopeTable } from '../../src/config/scope.js';
import type { CatalogColumn, CatalogTable } from '../../src/postgres/catalog/tables.js';
import { planTables, type TimestampColumns } from '../../src/pipeline/sync/timestamp/tables.js';
import type { PgferryError } from '../../src/errors.js';

function col(name: string, type: string, extra: Partial<CatalogColumn> = {}): CatalogColumn {
  return { name, type, typeOid: 0, notNull: false, notNullValid: false, generated: false, identity: false, ...extra };
}

function table(name: string, columns: CatalogColumn[], key: string[] | null, extra: Partial<ScopeTable> = {}): ScopeTable {
  return {
    oid: 1, schema: 'public', name, relkind: 'r', owner: 'o', unlogged: false, partitions: [], columns, primaryKey: key, uniqueKey: null,
    replicaIdentity: 'd', replicaIdentityColumns: key ?? [], estimatedRows: 0, bytes: 0, canSelect: true, isOwner: true,
    hasInheritanceChildren: false, schemaOnly: false, ...extra,
  } as ScopeTable;
}

const cols = (perTable: TimestampColumns['perTable'] = {}): TimestampColumns => ({ fallback: 'updated_at', perTable });

describe('planTables', () => {
  const items = table('items', [col('id', 'integer'), col('v', 'text'), col('updated_at', 'timestamp with time zone'), col('g', 'integer', { generated: true })], ['id']);
  const plain = table('plain', [col('id', 'bigint'), col('changed', 'timestamp without time zone')], ['id']);

  it('reads a table by its timestamp column and leaves generated columns out', () => {
    const [t] = planTables('shop', [items], [items as CatalogTable], {}, cols());
    expect(t!.timestamp).toEqual({ name: 'updated_at', withTimeZone: true });
    expect(t!.columns.map((c) => c.name)).toEqual(['id', 'v', 'updated_at']);
    expect(t!.key).toEqual([{ name: 'id', sourceType: 'integer', targetType: 'integer' }]);
  });

  it('compares a table without the column, and takes the column of the file per database, then the top level', () => {
    expect(planTables('shop', [plain], [plain], {}, cols())[0]!.compareReason).toBe('no column "updated_at"');
    const fromDb = planTables('shop', [plain], [plain], {}, cols({ shop: { 'public.plain': 'changed' }, '*': { plain: 'nope' } }))[0]!;
    expect(fromDb.timestamp).toEqual({ name: 'changed', withTimeZone: false });
    const fromTop = planTables('other', [plain], [plain], {}, cols({ shop: { 'public.plain': 'changed' }, '*': { plain: 'nope' } }))[0]!;
    expect(fromTop.compareReason).toBe('no column "nope"');
    const wrongType = planTables('shop', [plain], [plain], {}, { fallback: 'id', perTable: {} })[0]!;
    expect(wrongType.compareReason).toBe('column "id" is bigint, not a timestamp');
  });

  it('refuses keyless tables by name with the choices, and masked tables', () => {
    const nokey = table('nokey', [col('v', 'int')], null);
    const e = (() => { try { planTables('shop', [items, nokey], [items, nokey], {}, cols()); } catch (err) { return err; } })() as PgferryError;
    expect(e.exitCode).toBe(2);
    expect(e.message).toMatch(/public\.nokey|nokey/);
    expect(e.hint).toMatch(/exclude.*primary key.*logical replication/);
    const masked = table('masked', items.columns, ['id'], { masking: {} as never });
    expect(() => planTables('shop', [masked], [masked], {}, cols())).toThrow(/masking/);
  });

  it('takes the filter init recorded', () => {
    expect(planTables('shop', [items], [items], { 'public.items': 'v <> \'x\'' }, cols())[0]!.filter).toBe("v <> 'x'");
  });
});
