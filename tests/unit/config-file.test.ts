import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import yargs, { type Argv } from 'yargs';
import { createContext } from '../../src/cli/context.js';
import { jobsOption, withGlobalOptions, type GlobalArgs } from '../../src/cli/options.js';
import { scopeSpecFromArgs } from '../../src/cli/scope-options.js';
import { didYouMean } from '../../src/config/did-you-mean.js';
import { CONFIG_KEYS, loadConfigFile, parseConfigText } from '../../src/config/file.js';
import { applyScopeFlags, parseMaxLag, pickSetting } from '../../src/config/precedence.js';
import { rulesFor, scopeFromFlags, scopeHash } from '../../src/config/scope.js';
import { UsageError } from '../../src/errors.js';
import { repoRoot } from '../support/cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'pgferry-config-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function writeConfig(text: string): string {
  const file = path.join(dir, `c${++n}.toml`);
  writeFileSync(file, text, { mode: 0o600 });
  return file;
}

/** The UsageError a bad file produces (fails the test when it loads). */
function errorOf(text: string): UsageError {
  try {
    parseConfigText(text, 'bad.toml');
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('the file was accepted');
}

function args(extra: Partial<GlobalArgs> & Record<string, unknown> = {}): GlobalArgs {
  return { stateDir: undefined as unknown as string, json: false, verbose: false, quiet: true, yes: false, ...extra };
}

describe('configuration file: the format', () => {
  it('loads the per-database layout into the same ScopeSpec that flags build', () => {
    const cfg = parseConfigText(
      `include_databases = ["shop"]
[databases.shop]
schema_only = ["evmlog_strides", "price"]
[[databases.shop.table_filters]]
table = "output"
where = "series_time >= '2024-01-01'"
[[databases.shop.time_filters]]
table = "metrics"
column = "created_at"
last = "1 year"
`,
      'peer.toml',
    );
    const fromFlags = scopeFromFlags({
      includeDatabases: ['shop'],
      schemaOnlyTables: ['evmlog_strides,price'],
      tableFilter: ["output:series_time >= '2024-01-01'"],
      timeFilter: ['metrics:created_at:1 year'],
    });
    expect(rulesFor(cfg.scope, 'shop')).toEqual(fromFlags.rules);
    expect(cfg.scope.databases).toEqual(fromFlags.databases);
    expect(cfg.hasScope).toBe(true);
  });

  it('takes "schema" separately or "schema.table", folds unquoted names and keeps quoted ones', () => {
    const cfg = parseConfigText(
      `[[table_filters]]
table = '"Orders"'
schema = "Sales"
where = "id > 0"
[[time_filters]]
table = 'app."Events"'
column = '"CreatedAt"'
last = "30 Days"
`,
      'names.toml',
    );
    expect(cfg.scope.rules.tableFilters).toEqual([{ schema: 'sales', table: 'Orders', where: 'id > 0' }]);
    expect(cfg.scope.rules.timeFilters).toEqual([{ schema: 'app', table: 'Events', column: 'CreatedAt', window: '30 days' }]);
  });

  it('resolves relative paths from the folder of the file and keeps settings', () => {
    const file = writeConfig('source_file = "src.conn"\nstate_dir = "state"\njobs = 3\nmax_lag = ["16MB", "30s"]\n');
    const cfg = loadConfigFile(file);
    expect(cfg.settings).toEqual({
      sourceFile: path.join(dir, 'src.conn'),
      stateDir: path.join(dir, 'state'),
      jobs: 3,
      maxLag: { bytes: 16 * 1024 * 1024, seconds: 30 },
      maxLagText: ['16MB', '30s'],
    });
    expect(cfg.hasScope).toBe(false);
  });

  it('loads replication-config.example.toml, which mentions every key', async () => {
    const example = path.join(repoRoot, 'replication-config.example.toml');
    const cfg = loadConfigFile(example);
    expect(cfg.scope.databases.include).toEqual(['shop', 'analytics']);
    expect(rulesFor(cfg.scope, 'shop').timeFilters).toEqual([{ schema: 'public', table: 'events', column: 'created_at', window: '6 months' }]);
    expect(rulesFor(cfg.scope, 'analytics').include).toEqual(['reports.*']);
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(example, 'utf8');
    for (const key of new Set([...CONFIG_KEYS.top, ...CONFIG_KEYS.database, ...CONFIG_KEYS.tableFilter, ...CONFIG_KEYS.timeFilter])) {
      expect(text, `the example documents "${key}"`).toMatch(new RegExp(`^#? ?${key} = |^\\[\\[?[^\\]]*\\b${key}\\b`, 'm'));
    }
  });
});

describe('configuration file: one test per kind of mistake', () => {
  it('TOML syntax: names the file, line and column', () => {
    const e = errorOf('jobs = 4\nschema_only = ["a",\n');
    expect(e.message).toMatch(/^configuration file bad\.toml:3:1: not valid TOML/);
  });

  it('unknown key: rejected with "did you mean" when close', () => {
    const e = errorOf('[databases.shop]\nschema_onyl = ["a"]\n');
    expect(e.message).toBe('configuration file bad.toml: databases.shop.schema_onyl: unknown key (did you mean "schema_only"?)');
    expect(e.exitCode).toBe(2);
  });

  it('unknown key far from every known one: lists what is allowed there', () => {
    const e = errorOf('[[time_filters]]\ntable = "t"\ncolumn = "c"\nlast = "1 day"\nfrobnicate = 1\n');
    expect(e.message).toContain('time_filters[0].frobnicate: unknown key');
    expect(e.hint).toContain('known keys here: table, schema, column, last');
  });

  it('a top-level key written under a [databases.NAME] header: says to move it up', () => {
    const e = errorOf('[databases.shop]\nexclude_tables = ["a"]\njobs = 2\n');
    expect(e.message).toContain('databases.shop.jobs: unknown key');
    expect(e.hint).toContain('"jobs" is a top-level key: move it above the first [section]');
  });

  it('wrong types: expected and got', () => {
    const e = errorOf('jobs = "four"\nall_databases = "yes"\nschema_only = "a"\n');
    expect(e.message).toContain('jobs: expected a whole number, got a string ("four")');
    expect(e.message).toContain('all_databases: expected true or false, got a string ("yes")');
    expect(e.message).toContain('schema_only: expected a list of strings, e.g. ["a", "b"], got a string ("a")');
  });

  it('a filter written as [table] instead of [[table]]: says to use double brackets', () => {
    const e = errorOf('[databases.shop.table_filters]\ntable = "a"\nwhere = "x > 1"\n');
    expect(e.message).toContain('databases.shop.table_filters: expected a list of tables, written as [[databases.shop.table_filters]] sections, got a table');
  });

  it('a missing required key', () => {
    const e = errorOf('[[databases.shop.time_filters]]\ntable = "events"\nlast = "6 months"\n');
    expect(e.message).toContain('databases.shop.time_filters[0].column: missing (required: a string)');
  });

  it('a table that is both schema-only and filtered', () => {
    const e = errorOf('[databases.shop]\nschema_only = ["public.orders"]\n[[databases.shop.table_filters]]\ntable = "orders"\nwhere = "id > 10"\n');
    expect(e.message).toBe(
      'configuration file bad.toml: databases.shop: table public.orders is both schema-only and filtered; a schema-only table has no rows to filter',
    );
  });

  it('a schema-only pattern at the top that catches a table filtered in a section', () => {
    const e = errorOf('schema_only = ["public.*"]\n[[databases.shop.time_filters]]\ntable = "events"\ncolumn = "at"\nlast = "1 day"\n');
    expect(e.message).toContain('databases.shop: table public.events is both schema-only and filtered');
  });

  it('a table with both a table filter and a time filter', () => {
    const e = errorOf(
      '[[databases.shop.table_filters]]\ntable = "events"\nwhere = "kind = 1"\n[[databases.shop.time_filters]]\ntable = "public.events"\ncolumn = "at"\nlast = "1 day"\n',
    );
    expect(e.message).toContain('databases.shop: table public.events has both a table filter and a time filter');
  });

  it('a window that does not parse', () => {
    const e = errorOf('[[databases.shop.time_filters]]\ntable = "events"\ncolumn = "at"\nlast = "six months"\n');
    expect(e.message).toBe('configuration file bad.toml: databases.shop.time_filters[0].last: "six months" is not a window');
    expect(e.hint).toMatch(/"6 months"/);
  });

  it('a table name that is not one, and a filter on a wildcard', () => {
    const e = errorOf('exclude_tables = ["a.b.c"]\n[[table_filters]]\ntable = "order*"\nwhere = "true"\n');
    expect(e.message).toContain('exclude_tables[0]: "a.b.c" is not a table name');
    expect(e.message).toContain('table_filters[0].table: "order*" has a wildcard; a filter names exactly one table');
  });

  it('an empty predicate, a bad max_lag, source and source_file together, all_databases with include_databases', () => {
    const e = errorOf(
      'source = "postgresql://a@h/db"\nsource_file = "x"\nmax_lag = "soon"\nall_databases = true\ninclude_databases = ["a"]\n[[table_filters]]\ntable = "t"\nwhere = "  "\n',
    );
    for (const part of [
      'source and source_file: give one of them, not both',
      'max_lag: "soon" is neither a size nor a time',
      'all_databases and include_databases: use one of them',
      'table_filters[0].where: empty predicate',
    ]) {
      expect(e.message).toContain(part);
    }
  });

  it('a file that does not exist', () => {
    expect(() => loadConfigFile(path.join(dir, 'nope.toml'))).toThrow(/--config: cannot read ".*nope\.toml": no such file/);
  });

  it('an inline password: loads, with a warning that never shows the password', () => {
    const cfg = parseConfigText('source = "postgresql://app:s3cretpw@db.example/shop"\n', 'pw.toml', 0o644);
    expect(cfg.settings.source).toContain('s3cretpw');
    expect(cfg.warnings).toHaveLength(1);
    expect(cfg.warnings[0]).toContain('source holds a password inline');
    expect(cfg.warnings[0]).toContain('readable by other users');
    expect(cfg.warnings[0]).not.toContain('s3cretpw');
  });

  it('did-you-mean stays quiet for words that are not close', () => {
    expect(didYouMean('tabel_filters', ['table_filters', 'time_filters'])).toBe('table_filters');
    expect(didYouMean('schema-only', ['schema_only'])).toBe('schema_only');
    expect(didYouMean('colour', ['jobs', 'source'])).toBeUndefined();
  });
});

describe('precedence: defaults < file < environment < flags', () => {
  it('pickSetting takes the first layer that has a value', () => {
    expect(pickSetting({ default: 4 })).toEqual({ value: 4, from: 'default' });
    expect(pickSetting({ file: 2, default: 4 })).toEqual({ value: 2, from: 'file' });
    expect(pickSetting({ env: 3, file: 2, default: 4 })).toEqual({ value: 3, from: 'environment' });
    expect(pickSetting({ flag: 1, env: 3, file: 2, default: 4 })).toEqual({ value: 1, from: 'flag' });
  });

  it('state directory, bin folder and connections: file, then PGFERRY_*, then flags', async () => {
    writeFileSync(path.join(dir, 'file.conn'), '# from the file\npostgresql://file@h/filedb\n', { mode: 0o600 });
    const file = writeConfig('source_file = "file.conn"\nstate_dir = "file-state"\npg_bin_dir = "file-bin"\n');
    const noEnv = await createContext(args({ config: file }), {});
    expect(noEnv.stateDir).toBe(path.join(dir, 'file-state'));
    expect(noEnv.pgBinDir).toBe(path.join(dir, 'file-bin'));
    expect(noEnv.connectionString('source')).toBe('postgresql://file@h/filedb');
    expect(noEnv.connectionString('target')).toBeUndefined();

    const env = { PGFERRY_STATE_DIR: '/env/state', PGFERRY_PG_BIN_DIR: '/env/bin', PGFERRY_SOURCE: 'postgresql://env@h/envdb' };
    const withEnv = await createContext(args({ config: file }), env);
    expect(withEnv.stateDir).toBe('/env/state');
    expect(withEnv.pgBinDir).toBe('/env/bin');
    expect(withEnv.connectionString('source')).toBe('postgresql://env@h/envdb');

    const withFlags = await createContext(args({ config: file, stateDir: '/flag/state', pgBinDir: '/flag/bin', source: 'postgresql://flag@h/flagdb' }), env);
    expect(withFlags.stateDir).toBe('/flag/state');
    expect(withFlags.pgBinDir).toBe('/flag/bin');
    expect(withFlags.connectionString('source')).toBe('postgresql://flag@h/flagdb');

    expect((await createContext(args(), {})).stateDir).toBe(path.resolve('.pgferry'));
  });

  it('options a command defines (--jobs, --max-lag): default < file < PGFERRY_* < flag, through the real parser', async () => {
    const file = writeConfig('jobs = 3\nmax_lag = ["16MB", "30s"]\n');
    const run = async (argv: string[], env: NodeJS.ProcessEnv) => {
      let seen: { jobs: number; maxLag?: string[] } | undefined;
      await withGlobalOptions(yargs(argv) as unknown as Argv<GlobalArgs>)
        .command(
          'copy',
          'test',
          (y) => y.option('jobs', jobsOption(4, 'Jobs:', 'jobs')).option('max-lag', { type: 'string', array: true }),
          async (a) => {
            await createContext(a as unknown as GlobalArgs, env);
            seen = { jobs: (a as unknown as { jobs: number }).jobs, maxLag: (a as unknown as { maxLag?: string[] }).maxLag };
          },
        )
        .strict()
        .exitProcess(false)
        .parseAsync();
      return seen!;
    };
    expect(await run(['copy'], {})).toEqual({ jobs: 4, maxLag: undefined });
    expect(await run(['copy', '--config', file], {})).toEqual({ jobs: 3, maxLag: ['16MB', '30s'] });
    expect(await run(['copy', '--config', file], { PGFERRY_JOBS: '6', PGFERRY_MAX_LAG: '1GB' })).toEqual({ jobs: 6, maxLag: ['1GB'] });
    expect(await run(['copy', '--config', file, '-j', '2', '--max-lag', '5s'], { PGFERRY_JOBS: '6' })).toEqual({ jobs: 2, maxLag: ['5s'] });
    expect(await run(['copy', '--config', file, '--jobs', '4'], { PGFERRY_JOBS: '6' })).toEqual({ jobs: 4, maxLag: ['16MB', '30s'] });
    await expect(run(['copy'], { PGFERRY_JOBS: 'many' })).rejects.toThrow('PGFERRY_JOBS must be a whole number from 1 to 64 (got "many")');
    await expect(run(['copy', '-j', 'abc'], {})).rejects.toThrow('--jobs must be a whole number from 1 to 64 (got "abc")');
    await expect(run(['copy', '-j', '100000'], {})).rejects.toThrow('(got "100000")');
  });

  it('scope: a flag list replaces the file list everywhere; a flag filter replaces that table\'s filter only', async () => {
    const file = writeConfig(
      `include_databases = ["shop"]
exclude_tables = ["public.tmp_*"]
[databases.shop]
include_tables = ["public.*"]
exclude_tables = ["public.sessions"]
[[databases.shop.table_filters]]
table = "orders"
where = "region = 'eu'"
[[databases.shop.time_filters]]
table = "events"
column = "at"
last = "6 months"
`,
    );
    const fileOnly = await scopeSpecFromArgs({ config: file });
    expect(rulesFor(fileOnly, 'shop').exclude).toEqual(['public.tmp_*', 'public.sessions']);

    const spec = await scopeSpecFromArgs({
      config: file,
      includeDatabases: ['shop,crm'],
      excludeTables: ['public.logs'],
      timeFilter: ['public.orders:created_at:30 days'],
    });
    expect(spec.databases.include).toEqual(['shop', 'crm']);
    const shop = rulesFor(spec, 'shop');
    expect(shop.include).toEqual(['public.*']); // not given as a flag: the file's
    expect(shop.exclude).toEqual(['public.logs']); // given: replaces both file lists
    expect(shop.tableFilters).toEqual([]); // the flag's time filter took orders over
    expect(shop.timeFilters).toEqual(
      expect.arrayContaining([
        { schema: 'public', table: 'orders', column: 'created_at', window: '30 days' },
        { schema: 'public', table: 'events', column: 'at', window: '6 months' },
      ]),
    );
  });

  it('scope: a flag that contradicts the file is an error naming both', async () => {
    const file = writeConfig('[[databases.shop.table_filters]]\ntable = "orders"\nwhere = "id > 1"\n');
    await expect(scopeSpecFromArgs({ config: file, schemaOnlyTables: ['public.orders'] })).rejects.toThrow(
      /command line and .*\.toml \[databases\.shop\]: table public\.orders is both schema-only and filtered/,
    );
  });

  it('scope: flags alone still work as before, and a file without flags gives the file', async () => {
    expect(await scopeSpecFromArgs({ excludeTables: ['a'] })).toEqual(scopeFromFlags({ excludeTables: ['a'] }));
    const cfg = parseConfigText('exclude_tables = ["a"]\n', 'x.toml');
    expect(applyScopeFlags(cfg.scope, {}, 'x.toml')).toEqual(scopeFromFlags({ excludeTables: ['a'] }));
  });

  it('the scope fingerprint is the same for a file and for flags that mean the same, whatever the order', () => {
    const file = parseConfigText(
      'include_databases = ["shop"]\n[databases.shop]\nexclude_tables = ["b", "a"]\n[[databases.shop.time_filters]]\ntable = "ev"\ncolumn = "at"\nlast = "1 day"\n',
      'f.toml',
    );
    const flags = scopeFromFlags({ includeDatabases: 'shop', excludeTables: ['a,b'], timeFilter: 'ev:at:1 day' });
    expect(scopeHash(file.scope)).toBe(scopeHash(flags));
    expect(scopeHash(scopeFromFlags({ excludeTables: ['a'] }))).not.toBe(scopeHash(scopeFromFlags({ excludeTables: ['b'] })));
    // sections for databases outside an explicit selection do not count
    const extra = parseConfigText('include_databases = ["shop"]\n[databases.other]\nexclude_tables = ["x"]\n', 'g.toml');
    expect(scopeHash(extra.scope)).toBe(scopeHash(scopeFromFlags({ includeDatabases: 'shop' })));
  });

  it('max_lag parses sizes and times', () => {
    expect(parseMaxLag('16MB')).toEqual({ bytes: 16 * 1024 * 1024 });
    expect(parseMaxLag(['1.5GB', '2min'])).toEqual({ bytes: 1.5 * 1024 ** 3, seconds: 120 });
    expect(() => parseMaxLag('fast')).toThrow(UsageError);
  });
});
