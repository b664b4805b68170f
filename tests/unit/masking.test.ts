/**
 * Data rules without a database: parsing the [data_rules] tables of the
 * configuration file (every error names the key), the most specific key, and
 * the SQL a rule becomes (COPY select list, publication column list, trigger
 * function, verify's source expression).
 */
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../src/config/file.js';
import { rulesFor, scopeHash } from '../../src/config/scope.js';
import { UsageError } from '../../src/errors.js';
import { copyOutSql } from '../../src/pipeline/init/copy-part.js';
import {
  maskedSelectList, maskExpression, parseDataRule, parseRuleKey, parseRules, publishedColumns, ruleFor, RULE_NAMES, verifyPlan,
  type ColumnMask, type DataRuleSpec, type TableMasking,
} from '../../src/config/data-rules.js';
import { maskFunctionSql } from '../../src/pipeline/shared/masking-target.js';

function errorOf(text: string): UsageError {
  try {
    parseConfigText(text, 'bad.toml');
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  throw new Error('the file was accepted');
}

const ISSUE_EXAMPLE = `
[data_rules]
email = "unique_email"
"*_token" = "null"
[databases.shop.data_rules]
"customers.name" = "random_letter"
"public.customers.phone" = "unique_phone"
"customers.born" = "random_date"
"customers.api_key" = { value = "secret" }
"customers.visits" = { statement = "(random() * 10)::int" }
"customers.note" = "untouched"
`;

describe('configuration file', () => {
  it('loads the example of the issue, global and per database', () => {
    const c = parseConfigText(ISSUE_EXAMPLE, 'ok.toml');
    expect(c.hasScope).toBe(true);
    expect(c.scope.rules.dataRules).toEqual([{ key: 'email', rule: { kind: 'unique_email' } }, { key: '*_token', rule: { kind: 'null' } }]);
    const shop = rulesFor(c.scope, 'shop').dataRules!;
    expect(shop).toHaveLength(8);
    expect(shop.find((r) => r.key === 'customers.api_key')).toEqual({ key: 'customers.api_key', rule: { kind: 'value', value: 'secret' }, database: 'shop' });
    expect(shop.find((r) => r.key === 'customers.visits')!.rule).toEqual({ kind: 'statement', statement: '(random() * 10)::int' });
    // Another database gets only the global rules.
    expect(rulesFor(c.scope, 'other').dataRules).toHaveLength(2);
  });

  it('takes every rule name, numbers and booleans as values', () => {
    const text = `[data_rules]\n${RULE_NAMES.map((r, i) => `c${i} = "${r}"`).join('\n')}\nn = { value = 42 }\nb = { value = true }\nf = { value = 1.5 }\n`;
    const c = parseConfigText(text, 'ok.toml');
    expect(c.scope.rules.dataRules!.map((r) => r.rule)).toEqual([
      ...RULE_NAMES.map((kind) => ({ kind })), { kind: 'value', value: 42 }, { kind: 'value', value: true }, { kind: 'value', value: 1.5 },
    ]);
  });

  it('changes the scope hash when the rules change (a resumed init with other rules is refused)', () => {
    const a = parseConfigText('include_databases = ["shop"]\n[data_rules]\nemail = "unique_email"\n', 'a.toml');
    const b = parseConfigText('include_databases = ["shop"]\n[data_rules]\nemail = "null"\n', 'b.toml');
    const none = parseConfigText('include_databases = ["shop"]\n', 'c.toml');
    expect(scopeHash(a.scope)).not.toBe(scopeHash(b.scope));
    expect(scopeHash(a.scope)).not.toBe(scopeHash(none.scope));
  });

  it('an unknown rule name is an error naming the key, with a guess', () => {
    const e = errorOf('[data_rules]\nemail = "uniqe_email"\n');
    expect(e.message).toContain('data_rules.email: unknown rule "uniqe_email" (did you mean "unique_email"?)');
    expect(e.hint).toContain('random_letter');
  });

  it('an unknown rule in a database section names the section', () => {
    const e = errorOf('[databases.shop.data_rules]\n"customers.name" = "random_name"\n');
    expect(e.message).toContain('databases.shop.data_rules."customers.name": unknown rule "random_name"');
  });

  it('a rule table with an unknown key, two keys, no key, or a bad value', () => {
    expect(errorOf('[data_rules]\nx = { valu = "a" }\n').message).toContain('data_rules.x.valu: unknown key (did you mean "value"?)');
    expect(errorOf('[data_rules]\nx = { value = "a", statement = "1" }\n').message).toContain('data_rules.x: give one of value and statement');
    expect(errorOf('[data_rules]\nx = {}\n').message).toContain('data_rules.x: give one of value and statement');
    expect(errorOf('[data_rules]\nx = { value = [1, 2] }\n').message).toContain('data_rules.x.value: expected a string, number or boolean');
    expect(errorOf('[data_rules]\nx = { statement = "" }\n').message).toContain('data_rules.x.statement: expected a SQL expression');
    expect(errorOf('[data_rules]\nx = 3\n').message).toContain('data_rules.x: expected a rule name');
  });

  it('a key that is not column, table.column or schema.table.column', () => {
    expect(errorOf('[data_rules]\n"a.b.c.d" = "null"\n').message).toContain('data_rules."a.b.c.d": "a.b.c.d" is not a column key');
    expect(errorOf('[data_rules]\n"customers." = "null"\n').message).toContain('is not a column key');
    expect(errorOf('[data_rules]\n\'"Customers.email\' = "null"\n').message).toContain('unterminated quoted name');
  });

  it('reports every bad rule of a file at once', () => {
    const e = errorOf('[data_rules]\na = "nope"\nb = "null"\nc = { x = 1 }\n');
    expect(e.message).toContain('data_rules.a');
    expect(e.message).toContain('data_rules.c.x');
    expect(e.message).not.toContain('data_rules.b');
  });

  it('data_rules misspelt is an unknown key with a guess', () => {
    expect(errorOf('[data_ruels]\nemail = "null"\n').message).toContain('did you mean "data_rules"');
  });
});

describe('the most specific key wins', () => {
  const specs: DataRuleSpec[] = [
    { key: 'email', rule: { kind: 'unique_email' } },
    { key: '*_token', rule: { kind: 'null' } },
    { key: 'api_*', rule: { kind: 'random_string' } },
    { key: 'customers.note', rule: { kind: 'untouched' } },
    { key: 'note', rule: { kind: 'null' } },
    { key: 'customers.*', rule: { kind: 'random_letter' } },
    { key: 'public.customers.phone', rule: { kind: 'unique_phone' } },
    { key: 'customers.phone', rule: { kind: 'null' } },
    { key: '"Mixed"."Email"', rule: { kind: 'unique_secret' } },
    { key: 'email', rule: { kind: 'null' }, database: 'shop' },
  ];
  const rules = parseRules(specs);
  const kind = (s: string, t: string, c: string) => ruleFor(rules, s, t, c)?.spec.rule.kind;

  it('table.column beats column and wildcards; schema.table.column beats table.column', () => {
    expect(kind('public', 'customers', 'note')).toBe('untouched');
    expect(kind('public', 'orders', 'note')).toBe('null');
    expect(kind('public', 'customers', 'phone')).toBe('unique_phone');
    expect(kind('public', 'customers', 'whatever')).toBe('random_letter');
    expect(kind('public', 'orders', 'whatever')).toBeUndefined();
  });

  it('an exact column name beats a wildcard; a longer wildcard beats a shorter one', () => {
    expect(kind('public', 'orders', 'reset_token')).toBe('null');
    expect(kind('public', 'orders', 'api_token')).toBe('null'); // "_token" is longer than "api_"
    expect(kind('public', 'orders', 'api_key')).toBe('random_string');
  });

  it("a database's own rule beats a global one of the same key", () => {
    expect(kind('public', 'orders', 'email')).toBe('null');
    expect(ruleFor(parseRules(specs.slice(0, 1)), 'public', 'orders', 'email')?.spec.rule.kind).toBe('unique_email');
  });

  it('table.column means schema public; quoted names keep case; unquoted fold', () => {
    expect(kind('crm', 'customers', 'phone')).toBeUndefined();
    expect(kind('Mixed', 'Email', 'x')).toBeUndefined();
    const k = parseRuleKey('"Mixed"."Email"', 'k');
    expect([k.schema?.literal, k.table?.literal, k.column.literal]).toEqual(['public', 'Mixed', 'Email']);
    expect(parseRuleKey('Customers.EMAIL', 'k').column.literal).toBe('email');
  });
});

describe('SQL of a rule', () => {
  const mask = (column: string, rule: ColumnMask['rule'], type = 'text'): ColumnMask => ({ column, type, rule, from: `data_rules.${column}` });
  const m: TableMasking = {
    keyColumns: ['id'],
    masks: [mask('email', { kind: 'unique_email' }), mask('born', { kind: 'random_date' }, 'date'), mask('api_key', { kind: 'value', value: "it's" }), mask('n', { kind: 'null' }, 'integer')],
  };

  it('unique rules are computed from the key text; every expression is cast to the column type', () => {
    expect(maskExpression(m.masks[0]!, ['id'])).toBe(`CAST((md5(ROW("id")::text) || '@example.com'\n) AS text)`);
    expect(maskExpression(m.masks[0]!, ['a', 'b'], (c) => `NEW."${c}"`)).toContain('md5(ROW(NEW."a", NEW."b")::text)');
    expect(maskExpression(m.masks[2]!, null)).toBe(`CAST(('it''s'\n) AS text)`);
    expect(maskExpression(m.masks[3]!, null)).toBe(`CAST((NULL\n) AS integer)`);
    expect(() => maskExpression(m.masks[0]!, null)).toThrow(/without a key/);
  });

  it('COPY selects masked values under the column names, always through SELECT', () => {
    const select = maskedSelectList(['id', 'email', 'born', 'api_key', 'n', 'other'], m)!;
    expect(select.startsWith('"id", CAST((md5(ROW("id")::text)')).toBe(true);
    expect(select).toContain(' AS "email"');
    expect(select.endsWith('AS "n", "other"')).toBe(true);
    expect(maskedSelectList(['id'], { keyColumns: null, masks: [] })).toBeUndefined();
    const sql = copyOutSql({ schema: 'public', name: 'customers' }, ['id', 'email'], 'text', undefined, null, '"id", x AS "email"');
    expect(sql).toBe('COPY (SELECT "id", x AS "email" FROM ONLY "public"."customers") TO STDOUT (FORMAT text)');
    expect(copyOutSql({ schema: 'public', name: 'customers' }, ['id'], 'text')).toBe('COPY "public"."customers" ("id") TO STDOUT (FORMAT text)');
  });

  it('the publication leaves masked and generated columns out', () => {
    const cols = ['id', 'email', 'born', 'api_key', 'n', 'other', 'gen'].map((name) => ({ name, generated: name === 'gen' }));
    expect(publishedColumns(cols, m)).toEqual(['id', 'other']);
    expect(publishedColumns(cols, undefined)).toBeNull();
  });

  it('verify compares deterministic rules and leaves random ones out', () => {
    const v = verifyPlan(m);
    expect([...v.sourceExpr.keys()]).toEqual(['email', 'api_key', 'n']);
    expect(v.skipped).toEqual(['born']);
  });

  it('the trigger computes random rules on INSERT only, deterministic ones always, with canonical settings', () => {
    const sql = maskFunctionSql({ schema: 'public', name: 'customers' }, {
      ...m, masks: [...m.masks, mask('visits', { kind: 'statement', statement: 'length(name)' }, 'integer')],
    });
    expect(sql).toContain(`SET "TimeZone" = 'UTC'`);
    const insertOnly = sql.slice(sql.indexOf("IF TG_OP = 'INSERT'"), sql.indexOf('END IF;'));
    expect(insertOnly).toContain('NEW."born" :=');
    expect(insertOnly).toContain('INTO NEW."visits" USING NEW');
    expect(insertOnly).toContain('FROM (SELECT ($1).*) AS "customers"');
    expect(insertOnly).not.toContain('NEW."email"');
    expect(sql.slice(sql.indexOf('END IF;'))).toContain(`NEW."email" := CAST((md5(ROW(NEW."id")::text)`);
  });

  it('parseDataRule refuses what is not a rule', () => {
    expect(() => parseDataRule(['null'], 'k')).toThrow(UsageError);
    expect(() => parseDataRule(null, 'k')).toThrow(UsageError);
    expect(parseDataRule(' null ', 'k')).toEqual({ kind: 'null' });
  });
});
