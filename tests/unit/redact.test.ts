import { beforeEach, describe, expect, it } from 'vitest';
import { forgetSecretsForTests, redact, redactValue, registerSecret } from '../../src/postgres/redact.js';

const M = '********';

beforeEach(() => forgetSecretsForTests());

describe('redact: connection strings', () => {
  it('masks the password of a URL and keeps the rest', () => {
    expect(redact('cannot reach postgresql://alice:s3cret@db:5432/shop?sslmode=require')).toBe(
      `cannot reach postgresql://alice:${M}@db:5432/shop?sslmode=require`,
    );
    expect(redact('postgres://u:p%40ss%3Aw%2Fo@[::1]:5432/db')).toBe(`postgres://u:${M}@[::1]:5432/db`);
    expect(redact('postgresql://:only-password@h/db')).toBe(`postgresql://:${M}@h/db`);
  });

  it('masks every URL in a string', () => {
    expect(redact('from postgresql://a:one@h1/db to postgresql://b:two@h2/db')).toBe(
      `from postgresql://a:${M}@h1/db to postgresql://b:${M}@h2/db`,
    );
  });

  it('leaves URLs without a password alone', () => {
    for (const s of ['postgresql://alice@db:5432/shop', 'postgresql://u@[::1]:5432/db', 'postgresql://db:5432/shop?x=a@b', 'https://example.com:443/a@b']) {
      expect(redact(s), s).toBe(s);
    }
  });

  it('masks password= and sslpassword= in keyword strings, quoted or not, and URL query parameters', () => {
    expect(redact('host=h password=s3cret dbname=x')).toBe(`host=h password=${M} dbname=x`);
    expect(redact("host=h password = 'sec ret \\' more' dbname=x")).toBe(`host=h password = ${M} dbname=x`);
    expect(redact('sslpassword=keypass sslmode=verify-full')).toBe(`sslpassword=${M} sslmode=verify-full`);
    expect(redact('PASSWORD=Upper')).toBe(`PASSWORD=${M}`);
    expect(redact('postgresql://h/db?sslmode=require&password=abc&user=u')).toBe(`postgresql://h/db?sslmode=require&password=${M}&user=u`);
  });

  it('masks PGPASSWORD= in an echoed environment', () => {
    expect(redact('env: PGHOST=h PGPASSWORD=hunter2 PGUSER=u')).toBe(`env: PGHOST=h PGPASSWORD=${M} PGUSER=u`);
  });

  it('masks "password" members inside JSON text', () => {
    expect(redact('{"host":"h","password":"s3\\"cret","user":"u"}')).toBe(`{"host":"h","password":"${M}","user":"u"}`);
    expect(redact('{ "sslpassword" : "x" }')).toBe(`{ "sslpassword" : "${M}" }`);
  });

  it('keeps ordinary messages that merely mention passwords', () => {
    const s = 'password authentication failed for user "bob"; no password supplied; password file "/x/.pgpass" has group access';
    expect(redact(s)).toBe(s);
  });
});

describe('redact: registered secrets', () => {
  it('masks a registered secret anywhere, raw and percent-encoded', () => {
    registerSecret('p@ss w/rd');
    expect(redact('server echoed p@ss w/rd twice: p@ss w/rd')).toBe(`server echoed ${M} twice: ${M}`);
    expect(redact('url form p%40ss%20w%2Frd')).toBe(`url form ${M}`);
  });

  it('masks secrets in keyword-quoted form too', () => {
    registerSecret("it's\\x");
    expect(redact("conninfo: host=h application_name='it\\'s\\\\x'")).not.toContain("it\\'s");
  });

  it('ignores secrets shorter than 3 characters (they would mask ordinary words)', () => {
    registerSecret('ab');
    registerSecret('');
    registerSecret(undefined);
    expect(redact('about a cab')).toBe('about a cab');
  });

  it('masks a longer secret even when a shorter one is part of it', () => {
    registerSecret('abc');
    registerSecret('xxabcxx');
    expect(redact('[xxabcxx] [abc]')).toBe(`[${M}] [${M}]`);
  });

  it('forgets secrets for tests', () => {
    registerSecret('forget-me');
    forgetSecretsForTests();
    expect(redact('forget-me')).toBe('forget-me');
  });
});

describe('redactValue', () => {
  it('masks password members and secrets in nested values without changing the input', () => {
    registerSecret('deep-secret');
    const when = new Date('2024-01-02T03:04:05Z');
    const input = {
      ok: false,
      count: 3,
      nothing: null,
      when,
      source: { url: 'postgresql://u:pw@h/db', password: 'x', PGPASSWORD: 'y', passwordSource: 'PGPASSWORD' },
      list: ['deep-secret', 'host=h password=z', 7, true],
    };
    const copy = structuredClone(input);
    const out = redactValue(input);
    expect(out).toEqual({
      ok: false,
      count: 3,
      nothing: null,
      when,
      source: { url: `postgresql://u:${M}@h/db`, password: M, PGPASSWORD: M, passwordSource: 'PGPASSWORD' },
      list: [M, `host=h password=${M}`, 7, true],
    });
    expect(out.when).toBeInstanceOf(Date);
    expect(input).toEqual(copy);
  });

  it('masks a plain string and leaves other scalars alone', () => {
    expect(redactValue('postgresql://u:pw@h/db')).toBe(`postgresql://u:${M}@h/db`);
    expect(redactValue(42)).toBe(42);
    expect(redactValue(undefined)).toBeUndefined();
  });
});
