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

/** The protocol messages that frame streamed transactions (they carry no xid prefix of their own). */
const STREAM_FRAMES = new Set(['S', 'E', 'c', 'A']);

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  u8(): number {
    return this.buf.readUInt8(this.pos++);
  }
  i16(): number {
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i32(): number {
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  text(len: number): string {
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
}

function tuple(r: Reader): Tuple {
  const n = r.i16();
  const out: Tuple = new Array<Value>(n);
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    if (kind === 0x6e) out[i] = null; // n
    else if (kind === 0x75) out[i] = UNCHANGED; // u
    else if (kind === 0x74) out[i] = r.text(r.i32()); // t
    else throw new Error(`pgoutput: unexpected tuple value kind 0x${kind.toString(16)} (binary mode is not used)`);
  }
  return out;
}

function relation(r: Reader): Relation {
  const oid = r.u32();
  const schema = r.cstring();
  const name = r.cstring();
  const identity = String.fromCharCode(r.u8());
  const n = r.i16();
  const columns: RelationColumn[] = [];
  for (let i = 0; i < n; i++) {
    const flags = r.u8();
    const colName = r.cstring();
    const typeOid = r.u32();
    r.i32(); // typmod
    columns.push({ name: colName, key: (flags & 1) === 1, typeOid });
  }
  return { oid, schema, name, identity, columns };
}

/**
 * Decode one pgoutput message (the payload of an XLogData message); `streamed`: a message from inside a
 * stream block (protocol 2), whose data messages carry the xid of their transaction after the tag.
 */
export function decodePgoutput(buf: Buffer, streamed = false): PgoutputMessage {
  const r = new Reader(buf);
  const code = String.fromCharCode(r.u8());
  if (streamed && !STREAM_FRAMES.has(code)) r.u32(); // xid
  switch (code) {
    case 'S':
      return { tag: 'stream-start', xid: r.u32(), first: r.u8() === 1 };
    case 'E':
      return { tag: 'stream-stop' };
    case 'c': {
      const xid = r.u32();
      r.u8(); // flags
      return { tag: 'stream-commit', xid, commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.u64() };
    }
    case 'A':
      return { tag: 'stream-abort', xid: r.u32(), subxid: r.u32() };
    case 'B':
      return { tag: 'begin', finalLsn: r.u64(), commitTime: r.u64(), xid: r.u32() };
    case 'C': {
      r.u8(); // flags
      return { tag: 'commit', commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.u64() };
    }
    case 'R':
      return { tag: 'relation', relation: relation(r) };
    case 'I': {
      const relid = r.u32();
      r.u8(); // 'N'
      return { tag: 'insert', relid, row: tuple(r) };
    }
    case 'U': {
      const relid = r.u32();
      let kind = String.fromCharCode(r.u8());
      let old: Tuple | null = null;
      if (kind === 'K' || kind === 'O') {
        old = tuple(r);
        kind = String.fromCharCode(r.u8());
      }
      return { tag: 'update', relid, old, row: tuple(r) };
    }
    case 'D': {
      const relid = r.u32();
      r.u8(); // 'K' or 'O'
      return { tag: 'delete', relid, old: tuple(r) };
    }
    case 'T': {
      const n = r.i32();
      const options = r.u8();
      const relids: number[] = [];
      for (let i = 0; i < n; i++) relids.push(r.u32());
      return { tag: 'truncate', relids, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
    }
    default:
      // 'O' origin, 'Y' type, 'M' message: nothing to apply.
      return { tag: 'other', code };
  }
}

/** Rough size in memory of a tuple's values, for the batch budget. */
export function tupleBytes(t: Tuple | null): number {
  if (!t) return 0;
  let n = 16;
  for (const v of t) n += typeof v === 'string' ? 2 * v.length + 16 : 8;
  return n;
}
