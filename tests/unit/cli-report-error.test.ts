/** reportError: what a command's failure prints and returns, for the errors no step put into words too. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { reportError } from '../../src/cli/program.js';
import { Output } from '../../src/cli/render/output.js';
import { OperationError } from '../../src/errors.js';
import { lockTableError } from '../../src/postgres/errors.js';

function capture(json = false): { out: Output; text: () => string; stdout: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let buf = '';
  let outBuf = '';
  stdout.on('data', (d: Buffer) => ((buf += d.toString()), (outBuf += d.toString())));
  stderr.on('data', (d: Buffer) => (buf += d.toString()));
  const out = new Output({ stdout: stdout as unknown as NodeJS.WriteStream, stderr: stderr as unknown as NodeJS.WriteStream, json, env: { CI: 'true' } });
  return { out, text: () => buf, stdout: () => outBuf };
}

/** An error as pg raises it for a server's ERROR. */
function serverError(message: string, fields: { code: string; detail?: string; hint?: string }): Error {
  return Object.assign(new Error(message), { severity: 'ERROR', ...fields });
}

describe('reportError', () => {
  it("keeps PostgreSQL's DETAIL and HINT of a server error that reached it unwrapped", () => {
    const { out, text } = capture();
    const err = serverError('out of shared memory', { code: '53200', detail: 'some detail', hint: 'You might need to increase "max_locks_per_transaction".' });
    expect(reportError(err, out)).toBe(4);
    expect(text()).toContain('out of shared memory');
    expect(text()).toContain('DETAIL: some detail');
    expect(text()).toContain('You might need to increase "max_locks_per_transaction".');
  });

  it('puts them in --json too', () => {
    const { out, stdout } = capture(true);
    reportError(serverError('permission denied for table t', { code: '42501', hint: 'grant it' }), out);
    const doc = JSON.parse(stdout()) as { error: { message: string; hint: string | null; exitCode: number } };
    expect(doc.error).toEqual({ message: 'permission denied for table t', hint: 'grant it', exitCode: 4 });
  });

  it('says which statement ran out of locks, on which side, and what to change', () => {
    const { out, text } = capture();
    const err = lockTableError(serverError('out of shared memory', { code: '53200', hint: 'You might need to increase max_locks_per_transaction.' }),
      'publication pgferry_x on the source', 'source', 'CREATE / ALTER PUBLICATION', 'each of the 1200 tables it publishes');
    expect(err).toBeInstanceOf(OperationError);
    // Any other error passes unchanged, a shortage of shared memory that is not the lock table's included.
    const other = serverError('out of shared memory', { code: '53200', hint: 'something else' });
    expect(lockTableError(other, 'x', 'source', 'CREATE PUBLICATION', 'y')).toBe(other);
    expect(reportError(err, out)).toBe(4);
    expect(text()).toContain('publication pgferry_x on the source: out of shared memory');
    expect(text()).toMatch(/CREATE \/ ALTER PUBLICATION locks each of the 1200 tables it publishes in one transaction, and the source's lock table is full: raise max_locks_per_transaction on the source/);
  });
});
