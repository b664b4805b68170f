import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { escapePassfileField, lookupPassfile, passfileLine, type PassfileKey } from '../../src/postgres/pgpass.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'pgferry-unit-pgpass-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function passfile(text: string, mode = 0o600): string {
  const file = path.join(tmp, `pgpass-${++n}`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

const key: PassfileKey = { host: 'db.example.com', port: 5432, dbname: 'shop', user: 'alice' };
const AWKWARD = `p@ss:w/o#rd?%&'"\\ ünï`;

describe('lookupPassfile', () => {
  it('finds an exact match', () => {
    expect(lookupPassfile(passfile('db.example.com:5432:shop:alice:s3cret\n'), key)).toBe('s3cret');
  });

  it('honours "*" in every field and returns the first matching line', () => {
    const file = passfile(
      [
        'other:5432:shop:alice:wrong-host',
        'db.example.com:5433:shop:alice:wrong-port',
        'db.example.com:5432:other:alice:wrong-db',
        'db.example.com:5432:shop:bob:wrong-user',
        '*:5432:*:alice:first',
        '*:*:*:*:second',
      ].join('\n'),
    );
    expect(lookupPassfile(file, key)).toBe('first');
    expect(lookupPassfile(file, { ...key, user: 'carol' })).toBe('second');
    expect(lookupPassfile(passfile('*:*:*:*:any'), key)).toBe('any');
  });

  it('unescapes "\\:" and "\\\\" in fields and in the password', () => {
    const file = passfile('db.example.com:5432:sh\\:op:al\\\\ice:pa\\:ss\\\\word\n');
    expect(lookupPassfile(file, { ...key, dbname: 'sh:op', user: 'al\\ice' })).toBe('pa:ss\\word');
  });

  it('treats an escaped "\\*" as a literal star, not a wildcard', () => {
    const file = passfile('\\*:5432:shop:alice:literal\n');
    expect(lookupPassfile(file, key)).toBeUndefined();
    expect(lookupPassfile(file, { ...key, host: '*' })).toBe('literal');
    // A star inside a field is not a wildcard either.
    expect(lookupPassfile(passfile('db*:5432:shop:alice:x\n'), key)).toBeUndefined();
  });

  it('ends the password at the first unescaped ":" like libpq', () => {
    expect(lookupPassfile(passfile('*:*:*:alice:first:extra\n'), key)).toBe('first');
  });

  it('skips comments, blank lines and short lines, and reads CRLF files', () => {
    const file = passfile('# db.example.com:5432:shop:alice:commented\r\n\r\ndb.example.com:5432:shop:alice\r\n*:*:*:alice:crlf\r\n');
    expect(lookupPassfile(file, key)).toBe('crlf');
  });

  it('matches the default Unix socket directory as "localhost", any other directory literally', () => {
    const file = passfile('localhost:5432:shop:alice:via-localhost\n/srv/sock:5432:shop:alice:via-dir\n');
    expect(lookupPassfile(file, { ...key, host: '/var/run/postgresql' })).toBe('via-localhost');
    expect(lookupPassfile(file, { ...key, host: 'localhost' })).toBe('via-localhost');
    expect(lookupPassfile(file, { ...key, host: '/srv/sock' })).toBe('via-dir');
    expect(lookupPassfile(file, { ...key, host: '127.0.0.1' })).toBeUndefined();
  });

  it('ignores a file with group or world access, with a warning that names it', () => {
    const file = passfile('*:*:*:*:too-open\n', 0o644);
    const warnings: string[] = [];
    expect(lookupPassfile(file, key, (w) => warnings.push(w))).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(file);
    expect(warnings[0]).toMatch(/group or world access.*0600/);
    expect(warnings[0]).not.toContain('too-open');
    chmodSync(file, 0o600);
    expect(lookupPassfile(file, key, (w) => warnings.push(w))).toBe('too-open');
    expect(warnings).toHaveLength(1);
  });

  it('returns nothing, silently, for a missing file; warns for a directory', () => {
    const warnings: string[] = [];
    expect(lookupPassfile(path.join(tmp, 'missing'), key, (w) => warnings.push(w))).toBeUndefined();
    expect(warnings).toEqual([]);
    const dir = path.join(tmp, 'a-dir');
    mkdirSync(dir);
    expect(lookupPassfile(dir, key, (w) => warnings.push(w))).toBeUndefined();
    expect(warnings.join('')).toMatch(/not a plain file/);
  });
});

describe('writing password files', () => {
  it('escapes ":" and "\\" only', () => {
    expect(escapePassfileField('a:b\\c d*')).toBe('a\\:b\\\\c d*');
  });

  it('writes a line that libpq-style lookup reads back for any server', () => {
    const line = passfileLine('ü:ser', AWKWARD);
    expect(line.endsWith('\n')).toBe(true);
    const file = passfile(line);
    expect(lookupPassfile(file, { host: '::1', port: 1, dbname: 'x', user: 'ü:ser' })).toBe(AWKWARD);
    expect(lookupPassfile(file, { host: '/tmp', port: 1, dbname: 'x', user: 'other' })).toBeUndefined();
  });

  it('refuses a password with a line break, which no password file can hold', () => {
    expect(() => passfileLine('u', 'a\nb')).toThrow(/line break/);
  });
});
