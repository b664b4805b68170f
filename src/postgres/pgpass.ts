/**
 * Password files in libpq's format (hostname:port:database:username:password,
 * `*` wildcards, `\:` and `\\` escapes): reading ~/.pgpass / PGPASSFILE like
 * libpq does, and writing the private temporary file that child tools use.
 */
import { readFileSync, statSync } from 'node:fs';

export interface PassfileKey {
  host: string;
  port: number;
  dbname: string;
  user: string;
}

/** Split one line on unescaped ':' and unescape each field. */
function splitLine(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      cur += line[i + 1];
      i++;
    } else if (c === ':') {
      fields.push(cur);
      cur = '';
    } else cur += c;
  }
  fields.push(cur);
  return fields;
}

export function escapePassfileField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

const DEFAULT_SOCKET_DIRS = new Set(['/var/run/postgresql', '/run/postgresql', '/tmp']);

/** Find a password the way libpq does; undefined when none matches or the file is unusable. */
export function lookupPassfile(file: string, key: PassfileKey): string | undefined {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) return undefined;
    if ((st.mode & 0o077) !== 0) {
      process.stderr.write(
        `WARNING: password file "${file}" has group or world access; permissions should be u=rw (0600) or less\n`,
      );
      return undefined;
    }
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  // A Unix-socket connection to the default directory matches "localhost".
  const host = key.host.startsWith('/') && DEFAULT_SOCKET_DIRS.has(key.host) ? 'localhost' : key.host;
  const want = [host, String(key.port), key.dbname, key.user];
  for (const raw of text.split(/\r?\n/)) {
    if (!raw || raw.startsWith('#')) continue;
    const fields = splitLine(raw);
    if (fields.length < 5) continue;
    const ok = want.every((w, i) => fields[i] === '*' || fields[i] === w);
    if (ok) return fields.slice(4).join(':');
  }
  return undefined;
}

/** One line of a password file that matches any host, port and database for this user. */
export function passfileLine(user: string, password: string): string {
  return `*:*:*:${escapePassfileField(user)}:${escapePassfileField(password)}\n`;
}
