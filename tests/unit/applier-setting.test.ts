/** sync's applier setting: flag > PGFERRY_APPLIER > the file's applier key > native; a bad value is a usage error naming its source. */
import { describe, expect, it } from 'vitest';
import { applyOptionLayers, parseApplier } from '../../src/config/precedence.js';

describe('the applier setting', () => {
  it('takes the flag, else PGFERRY_APPLIER, else the file', () => {
    const flag: { applier?: unknown } = { applier: 'native' };
    applyOptionLayers(flag, { PGFERRY_APPLIER: 'client' }, { applier: 'client' }, new Set());
    expect(flag.applier).toBe('native');
    const env: { applier?: unknown } = {};
    applyOptionLayers(env, { PGFERRY_APPLIER: ' Client ' }, { applier: 'native' }, new Set());
    expect(env.applier).toBe('client');
    const file: { applier?: unknown } = {};
    applyOptionLayers(file, {}, { applier: 'client' }, new Set());
    expect(file.applier).toBe('client');
    const none: { applier?: unknown } = {};
    applyOptionLayers(none, {}, undefined, new Set());
    expect(none.applier).toBeUndefined();
  });

  it('refuses an unknown applier with exit 2, naming where it came from', () => {
    expect(() => applyOptionLayers({}, { PGFERRY_APPLIER: 'pglogical' }, undefined, new Set())).toThrow(/PGFERRY_APPLIER: "pglogical" is not an applier/);
    try {
      parseApplier('x', '--applier');
    } catch (err) {
      expect((err as { exitCode: number }).exitCode).toBe(2);
      expect((err as { hint: string }).hint).toBe('use one of native, client');
    }
  });
});
