import { describe, expect, it } from 'vitest';
import { usageFromYargs } from '../../src/cli/program.js';

describe('usage errors', () => {
  it('names an unknown command as such', () => {
    const e = usageFromYargs('Unknown argument: bogus', ['bogus']);
    expect(e.message).toBe('unknown command "bogus"');
    expect(e.hint).toContain('validate, list, init');
    expect(e.exitCode).toBe(2);
  });
  it('lists unknown flags once, in the form they were typed', () => {
    expect(usageFromYargs('Unknown arguments: bogus-flag, bogusFlag, Z', ['verify', '--bogus-flag', '-Z']).message).toBe(
      'unknown options --bogus-flag, -Z',
    );
    expect(usageFromYargs('Unknown arguments: bogus-flag, bogusFlag', ['verify', '--bogus-flag']).hint).toBe('see pgferry verify --help');
  });
});
