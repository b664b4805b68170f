/**
 * SCRAM-SHA-256 for pg's connections on Node's own crypto, with the salted
 * password derived once per password, salt and iteration count.
 *
 * pg derives the salted password (PBKDF2, 4 096 rounds of SHA-256: about 2 ms
 * of CPU) at every connection and computes the HMACs through WebCrypto (about
 * 1.5 ms of the main thread per connection, 6 ms for the first). A run opens
 * 10 to 25 sessions to the same servers as the same users, while the main
 * thread is what limits the start of a command. The salt is the role's (the
 * server keeps one verifier per role), so later connections reuse the result;
 * the cache holds nothing the process could not derive from the password it
 * already holds, and it is keyed by a hash, not the password.
 */
import { createHash, createHmac, pbkdf2 } from 'node:crypto';
import pgCrypto from 'pg/lib/crypto/utils.js';

const derived = new Map<string, Promise<Buffer>>();

function deriveKey(password: string, salt: Uint8Array, iterations: number): Promise<Buffer> {
  const key = createHash('sha256').update(`${iterations}\0`).update(salt).update('\0').update(password).digest('base64');
  let p = derived.get(key);
  if (!p) {
    // Asynchronous: the rounds run on libuv's thread pool, not the main thread.
    p = new Promise<Buffer>((resolve, reject) => pbkdf2(password, salt, iterations, 32, 'sha256', (err, k) => (err ? reject(err) : resolve(k))));
    derived.set(key, p);
    p.catch(() => derived.delete(key));
  }
  return p;
}

let installed = false;

/** Replace pg's helpers (idempotent). sasl.js looks them up on the module at each call. */
export function installScram(): void {
  if (installed) return;
  installed = true;
  pgCrypto.deriveKey = deriveKey;
  pgCrypto.hmacSha256 = (key, msg) => Promise.resolve(createHmac('sha256', new Uint8Array(key)).update(msg).digest());
  pgCrypto.sha256 = (data) => Promise.resolve(createHash('sha256').update(new Uint8Array(data)).digest());
}
