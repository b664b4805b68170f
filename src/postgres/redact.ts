/**
 * The single redaction function: every log line, error message and JSON
 * document pgferry prints passes through `redact`. Known passwords are
 * registered when connection strings are parsed, so a password that leaks
 * into a server or library message is masked too.
 */

const MASK = '********';
const secrets = new Set<string>();

/** Remember a secret so that it is masked wherever it appears later. */
export function registerSecret(secret: string | undefined): void {
  // Very short secrets would mask ordinary words; URL and keyword patterns
  // below still catch them inside connection strings.
  if (secret && secret.length >= 3) secrets.add(secret);
}

export function forgetSecretsForTests(): void {
  secrets.clear();
}

// postgres://user:secret@host  →  postgres://user:********@host
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s]*)(@)/gi;
// password=secret, password = 'sec ret'  →  password=********
const KEYWORD_PASSWORD = /(\b(?:password|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)/gi;
// PGPASSWORD=secret in an echoed environment
const ENV_PASSWORD = /(\bPGPASSWORD=)(\S*)/g;

export function redact(text: string): string {
  let out = text.replace(URL_PASSWORD, `$1${MASK}$3`).replace(KEYWORD_PASSWORD, `$1${MASK}`).replace(ENV_PASSWORD, `$1${MASK}`);
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret && out.includes(encoded)) out = out.split(encoded).join(MASK);
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
      out[k] = /^(password|sslpassword)$/i.test(k) && typeof v === 'string' ? MASK : redactValue(v);
    }
    return out as T;
  }
  return value;
}
