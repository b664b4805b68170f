/** The checkpoint file, the run lock and the resume identity check (no database needed). */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emptyScope } from '../../src/config/scope.js';
import { UsageError } from '../../src/errors.js';
import { acquireLock, assertSameRun, loadState, saveState, StateStore, STATE_VERSION, type RunState } from '../../src/state/checkpoint.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
async function tmp(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 'pgferry-test-state-'));
  dirs.push(d);
  return d;
}

function sample(): RunState {
  return {
    version: STATE_VERSION,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    source: { systemIdentifier: '111', endpoint: 'app@old:5432/shop', major: 15 },
    target: { systemIdentifier: '222', endpoint: 'app@new:5432/shop', major: 17 },
    scopeHash: 'aaaa',
    scope: emptyScope(),
    options: { noSync: false, noOwner: false, noPrivileges: false, noRoles: false, fkNotValid: false, jobs: 4 },
    roles: 'pending',
    databases: {
      shop: {
        sourceDatabase: 'shop', targetDatabase: 'shop', slot: null, targetPrepared: false, timeFilterCutoffs: {}, filters: {}, phase: 'pending',
        snapshotsUsed: 0, tables: {}, largeObjects: 'pending', notValidForeignKeys: [], phaseSeconds: {}, finishedAt: null,
      },
    },
  };
}

const identity = () => {
  const s = sample();
  return { source: s.source, target: s.target, scopeHash: s.scopeHash, options: s.options, databases: { shop: 'shop' } };
};

