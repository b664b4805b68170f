/** The part of pg's SCRAM helpers (pg/lib/crypto/utils.js, CommonJS, untyped) that scram.ts replaces. */
declare module 'pg/lib/crypto/utils.js' {
  type Bytes = ArrayBuffer | Uint8Array;
  const utils: {
    deriveKey(password: string, salt: Uint8Array, iterations: number): Promise<Bytes>;
    hmacSha256(key: Bytes, msg: string): Promise<Bytes>;
    sha256(data: Bytes): Promise<Bytes>;
  };
  export default utils;
}
