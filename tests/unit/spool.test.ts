/**
 * The spool of streamed transactions: messages come back in order across read
 * pieces, a rolled-back subtransaction is cut out with everything begun after
 * it, an aborted transaction leaves no file, and a reset removes leftovers.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Spools } from '../../src/pipeline/sync/client/spool.js';

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function spools(): Promise<{ s: Spools; dir: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-spool-'));
  dirs.push(root);
  const dir = path.join(root, 'spool');
  return { s: new Spools(dir), dir };
}

const msg = (text: string) => Buffer.from(text);

async function collect(it: AsyncGenerator<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const b of it) out.push(b.toString());
  return out;
}

describe('Spools', () => {
  it('gives back a committed transaction in order, also messages larger than a read piece, and removes its file', async () => {
    const { s, dir } = await spools();
    await s.begin(100);
    const big = 'x'.repeat(1024 * 1024 + 17);
    const sent = ['a', big, ...Array.from({ length: 5000 }, (_, i) => `m${i}`), 'z'];
    for (const m of sent) await s.append(100, 100, msg(m));
    await s.pause(100);
    expect(s.open).toBe(1);
    expect(await collect(s.commit(100))).toEqual(sent);
    expect(s.open).toBe(0);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('cuts a rolled-back subtransaction and those begun after it; keeps what its parent wrote before', async () => {
    const { s } = await spools();
    await s.begin(1);
    await s.append(1, 1, msg('top-1'));
    await s.append(1, 2, msg('sub2-1'));
    await s.append(1, 3, msg('sub3-1'));
    await s.append(1, 2, msg('sub2-2'));
    await s.abort(1, 2);
    await s.append(1, 1, msg('top-2'));
    await s.append(1, 4, msg('sub4-1'));
    await s.abort(1, 99); // a subtransaction that sent nothing
    expect(await collect(s.commit(1))).toEqual(['top-1', 'top-2', 'sub4-1']);
  });

  it('keeps interleaved transactions apart; an aborted one leaves nothing', async () => {
    const { s, dir } = await spools();
    await s.begin(1);
    await s.begin(2);
    await s.append(1, 1, msg('one'));
    await s.append(2, 2, msg('two'));
    await s.abort(2, 2);
    expect(s.open).toBe(1);
    expect(await collect(s.commit(1))).toEqual(['one']);
    expect(await collect(s.commit(7))).toEqual([]);
    await s.close();
    expect(existsSync(dir)).toBe(false);
  });

  it('reset removes the files an earlier session left', async () => {
    const { s, dir } = await spools();
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, '5.spool'), 'left over');
    await s.reset();
    expect(existsSync(dir)).toBe(false);
  });
});