describe('checkpoint', () => {
  it('round-trips through an atomic write and leaves no temporary file', async () => {
    const dir = await tmp();
    expect(await loadState(dir)).toBeUndefined();
    await saveState(dir, sample());
    const back = await loadState(dir);
    expect(back?.databases.shop?.phase).toBe('pending');
    expect(await readdir(dir)).toEqual(['state.json']);
  });

  it('applies parallel updates in order', async () => {
    const dir = await tmp();
    const store = new StateStore(dir, sample());
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.update((s) => (s.databases.shop!.tables[`t${i}`] = { schema: 'public', name: `t${i}`, status: 'done', schemaOnly: false, consistentWithSlot: true, rows: i, bytes: 0, seconds: 0, parts: [] }))),
    );
    expect(Object.keys((await loadState(dir))!.databases.shop!.tables)).toHaveLength(20);
  });

  it('joins updates made during a write into one queued write, each resolving once it is on disk', async () => {
    const dir = await tmp();
    const written: number[] = [];
    let release!: () => void;
    const firstWriteHeld = new Promise<void>((r) => (release = r));
    let writes = 0;
    const store = new StateStore(dir, sample(), async (d, s) => {
      const tables = Object.keys(s.databases.shop!.tables).length; // what this write was started with
      if (writes++ === 0) await firstWriteHeld;
      await saveState(d, s);
      written.push(tables);
    });
    const table = (i: number) => ({ schema: 'public', name: `t${i}`, status: 'done' as const, schemaOnly: false, consistentWithSlot: true, rows: i, bytes: 0, seconds: 0, parts: [] });
    const first = store.update((s) => (s.databases.shop!.tables.t0 = table(0)));
    await new Promise((r) => setTimeout(r, 10)); // the first write has started and is held
    const rest = Array.from({ length: 50 }, (_, i) => store.update((s) => (s.databases.shop!.tables[`t${i + 1}`] = table(i + 1))));
    let restDone = false;
    void Promise.all(rest).then(() => (restDone = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(restDone).toBe(false); // nothing resolves before its version is written
    release();
    await Promise.all([first, ...rest]);
    expect(written).toEqual([1, 51]); // one held write, then one write for the 50 that queued behind it
    expect(Object.keys((await loadState(dir))!.databases.shop!.tables)).toHaveLength(51);
    await store.update((s) => (s.databases.shop!.phase = 'done'));
    expect(written).toHaveLength(3);
    expect((await loadState(dir))!.databases.shop!.phase).toBe('done');
  });

  it('a failed write rejects its callers, and the next update writes again', async () => {
    const dir = await tmp();
    let fail = true;
    const store = new StateStore(dir, sample(), async (d, s) => {
      if (fail) throw new Error('disk full');
      await saveState(d, s);
    });
    await expect(store.update((s) => (s.roles = 'done'))).rejects.toThrow('disk full');
    fail = false;
    await store.save();
    expect((await loadState(dir))!.roles).toBe('done');
  });

  it('paces records after a write: an update or a flush writes them at once, together', async () => {
    const dir = await tmp();
    const written: string[] = [];
    // A pace no test waits out: a record that is not hurried would time the test out.
    const store = new StateStore(dir, sample(), async (d, s) => {
      await saveState(d, s);
      written.push(Object.keys(s.databases.shop!.tables).join(','));
    }, () => 60_000);
    const table = (i: number) => ({ schema: 'public', name: `t${i}`, status: 'done' as const, schemaOnly: false, consistentWithSlot: true, rows: i, bytes: 0, seconds: 0, parts: [] });
    await store.record((s) => (s.databases.shop!.tables.t0 = table(0))); // nothing written yet: no wait
    expect(written).toEqual(['t0']);

    let recorded = false;
    const r1 = store.record((s) => (s.databases.shop!.tables.t1 = table(1))).then(() => (recorded = true));
    const r2 = store.record((s) => (s.databases.shop!.tables.t2 = table(2)));
    await new Promise((r) => setTimeout(r, 50));
    expect(recorded).toBe(false); // paced, not on disk yet
    expect(written).toHaveLength(1);
    await Promise.all([r1, r2, store.update((s) => (s.databases.shop!.phase = 'post-data'))]);
    expect(written).toEqual(['t0', 't0,t1,t2']); // one write for the two records and the update
    expect((await loadState(dir))!.databases.shop!.phase).toBe('post-data');

    const r3 = store.record((s) => (s.databases.shop!.tables.t3 = table(3)));
    await store.flush();
    await r3;
    expect(written).toEqual(['t0', 't0,t1,t2', 't0,t1,t2,t3']);
    expect(Object.keys((await loadState(dir))!.databases.shop!.tables)).toEqual(['t0', 't1', 't2', 't3']);
    await store.flush(); // nothing queued: resolves
  });

  it('refuses a damaged file, a foreign file and another version, with a way out', async () => {
    const dir = await tmp();
    await writeFile(path.join(dir, 'state.json'), '{"version": 1');
    await expect(loadState(dir)).rejects.toThrow(/damaged/);
    await writeFile(path.join(dir, 'state.json'), '{"hello": 1}');
    await expect(loadState(dir)).rejects.toThrow(/not a pgferry state file/);
    await writeFile(path.join(dir, 'state.json'), JSON.stringify({ ...sample(), version: 9 }));
    await expect(loadState(dir)).rejects.toThrow(/version 9/);
  });

  it('refuses to resume another migration and names what changed', () => {
    const s = sample();
    expect(() => assertSameRun(s, identity(), '/x')).not.toThrow();
    expect(() => assertSameRun(s, { ...identity(), options: { ...s.options, jobs: 8 } }, '/x')).not.toThrow();
    const cases: [Partial<ReturnType<typeof identity>>, RegExp][] = [
      [{ source: { ...s.source, systemIdentifier: '999' } }, /source server \(system identifier 111, app@old:5432\/shop\) is now 999/],
      [{ target: { ...s.target, systemIdentifier: '999' } }, /target server/],
      [{ databases: { shop: 'shop_copy' } }, /databases \(shop→shop\) are now \(shop→shop_copy\)/],
      [{ scopeHash: 'bbbb' }, /scope \(tables, filters\) changed \(scope hash aaaa → bbbb\)/],
      [{ options: { ...s.options, noSync: true } }, /--no-sync \(given now\)/],
    ];
    for (const [change, message] of cases) {
      let err: unknown;
      try {
        assertSameRun(s, { ...identity(), ...change }, '/x');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toMatch(message);
      expect((err as UsageError).hint).toMatch(/--restart/);
    }
  });
});

describe('run lock', () => {
  it('lets one run in, refuses a second naming its pid, and is gone after release', async () => {
    const dir = await tmp();
    const release = await acquireLock(dir);
    const lock = JSON.parse(await readFile(path.join(dir, 'lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(process.pid);
    await expect(acquireLock(dir)).rejects.toThrow(new RegExp(`pid ${process.pid}`));
    await release();
    await expect(readFile(path.join(dir, 'lock'))).rejects.toThrow(/ENOENT/);
    const again = await acquireLock(dir);
    await again();
  });

  it('takes over the lock of a process that is gone', async () => {
    const dir = await tmp();
    const child = spawn(process.execPath, ['-e', '0']);
    const deadPid = child.pid!;
    await new Promise((r) => child.on('exit', r));
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: deadPid, host: os.hostname(), processStart: null, startedAt: 'then' }));
    const release = await acquireLock(dir);
    expect(JSON.parse(await readFile(path.join(dir, 'lock'), 'utf8')).pid).toBe(process.pid);
    await release();
  });

  it('takes over an empty or torn lock file (a crash while it was written; it is not fsynced)', async () => {
    const dir = await tmp();
    for (const text of ['', '{"pid": 12']) {
      await writeFile(path.join(dir, 'lock'), text);
      const release = await acquireLock(dir);
      expect(JSON.parse(await readFile(path.join(dir, 'lock'), 'utf8')).pid).toBe(process.pid);
      await release();
    }
  });

  it('tells a recycled pid from the owner by its start time, and never takes a lock from another host', async () => {
    const dir = await tmp();
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), processStart: '1', startedAt: 'then' }));
    const release = await acquireLock(dir);
    await release();
    await writeFile(path.join(dir, 'lock'), JSON.stringify({ pid: 1, host: 'elsewhere', processStart: null, startedAt: 'then' }));
    await expect(acquireLock(dir)).rejects.toThrow(/locked by process 1 on host elsewhere/);
  });
});
