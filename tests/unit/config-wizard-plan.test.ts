import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/file.js';
import { scopeFromFlags, scopeHash, type ScopeFlags } from '../../src/config/scope.js';
import { flagsForSpec, identPart, shellQuote, specFromChoices, specToToml, tablePattern, type WizardChoices } from '../../src/cli/wizard/plan.js';
import { equivalentCommand } from '../../src/cli/wizard/index.js';
import { withoutPassword } from '../../src/postgres/redact.js';

/** What yargs would hand to scopeFromFlags for these arguments. */
function parseFlags(args: string[]): ScopeFlags {
  const flags: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const name = args[i]!.replace(/^--/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    if (name === 'allDatabases') {
      flags.allDatabases = true;
      continue;
    }
    ((flags[name] ??= []) as string[]).push(args[++i]!);
  }
  return flags as ScopeFlags;
}

const awkward: WizardChoices = {
  connectionDatabase: 'shop',
  databases: [
    {
      database: 'shop',
      exclude: [{ schema: 'public', name: 'tmp_1' }, { schema: 'Sales', name: 'a,b "c"' }],
      schemaOnly: [{ schema: 'public', name: 'select' }, { schema: 'public', name: 'Big*Table?' }],
      timeFilters: [{ schema: 'app', name: 'Events', column: 'Created:At', window: '6 months' }],
      tableFilters: [{ schema: 'public', name: 'customers', where: `name <> 'x,y' AND note <> "q"` }],
    },
  ],
};

describe('interactive mode: choices → the same ScopeSpec as flags and as a file', () => {
  it('quotes names only where pg_dump rules would change them', () => {
    expect(identPart('orders')).toBe('orders');
    expect(identPart('Orders')).toBe('"Orders"');
    expect(identPart('a"b')).toBe('"a""b"');
    expect(tablePattern('public', 'x y')).toBe('public."x y"');
  });

  it('flags built from the choices parse back into the very same ScopeSpec (awkward names)', () => {
    const spec = specFromChoices(awkward);
    const flags = flagsForSpec(spec)!;
    expect(scopeFromFlags(parseFlags(flags))).toEqual(spec);
    expect(spec.databases.include).toEqual([]); // the connection's database: no flag needed
  });

  it('the TOML file built from the choices loads back into the very same ScopeSpec', () => {
    const spec = specFromChoices(awkward);
    const text = specToToml(spec, ['saved']);
    expect(parseConfigText(text, 'saved.toml').scope).toEqual(spec);
  });

  it('several databases with the same rules: global rules and --include-databases', () => {
    const same = { exclude: [{ schema: 'public', name: 'logs' }], schemaOnly: [], timeFilters: [] };
    const spec = specFromChoices({ connectionDatabase: 'a', databases: [{ database: 'a', ...same }, { database: 'b', ...same }] });
    expect(flagsForSpec(spec)).toEqual(['--include-databases', 'a,b', '--exclude-tables', 'public.logs']);
    expect(spec.perDatabase).toEqual({});
  });

  it('different rules per database: no flags, but a file that says it', () => {
    const spec = specFromChoices({
      connectionDatabase: 'a',
      databases: [
        { database: 'a', exclude: [{ schema: 'public', name: 'logs' }], schemaOnly: [], timeFilters: [] },
        { database: 'my db', exclude: [], schemaOnly: [], timeFilters: [{ schema: 'public', name: 'ev', column: 'at', window: '1 day' }] },
      ],
    });
    expect(flagsForSpec(spec)).toBeUndefined();
    const text = specToToml(spec);
    expect(text).toContain('[databases."my db"]');
    const loaded = parseConfigText(text, 'x.toml').scope;
    expect(loaded).toEqual(spec);
    expect(scopeHash(loaded)).toBe(scopeHash(spec));
  });

  it('the equivalent command keeps the user\'s arguments, drops passwords and --interactive, quotes for the shell', () => {
    expect(withoutPassword('postgresql://app:s3cret@db:5432/shop?sslmode=require')).toBe('postgresql://app@db:5432/shop?sslmode=require');
    expect(withoutPassword('postgres://app@db/shop?password=s3cret&sslmode=disable')).toBe('postgres://app@db/shop?sslmode=disable');
    expect(withoutPassword("host=db password='s 3' user=app")).toBe('host=db user=app');
    const cmd = equivalentCommand(
      ['init', '--source=postgresql://app:pw@db/shop', '--target', 'postgresql://t@new/shop', '--interactive', '--jobs', '4'],
      'init',
      ['--exclude-tables', 'public."x y"'],
    );
    expect(cmd).toBe(
      `pgferry init --source postgresql://app@db/shop --target postgresql://t@new/shop --jobs 4 --exclude-tables 'public."x y"' --no-interactive --yes`,
    );
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
  });
});
