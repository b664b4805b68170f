/** The statements that carry a database's settings, privileges and comment (pure); tests/integration/init.test.ts applies them. */
import { describe, expect, it } from 'vitest';
import { propertyChanges, propertyStatements, settingStatement } from '../../src/pipeline/shared/database-properties.js';
import { splitSettingList } from '../../src/postgres/setting-lists.js';

describe('database properties', () => {
  it('splits a list setting as PostgreSQL stores it', () => {
    expect(splitSettingList('"$user", public')).toEqual(['$user', 'public']);
    expect(splitSettingList('app,  "My ""odd"" schema" ,public')).toEqual(['app', 'My "odd" schema', 'public']);
    expect(splitSettingList('')).toEqual([]);
  });

  it('quotes each element of a list setting and the whole value of any other', () => {
    expect(settingStatement('app db', null, 'search_path="$user", public')).toBe(`ALTER DATABASE "app db" SET "search_path" TO '$user', 'public'`);
    expect(settingStatement('app', 'reader', "statement_timeout=5min")).toBe(`ALTER ROLE "reader" IN DATABASE "app" SET "statement_timeout" TO '5min'`);
    // A value with a quote, and one with '=' in it.
    expect(settingStatement('app', null, "application_name=it's=1")).toBe(`ALTER DATABASE "app" SET "application_name" TO 'it''s=1'`);
  });

  it('revokes what PUBLIC lacks, grants the others, leaves the owner alone, and nothing of it with --no-privileges', () => {
    const extras = {
      owner: 'postgres', connectionLimit: 50, comment: 'orders',
      privileges: [
        { grantee: 'PUBLIC', privilege: 'TEMPORARY', grantable: false },
        { grantee: 'postgres', privilege: 'CONNECT', grantable: false },
        { grantee: 'app', privilege: 'CONNECT', grantable: false },
        { grantee: 'admin', privilege: 'CREATE', grantable: true },
      ],
      settings: [{ role: null, setting: 'TimeZone=UTC' }],
    };
    expect(propertyStatements('shop', extras, { noPrivileges: false }).map((s) => s.sql)).toEqual([
      'ALTER DATABASE "shop" CONNECTION LIMIT 50',
      `COMMENT ON DATABASE "shop" IS 'orders'`,
      'REVOKE CONNECT ON DATABASE "shop" FROM PUBLIC',
      'GRANT CONNECT ON DATABASE "shop" TO "app"',
      'GRANT CREATE ON DATABASE "shop" TO "admin" WITH GRANT OPTION',
      `ALTER DATABASE "shop" SET "TimeZone" TO 'UTC'`,
    ]);
    expect(propertyStatements('shop', extras, { noPrivileges: true }).map((s) => s.sql)).toHaveLength(3);
    // Default privileges (datacl NULL), no limit, comment or setting: nothing to do.
    expect(propertyStatements('shop', { owner: 'postgres', connectionLimit: -1, comment: null, privileges: null, settings: [] }, { noPrivileges: false })).toEqual([]);
  });

  it("brings a target to what changed on the source since: settings set again, the target's own left alone, privileges matched", () => {
    const source = {
      owner: 'postgres', connectionLimit: -1, comment: null,
      privileges: [{ grantee: 'app', privilege: 'CONNECT', grantable: false }, { grantee: 'postgres', privilege: 'CONNECT', grantable: false }],
      settings: [{ role: null, setting: 'work_mem=8MB' }, { role: 'app', setting: 'search_path=app' }, { role: null, setting: 'TimeZone=UTC' }],
    };
    const target = {
      owner: 'migrator', connectionLimit: 40, comment: 'old',
      privileges: null, // PUBLIC's defaults
      settings: [{ role: null, setting: 'work_mem=4MB' }, { role: null, setting: 'TimeZone=UTC' }, { role: null, setting: 'maintenance_work_mem=1GB' }],
    };
    const c = propertyChanges('shop', source, target, { privileges: true });
    expect(c.statements.map((x) => x.sql)).toEqual([
      'ALTER DATABASE "shop" CONNECTION LIMIT -1',
      'COMMENT ON DATABASE "shop" IS NULL',
      'REVOKE CONNECT ON DATABASE "shop" FROM PUBLIC',
      'REVOKE TEMPORARY ON DATABASE "shop" FROM PUBLIC',
      'GRANT CONNECT ON DATABASE "shop" TO "app"',
      `ALTER DATABASE "shop" SET "work_mem" TO '8MB'`,
      `ALTER ROLE "app" IN DATABASE "shop" SET "search_path" TO 'app'`,
    ]);
    expect(c.leftAlone).toEqual(['maintenance_work_mem']);
    // Privileges only as read before the fence: without them, the rest.
    expect(propertyChanges('shop', source, target, { privileges: false }).statements).toHaveLength(4);
    expect(propertyChanges('shop', source, source, { privileges: true })).toEqual({ statements: [], leftAlone: [] });
  });
});
