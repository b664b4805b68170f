/**
 * A decoder for pgoutput protocol versions 1 and 2, keeping every value as
 * the text the source's output function produced (no JavaScript type
 * conversion, so nothing is rounded on the way: timestamps keep their
 * microseconds, numerics their digits). 'u' marks an unchanged TOAST value
 * the message leaves out.
 *
 * Version 2 adds streamed in-progress transactions: Stream Start … Stream Stop
 * blocks whose messages carry the xid of their (sub)transaction after the tag,
 * and Stream Commit / Stream Abort once the transaction ends. Their messages
 * are decoded with `streamed` set, which skips that xid.
 */

/** A column value as text: text, null, or UNCHANGED (a TOASTed value the update did not touch). */
export const UNCHANGED = Symbol('unchanged-toast');
export type Value = string | null | typeof UNCHANGED;

/**
 * A row as pgoutput's TupleData bytes (int16 column count, then per column 't' + int32 length + text, 'n' or
 * 'u'), copied out of the socket's buffer into a shared chunk. Values are not turned into JavaScript strings:
 * the set-based statements take them as binary text[] parameters built from these bytes (apply.ts), so a
 * buffered row is one small object and its bytes live outside the JavaScript heap (the garbage collector
 * neither scans nor copies them). `values()` decodes them where a statement needs them one by one.
 */
export interface Tuple {
  readonly buf: Buffer;
  /** Where the column count starts; `end` is one past the last column. */
  readonly pos: number;
  readonly end: number;
  readonly n: number;
  /** Some column is UNCHANGED. */
  readonly unchanged: boolean;
}

const CHUNK_BYTES = 1024 * 1024;
/** The chunk tuples are copied into; a new one when it is full (the old ones live while a tuple refers to them). */
let chunk: Buffer = Buffer.allocUnsafeSlow(0);
let chunkPos = 0;

function reserve(len: number): number {
  if (chunkPos + len > chunk.length) {
    chunk = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, len));
    chunkPos = 0;
  }
  const at = chunkPos;
  chunkPos += len;
  return at;
}

/** A tuple from its column entries, each [buffer, start, end) of one entry's bytes (kind byte included). */
export function tupleOf(entries: [Buffer, number, number][]): Tuple {
  let len = 2;
  let unchanged = false;
  for (const [b, s, e] of entries) {
    len += e - s;
    if (b[s] === 0x75) unchanged = true;
  }
  const at = reserve(len);
  const dst = chunk;
  dst.writeInt16BE(entries.length, at);
  let w = at + 2;
  for (const [b, s, e] of entries) w += b.copy(dst, w, s, e);
  return { buf: dst, pos: at, end: at + len, n: entries.length, unchanged };
}

/** The column entries of a tuple: [buffer, start, end) per column. */
export function entries(t: Tuple): [Buffer, number, number][] {
  const out: [Buffer, number, number][] = [];
  const b = t.buf;
  let p = t.pos + 2;
  for (let i = 0; i < t.n; i++) {
    const s = p;
    p += b[p] === 0x74 ? 5 + b.readInt32BE(p + 1) : 1;
    out.push([b, s, p]);
  }
  return out;
}

function entryValue(b: Buffer, s: number): Value {
  const kind = b[s];
  if (kind === 0x74) return b.toString('utf8', s + 5, s + 5 + b.readInt32BE(s + 1));
  return kind === 0x6e ? null : UNCHANGED;
}

/** The values as text (for statements that take them one by one, and for tests). */
export function values(t: Tuple): Value[] {
  return entries(t).map(([b, s]) => entryValue(b, s));
}

/** Column i's kind: 0x74 text, 0x6e null, 0x75 unchanged. */
export function kindAt(t: Tuple, i: number): number {
  const [b, s] = entries(t)[i]!;
  return b[s]!;
}

/**
 * A string that is equal for two tuples exactly when the given columns' bytes are (length-prefixed entries as
 * latin1, one character per byte), for collapsing changes per key; `undefined` when one of them is UNCHANGED.
 */
export function columnsKey(t: Tuple, cols: readonly number[]): string | undefined {
  const b = t.buf;
  let p = t.pos + 2;
  let key = '';
  let found = 0;
  for (let i = 0; i < t.n && found < cols.length; i++) {
    const s = p;
    const kind = b[p];
    p += kind === 0x74 ? 5 + b.readInt32BE(p + 1) : 1;
    if (!cols.includes(i)) continue;
    if (kind === 0x75) return undefined;
    found++;
    key += cols.length === 1 ? b.toString('latin1', s, p) : `${i}:${b.toString('latin1', s, p)}`;
  }
  return key;
}

export interface RelationColumn {
  name: string;
  /** Part of the replica identity (every column under REPLICA IDENTITY FULL). */
  key: boolean;
  typeOid: number;
}

export interface Relation {
  oid: number;
  schema: string;
  name: string;
  /** d default, n nothing, f full, i index. */
  identity: string;
  columns: RelationColumn[];
}

