/**
 * The single redaction function: every log line, error message and JSON
 * document pgferry prints passes through `redact`. Known passwords are
 * registered when connection strings are parsed, so a password that leaks
 * into a server or library message is masked too.
 */

const MASK = '********';
/** Every registered secret in every spelling it may be printed in, longest first when used. */
const secrets = new Set<string>();
let ordered: string[] = [];

/** The spellings a secret takes in URLs, keyword strings, SQL literals and JSON text. */
function spellings(secret: string): string[] {
  return [
    secret,
    encodeURIComponent(secret),
    secret.replace(/\\/g, '\\\\').replace(/'/g, "\\'"),
    secret.replace(/'/g, "''"),
    JSON.stringify(secret).slice(1, -1),
  ];
}

/** Remember a secret so that it is masked wherever it appears later. */
export function registerSecret(secret: string | undefined): void {
  // Very short secrets would mask ordinary words; URL and keyword patterns
  // below still catch them inside connection strings.
  if (!secret || secret.length < 3) return;
  let added = false;
  for (const s of spellings(secret)) {
    if (!secrets.has(s)) {
      secrets.add(s);
      added = true;
    }
  }
  // Longest first, so that a secret containing another is masked whole.
  if (added) ordered = [...secrets].sort((a, b) => b.length - a.length);
}

export function forgetSecretsForTests(): void {
  secrets.clear();
  ordered = [];
}

// postgres://user:secret@host  →  postgres://user:********@host. The password runs to the
// last "@" before the path, so an unencoded "@" in it is masked whole.
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^\s/]*)(@)/gi;
// password=secret, password = 'sec ret'  →  password=********
const KEYWORD_PASSWORD = /(\b(?:password|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)/gi;
// "password": "secret" in JSON text
const JSON_PASSWORD = /("(?:password|sslpassword|pgpassword)"\s*:\s*)"(?:[^"\\]|\\.)*"/gi;
// PGPASSWORD=secret in an echoed environment
const ENV_PASSWORD = /(\bPGPASSWORD=)(\S*)/g;

export function redact(text: string): string {
  let out = text
    .replace(URL_PASSWORD, `$1${MASK}$3`)
    .replace(KEYWORD_PASSWORD, `$1${MASK}`)
    .replace(JSON_PASSWORD, `$1"${MASK}"`)
    .replace(ENV_PASSWORD, `$1${MASK}`);
  for (const secret of ordered) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  return out;
}

/** Deep-redact a JSON-able value (strings anywhere in it). */
export function redactValue<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactValue(v)) as T;
  if (value && typeof value === 'object' && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      out[k] = /^(password|sslpassword|pgpassword)$/i.test(k) && typeof v === 'string' ? MASK : redactValue(v);
    }
    return out as T;
  }
  return value;
}

/** Leave out the password of a connection string shown in a command line. */
export function withoutPassword(conn: string): string {
  if (/^postgres(ql)?:\/\//i.test(conn)) {
    return conn.replace(/^(postgres(?:ql)?:\/\/[^:/?#@]*):[^@/]*@/i, '$1@').replace(/([?&])password=[^&]*(&|$)/i, (_m, a: string, b: string) => (b ? a : ''));
  }
  return conn.replace(/(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)/gi, '').trim();
}
