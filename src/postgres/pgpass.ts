/**
 * Password files in libpq's format (hostname:port:database:username:password,
 * `*` wildcards, `\:` and `\\` escapes): reading ~/.pgpass / PGPASSFILE like
 * libpq does, and writing the private temporary file that child tools use.
 */
import { readFileSync, statSync } from 'node:fs';
import { UsageError } from '../errors.js';

export interface PassfileKey {
  host: string;
  port: number;
  dbname: string;
  user: string;
}

/**
 * libpq's pwdfMatchesString: does the field starting at `pos` equal `token`?
 * Returns the position after the field's ':' or -1. Only a field that is
 * exactly an unescaped "*" is a wildcard.
 */
function matchField(line: string, pos: number, token: string): number {
  if (line[pos] === '*' && line[pos + 1] === ':') return pos + 2;
  let t = 0;
  for (let i = pos; i < line.length; i++) {
    let c = line[i]!;
    let escaped = false;
    if (c === '\\' && i + 1 < line.length) {
      c = line[++i]!;
      escaped = true;
    }
    if (c === ':' && !escaped) return t === token.length ? i + 1 : -1;
    if (t >= token.length || c !== token[t]) return -1;
    t++;
  }
  return -1;
}

/** The password field: unescaped, up to the first unescaped ':' (as libpq reads it). */
function readPassword(line: string, pos: number): string {
  let out = '';
  for (let i = pos; i < line.length; i++) {
    const c = line[i]!;
    if (c === ':') break;
    if (c === '\\' && i + 1 < line.length) out += line[++i];
    else out += c;
  }
  return out;
}

export function escapePassfileField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

/** Directories that libpq treats as "localhost" in a password file (its compiled-in socket directory). */
const DEFAULT_SOCKET_DIRS = new Set(['/var/run/postgresql', '/run/postgresql', '/tmp']);

/**
 * Find a password the way libpq does; undefined when none matches or the file
 * is unusable. A file with group or world access is ignored with a warning
 * (given to `onWarning`), as libpq does.
 */
export function lookupPassfile(file: string, key: PassfileKey, onWarning: (message: string) => void = () => {}): string | undefined {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) {
      onWarning(`password file "${file}" is not a plain file`);
      return undefined;
    }
    if ((st.mode & 0o077) !== 0) {
      onWarning(`password file "${file}" has group or world access; permissions should be u=rw (0600) or less`);
      return undefined;
    }
    text = readFileSync(file, 'utf8');
  } catch {
    // Missing or unreadable: libpq silently looks no further.
    return undefined;
  }
  // A connection to the default socket directory (or with no host) matches "localhost".
  const host = !key.host || (key.host.startsWith('/') && DEFAULT_SOCKET_DIRS.has(key.host.replace(/\/+$/, ''))) ? 'localhost' : key.host;
  const want = [host, String(key.port), key.dbname, key.user];
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    let pos = 0;
    for (const w of want) {
      pos = matchField(line, pos, w);
      if (pos < 0) break;
    }
    if (pos >= 0) return readPassword(line, pos);
  }
  return undefined;
}

/** One line of a password file that matches any host, port and database for this user. */
export function passfileLine(user: string, password: string): string {
  if (/[\r\n]/.test(password) || /[\r\n]/.test(user)) {
    throw new UsageError('the password (or user name) contains a line break, which a password file cannot hold', {
      hint: 'pg_dump, pg_restore and psql get credentials only through a password file: change the password',
    });
  }
  return `*:*:*:${escapePassfileField(user)}:${escapePassfileField(password)}\n`;
}
