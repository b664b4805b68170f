import { describe, expect, it } from 'vitest';
import { InterruptedError } from '../../src/errors.js';
import { runPool } from '../../src/pipeline/init/pool.js';

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe('runPool', () => {
  it('runs every item once, never more than `jobs` at a time, each running worker on its own slot', async () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const seen: number[] = [];
    const busySlots = new Set<number>();
    let running = 0;
    let peak = 0;
    await runPool(items, 3, async (item, slot) => {
      expect(busySlots.has(slot)).toBe(false);
      expect(slot).toBeGreaterThanOrEqual(0);
      expect(slot).toBeLessThan(3);
      busySlots.add(slot);
      running++;
      peak = Math.max(peak, running);
      await tick(item % 3);
      seen.push(item);
      running--;
      busySlots.delete(slot);
    });
    expect([...seen].sort((a, b) => a - b)).toEqual(items);
    expect(peak).toBe(3);
  });

  it('starts items in the given order', async () => {
    const started: number[] = [];
    await runPool([5, 4, 3, 2, 1], 2, async (item) => {
      started.push(item);
      await tick(1);
    });
    expect(started).toEqual([5, 4, 3, 2, 1]);
  });

  it('handles fewer items than jobs, and no items', async () => {
    const slots: number[] = [];
    await runPool(['a'], 8, async (_i, slot) => {
      slots.push(slot);
    });
    expect(slots).toEqual([0]);
    await expect(runPool([], 4, async () => {})).resolves.toBeUndefined();
    await expect(runPool([1], 0, async () => {})).rejects.toThrow(/jobs/);
  });

  it('stops at the first error: no new item starts, running workers are told to stop and awaited', async () => {
    const started: number[] = [];
    let otherStopped = false;
    const err = new Error('boom');
    const p = runPool([1, 2, 3, 4, 5, 6], 2, async (item, _slot, signal) => {
      started.push(item);
      if (item === 1) {
        await tick(5);
        throw err;
      }
      // A long worker that only ends when told to.
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => setTimeout(() => {
        otherStopped = true;
        resolve();
      }, 20)));
    });
    await expect(p).rejects.toBe(err);
    expect(otherStopped).toBe(true);
    expect(started).toEqual([1, 2]);
  });

  it('turns an outer abort into InterruptedError after the workers returned', async () => {
    const ac = new AbortController();
    let returned = 0;
    const p = runPool([1, 2, 3, 4], 2, async (_item, _slot, signal) => {
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      returned++;
      throw new Error('stopped by abort');
    }, ac.signal);
    await tick(5);
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(InterruptedError);
    expect(returned).toBe(2);
    // Already aborted: nothing starts.
    let ran = false;
    await expect(runPool([1], 1, async () => {
      ran = true;
    }, ac.signal)).rejects.toBeInstanceOf(InterruptedError);
    expect(ran).toBe(false);
  });
});
