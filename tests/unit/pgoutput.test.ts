/** The pgoutput decoder of the client applier: messages built byte by byte as PostgreSQL sends them (protocols 1 and 2). */
import { describe, expect, it } from 'vitest';
import { columnsKey, decodePgoutput, tupleOf, entries, UNCHANGED, values, type PgoutputMessage, type Tuple } from '../../src/pipeline/sync/client/pgoutput.js';

/** A decoded message with its tuples as text values (they are kept as pgoutput's bytes). */
function plain(m: PgoutputMessage): unknown {
  const v = (t: Tuple | null) => (t ? values(t) : t);
  if (m.tag === 'insert') return { ...m, row: v(m.row) };
  if (m.tag === 'update') return { ...m, old: v(m.old), row: v(m.row) };
  if (m.tag === 'delete') return { ...m, old: v(m.old) };
  return m;
}

const u8 = (n: number) => Buffer.from([n]);
const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
const u64 = (n: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(n); return b; };
const str = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), u8(0)]);
const ch = (c: string) => Buffer.from(c, 'ascii');
const text = (s: string) => Buffer.concat([ch('t'), i32(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);

describe('decodePgoutput', () => {
  it('reads begin and commit with their positions', () => {
    expect(decodePgoutput(Buffer.concat([ch('B'), u64(0x1_0000_0010n), u64(123n), i32(77)]))).toEqual({ tag: 'begin', finalLsn: 0x1_0000_0010n, commitTime: 123n, xid: 77 });
    expect(decodePgoutput(Buffer.concat([ch('C'), u8(0), u64(0x20n), u64(0x48n), u64(5n)]))).toEqual({ tag: 'commit', commitLsn: 0x20n, endLsn: 0x48n, commitTime: 5n });
  });

  it('reads a relation with its key columns and identity', () => {
    const msg = Buffer.concat([
      ch('R'), i32(16384), str('Sales Ünïcode'), str('Order "Items"'), ch('d'), i16(2),
      u8(1), str('id'), i32(20), i32(-1),
      u8(0), str('note'), i32(25), i32(-1),
    ]);
    expect(decodePgoutput(msg)).toEqual({
      tag: 'relation',
      relation: { oid: 16384, schema: 'Sales Ünïcode', name: 'Order "Items"', identity: 'd', columns: [{ name: 'id', key: true, typeOid: 20 }, { name: 'note', key: false, typeOid: 25 }] },
    });
  });

  it('keeps values as text, nulls as null and unchanged TOAST values as UNCHANGED', () => {
    const ins = Buffer.concat([ch('I'), i32(16384), ch('N'), i16(3), text('2026-01-01 00:00:00.123456+00'), ch('n'), text('ünï')]);
    expect(plain(decodePgoutput(ins))).toEqual({ tag: 'insert', relid: 16384, row: ['2026-01-01 00:00:00.123456+00', null, 'ünï'] });
    // In place, after the XLogData header (25 bytes), as the stream decodes it.
    expect(plain(decodePgoutput(Buffer.concat([Buffer.alloc(25, 0x77), ins]), false, 25))).toEqual(plain(decodePgoutput(ins)));
    const upd = Buffer.concat([ch('U'), i32(1), ch('K'), i16(2), text('7'), ch('n'), ch('N'), i16(2), text('8'), ch('u')]);
    expect(plain(decodePgoutput(upd))).toEqual({ tag: 'update', relid: 1, old: ['7', null], row: ['8', UNCHANGED] });
    const updNoOld = Buffer.concat([ch('U'), i32(1), ch('N'), i16(1), text('9')]);
    expect(plain(decodePgoutput(updNoOld))).toEqual({ tag: 'update', relid: 1, old: null, row: ['9'] });
    const del = Buffer.concat([ch('D'), i32(1), ch('O'), i16(2), text('7'), text('x')]);
    expect(plain(decodePgoutput(del))).toEqual({ tag: 'delete', relid: 1, old: ['7', 'x'] });
  });

  it('reads truncate options and ignores origin, type and message', () => {
    expect(decodePgoutput(Buffer.concat([ch('T'), i32(2), u8(3), i32(10), i32(11)]))).toEqual({ tag: 'truncate', relids: [10, 11], cascade: true, restartIdentity: true });
    expect(decodePgoutput(Buffer.concat([ch('Y'), i32(1), str('public'), str('mood')]))).toEqual({ tag: 'other', code: 'Y' });
  });

  it('reads the stream frames of protocol 2, and skips the xid of a message from inside a stream block', () => {
    expect(decodePgoutput(Buffer.concat([ch('S'), i32(900), u8(1)]))).toEqual({ tag: 'stream-start', xid: 900, first: true });
    expect(decodePgoutput(Buffer.concat([ch('S'), i32(900), u8(0)]))).toEqual({ tag: 'stream-start', xid: 900, first: false });
    expect(decodePgoutput(ch('E'), true)).toEqual({ tag: 'stream-stop' });
    expect(decodePgoutput(Buffer.concat([ch('c'), i32(900), u8(0), u64(0x30n), u64(0x58n), u64(9n)]))).toEqual({ tag: 'stream-commit', xid: 900, commitLsn: 0x30n, endLsn: 0x58n, commitTime: 9n });
    expect(decodePgoutput(Buffer.concat([ch('A'), i32(900), i32(901)]))).toEqual({ tag: 'stream-abort', xid: 900, subxid: 901 });
    const ins = Buffer.concat([ch('I'), i32(901), i32(16384), ch('N'), i16(1), text('5')]);
    expect(plain(decodePgoutput(ins, true))).toEqual({ tag: 'insert', relid: 16384, row: ['5'] });
    const rel = Buffer.concat([ch('R'), i32(901), i32(16384), str('public'), str('t'), ch('f'), i16(1), u8(1), str('id'), i32(23), i32(-1)]);
    expect(decodePgoutput(rel, true)).toMatchObject({ tag: 'relation', relation: { oid: 16384, name: 't', identity: 'f' } });
  });

  it('copies tuples out of the message, keys them by their bytes, and rebuilds them from entries', () => {
    const upd = Buffer.concat([ch('U'), i32(1), ch('N'), i16(3), text('8'), ch('u'), text('ünï')]);
    const m = decodePgoutput(upd);
    if (m.tag !== 'update') throw new Error(m.tag);
    upd.fill(0); // the socket's buffer is reused: the tuple must not depend on it
    expect(values(m.row)).toEqual(['8', UNCHANGED, 'ünï']);
    expect(m.row.unchanged).toBe(true);
    expect(columnsKey(m.row, [0])).toBe(columnsKey(tupleOf(entries(m.row)), [0]));
    expect(columnsKey(m.row, [1])).toBeUndefined();
    const other = decodePgoutput(Buffer.concat([ch('I'), i32(1), ch('N'), i16(3), text('80'), ch('n'), text('x')]));
    if (other.tag !== 'insert') throw new Error(other.tag);
    expect(columnsKey(other.row, [0])).not.toBe(columnsKey(m.row, [0]));
    // Two-column keys stay apart however the bytes split between the columns.
    const a = tupleOf([...entries(other.row)].slice(0, 1).concat(entries(m.row).slice(0, 1)));
    expect(values(a)).toEqual(['80', '8']);
    expect(columnsKey(a, [0, 1])).not.toBe(columnsKey(tupleOf(entries(m.row).slice(0, 1).concat(entries(other.row).slice(0, 1))), [0, 1]));
    const merged = tupleOf(entries(m.row).map((e, i) => (i === 1 ? entries(other.row)[1]! : e)));
    expect(values(merged)).toEqual(['8', null, 'ünï']);
    expect(merged.unchanged).toBe(false);
  });
});
