/** The order configuration tables are written in (pure); tests/integration/init-extension-data.test.ts copies them. */
import { describe, expect, it } from 'vitest';
import { parentsFirst } from '../../src/pipeline/shared/extension-data.js';

describe('extension data: parentsFirst', () => {
  it('puts each table after the ones it references, and keeps the given order otherwise', () => {
    expect(parentsFirst(['1', '2', '3'], [])).toEqual(['1', '2', '3']);
    expect(parentsFirst(['1', '2', '3'], [{ child: '1', parent: '3' }, { child: '3', parent: '2' }])).toEqual(['2', '3', '1']);
    // A self reference, or a parent outside the set, orders nothing.
    expect(parentsFirst(['1', '2'], [{ child: '1', parent: '1' }, { child: '2', parent: '9' }])).toEqual(['1', '2']);
  });

  it('ends on a cycle, taking its tables in the given order', () => {
    expect(parentsFirst(['1', '2', '3'], [{ child: '1', parent: '2' }, { child: '2', parent: '1' }])).toEqual(['3', '1', '2']);
  });
});
