import { describe, expect, it } from 'vitest';
import { CopyOutRelay } from '../../src/pipeline/init/copy-frames.js';

/** One backend message: code, int32 length (including itself), body. */
function msg(code: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const head = Buffer.alloc(5);
  head[0] = code.charCodeAt(0);
  head.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([head, b]);
}

/** Deterministic pseudo-random bytes. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x & 0xff;
  }
  return b;
}

function scenario(withError: boolean) {
  const rows = [bytes(3, 1), bytes(0, 2), bytes(700, 3), bytes(1, 4), bytes(5, 5), bytes(4096, 6), bytes(9, 7)];
  const head = msg('H', Buffer.from([1, 0, 2, 0, 1, 0, 1]));
  const body: Buffer[] = [];
  rows.forEach((r, i) => {
    body.push(msg('d', r));
    if (i === 2) body.push(msg('N', 'SNOTICE\0Mhello\0\0'));
    if (i === 4) body.push(msg('S', 'TimeZone\0UTC\0'));
  });
  const tail = withError
    ? Buffer.concat([msg('E', 'SERROR\0C57014\0Mcanceling statement\0\0'), msg('Z', 'E')])
    : Buffer.concat([msg('C', 'COPY 7\0'), msg('Z', 'I')]);
  const end = withError ? Buffer.alloc(0) : msg('c');
  const frames = Buffer.concat(rows.map((r) => msg('d', r)));
  return { stream: Buffer.concat([head, ...body, end, tail]), data: frames, rows, tail };
}

function run(stream: Buffer, cuts: number[]) {
  const p = new CopyOutRelay();
  const data: Buffer[] = [];
  let last = 0;
  for (const cut of [...cuts, stream.length]) {
    const step = p.feed(stream.subarray(last, cut));
    last = cut;
    if (step.frames) data.push(step.frames);
    if (step.done || step.error) {
      // The rest of this chunk and every later byte belong to pg again.
      return { data: Buffer.concat(data), done: step.done, error: step.error, rest: Buffer.concat([step.rest, stream.subarray(cut)]) };
    }
    if (step.rest.length) throw new Error('rest before the end');
  }
  return { data: Buffer.concat(data), done: false, error: false, rest: Buffer.alloc(0) };
}

/** The row payloads of a run of CopyData frames. */
function unframe(frames: Buffer): Buffer[] {
  const rows: Buffer[] = [];
  for (let pos = 0; pos < frames.length;) {
    expect(frames[pos]).toBe(0x64);
    const len = frames.readUInt32BE(pos + 1) - 4;
    rows.push(frames.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return rows;
}

describe('COPY OUT relay', () => {
  for (const withError of [false, true]) {
    const { stream, data, rows, tail } = scenario(withError);
    it(`passes on exactly the CopyData frames and hands back the tail${withError ? ' (ErrorResponse)' : ''}, wherever the chunks are cut`, () => {
      expect(unframe(data)).toEqual(rows);
      const bad: number[] = [];
      for (let cut = 0; cut <= stream.length; cut++) {
        const r = run(stream, [cut]);
        if (!r.data.equals(data) || r.done === withError || r.error !== withError || !r.rest.equals(tail)) bad.push(cut);
      }
      expect(bad, 'cut positions where the output was wrong').toEqual([]);
      // Many small chunks, including empty ones and single bytes.
      for (let size = 1; size <= 7; size++) {
        const cuts: number[] = [];
        for (let c = size; c < stream.length; c += size) cuts.push(c, c);
        const r = run(stream, cuts);
        expect(r.data.equals(data), `chunks of ${size}`).toBe(true);
        expect(r.rest.equals(tail)).toBe(true);
      }
    });
  }

  it('holds back an incomplete header, passes a frame on in pieces, and slices the socket chunk without copying', () => {
    const p = new CopyOutRelay();
    const m = msg('d', 'abcdef');
    expect(p.feed(m.subarray(0, 3))).toMatchObject({ frames: null, done: false, error: false });
    expect(p.feed(m.subarray(3, 8)).frames).toEqual(m.subarray(0, 8));
    expect(p.feed(m.subarray(8)).frames?.toString()).toBe('def');
    const two = Buffer.concat([msg('d', 'x'), msg('d', 'yz')]);
    const step = p.feed(two);
    expect(step.frames).toEqual(two);
    expect(step.frames!.buffer).toBe(two.buffer);
  });
});