export type PgoutputMessage =
  | { tag: 'begin'; finalLsn: bigint; commitTime: bigint; xid: number }
  | { tag: 'commit'; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  | { tag: 'relation'; relation: Relation }
  | { tag: 'insert'; relid: number; row: Tuple }
  | { tag: 'update'; relid: number; old: Tuple | null; row: Tuple }
  | { tag: 'delete'; relid: number; old: Tuple }
  | { tag: 'truncate'; relids: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: 'stream-start'; xid: number; first: boolean }
  | { tag: 'stream-stop' }
  | { tag: 'stream-commit'; xid: number; commitLsn: bigint; endLsn: bigint; commitTime: bigint }
  /** subxid = xid: the whole transaction; otherwise that subtransaction (and those begun after it). */
  | { tag: 'stream-abort'; xid: number; subxid: number }
  /** A message inside a stream block, left encoded (it is spooled until its transaction ends); xid of its (sub)transaction. */
  | { tag: 'streamed'; xid: number; payload: Buffer }
  | { tag: 'other'; code: string };

/**
 * The decoder's cursor: one buffer and position at a time, in module state rather than a reader object per
 * message (the decoder runs for every message of the stream; it is synchronous and never re-entered).
 */
let buf: Buffer = Buffer.alloc(0);
let pos = 0;

function u8(): number {
  return buf[pos++]!;
}
function i16(): number {
  const v = buf.readInt16BE(pos);
  pos += 2;
  return v;
}
function i32(): number {
  const v = buf.readInt32BE(pos);
  pos += 4;
  return v;
}
function u32(): number {
  const v = buf.readUInt32BE(pos);
  pos += 4;
  return v;
}
function u64(): bigint {
  const v = buf.readBigUInt64BE(pos);
  pos += 8;
  return v;
}
function cstring(): string {
  const end = buf.indexOf(0, pos);
  const s = buf.toString('utf8', pos, end);
  pos = end + 1;
  return s;
}

function tuple(): Tuple {
  const start = pos;
  const n = i16();
  let unchanged = false;
  for (let i = 0; i < n; i++) {
    const kind = buf[pos++];
    if (kind === 0x74) pos += 4 + buf.readInt32BE(pos); // t: text
    else if (kind === 0x75) unchanged = true; // u
    else if (kind !== 0x6e) throw new Error(`pgoutput: unexpected tuple value kind 0x${(kind ?? 0).toString(16)} (binary mode is not used)`);
  }
  const len = pos - start;
  const at = reserve(len);
  const dst = chunk;
  // A short row byte by byte: Buffer.copy's own checks cost more than copying a hundred bytes.
  if (len < 512) for (let i = 0; i < len; i++) dst[at + i] = buf[start + i]!;
  else buf.copy(dst, at, start, pos);
  return { buf: dst, pos: at, end: at + len, n, unchanged };
}

function relation(): Relation {
  const oid = u32();
  const schema = cstring();
  const name = cstring();
  const identity = String.fromCharCode(u8());
  const n = i16();
  const columns: RelationColumn[] = [];
  for (let i = 0; i < n; i++) {
    const flags = u8();
    const colName = cstring();
    const typeOid = u32();
    i32(); // typmod
    columns.push({ name: colName, key: (flags & 1) === 1, typeOid });
  }
  return { oid, schema, name, identity, columns };
}

/**
 * Decode one pgoutput message (the payload of an XLogData message); `streamed`: a message from inside a
 * stream block (protocol 2), whose data messages carry the xid of their transaction after the tag.
 * The message starts at `offset` of `payload`; a tuple's bytes are copied out (the socket's buffer is reused).
 */
export function decodePgoutput(payload: Buffer, streamed = false, offset = 0): PgoutputMessage {
  buf = payload;
  pos = offset + 1;
  const code = payload[offset]!;
  // S, E, c, A: the frames of streamed transactions carry no xid prefix of their own.
  if (streamed && code !== 0x53 && code !== 0x45 && code !== 0x63 && code !== 0x41) pos += 4;
  try {
    return decode(code);
  } finally {
    buf = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

function decode(code: number): PgoutputMessage {
  switch (code) {
    case 0x49: {
      // I
      const relid = u32();
      pos++; // 'N'
      return { tag: 'insert', relid, row: tuple() };
    }
    case 0x55: {
      // U
      const relid = u32();
      let kind = u8();
      let old: Tuple | null = null;
      if (kind === 0x4b || kind === 0x4f) {
        // K, O
        old = tuple();
        kind = u8();
      }
      return { tag: 'update', relid, old, row: tuple() };
    }
    case 0x44: {
      // D
      const relid = u32();
      pos++; // 'K' or 'O'
      return { tag: 'delete', relid, old: tuple() };
    }
    case 0x42: // B
      return { tag: 'begin', finalLsn: u64(), commitTime: u64(), xid: u32() };
    case 0x43: {
      // C
      pos++; // flags
      return { tag: 'commit', commitLsn: u64(), endLsn: u64(), commitTime: u64() };
    }
    case 0x52: // R
      return { tag: 'relation', relation: relation() };
    case 0x53: // S
      return { tag: 'stream-start', xid: u32(), first: u8() === 1 };
    case 0x45: // E
      return { tag: 'stream-stop' };
    case 0x63: {
      // c
      const xid = u32();
      pos++; // flags
      return { tag: 'stream-commit', xid, commitLsn: u64(), endLsn: u64(), commitTime: u64() };
    }
    case 0x41: // A
      return { tag: 'stream-abort', xid: u32(), subxid: u32() };
    case 0x54: {
      // T
      const n = i32();
      const options = u8();
      const relids: number[] = [];
      for (let i = 0; i < n; i++) relids.push(u32());
      return { tag: 'truncate', relids, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
    }
    default:
      // 'O' origin, 'Y' type, 'M' message: nothing to apply.
      return { tag: 'other', code: String.fromCharCode(code) };
  }
}

/** Rough size in memory of a tuple, for the batch budget: its bytes and the object. */
export function tupleBytes(t: Tuple | null): number {
  return t ? t.end - t.pos + 64 : 0;
}
