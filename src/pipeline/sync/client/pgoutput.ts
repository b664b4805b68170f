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

/** A column value: text, null, or UNCHANGED (a TOASTed value the update did not touch). */
export const UNCHANGED = Symbol('unchanged-toast');
export type Value = string | null | typeof UNCHANGED;
export type Tuple = Value[];

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
  const n = i16();
  const out: Tuple = new Array<Value>(n);
  for (let i = 0; i < n; i++) {
    const kind = buf[pos++];
    if (kind === 0x74) {
      // t: text
      const len = buf.readInt32BE(pos);
      pos += 4;
      out[i] = buf.toString('utf8', pos, pos + len);
      pos += len;
    } else if (kind === 0x6e) out[i] = null; // n
    else if (kind === 0x75) out[i] = UNCHANGED; // u
    else throw new Error(`pgoutput: unexpected tuple value kind 0x${(kind ?? 0).toString(16)} (binary mode is not used)`);
  }
  return out;
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
 * Text values are decoded straight from `payload`, the message starting at `offset` (no copy or view of it is made).
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

/** Rough size in memory of a tuple's values, for the batch budget. */
export function tupleBytes(t: Tuple | null): number {
  if (!t) return 0;
  let n = 16;
  for (const v of t) n += typeof v === 'string' ? 2 * v.length + 16 : 8;
  return n;
}
