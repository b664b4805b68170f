/**
 * Streamed in-progress transactions (pgoutput protocol 2), spooled to files
 * until they end, so that a transaction larger than memory never has to be
 * held: one file per top-level transaction of length-prefixed pgoutput
 * messages, still encoded. At Stream Commit the file is read back and applied
 * like any other transaction (in commit order: the walsender sends Stream
 * Commit where a Commit would be); at Stream Abort it is deleted, or cut back
 * to where an aborted subtransaction began.
 *
 * A subtransaction's messages start at the offset where it was first seen, and
 * everything after that offset belongs to it or to subtransactions begun
 * inside it (a subtransaction runs until it ends; only then does its parent
 * write again): cutting the file there is exactly its rollback. This is how
 * PostgreSQL's own apply worker handles its stream files.
 *
 * The files are work files only: after a crash the server streams every
 * transaction that was not committed on the target again from its start.
 */
import { open, rm, mkdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Written to the file once this much is gathered (and at every Stream Stop). */
const WRITE_BYTES = 256 * 1024;
const READ_BYTES = 1024 * 1024;

class SpoolFile {
  /** Bytes in the file plus bytes gathered for it. */
  size = 0;
  private written = 0;
  private pending: Buffer[] = [];
  /** First offset of each subtransaction, in the order they were seen. */
  readonly subxacts = new Map<number, number>();

  constructor(
    readonly file: string,
    private readonly fh: FileHandle,
  ) {}

  async append(xid: number, payload: Buffer): Promise<void> {
    if (!this.subxacts.has(xid)) this.subxacts.set(xid, this.size);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(payload.length, 0);
    this.pending.push(len, payload);
    this.size += 4 + payload.length;
    if (this.size - this.written >= WRITE_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.pending.length) return;
    const buf = Buffer.concat(this.pending);
    this.pending = [];
    await this.fh.write(buf, 0, buf.length, this.written);
    this.written += buf.length;
  }

  /** Roll back a subtransaction: the file ends where it began. */
  async cut(subxid: number): Promise<void> {
    const at = this.subxacts.get(subxid);
    if (at === undefined) return; // it sent nothing
    await this.flush();
    await this.fh.truncate(at);
    this.size = this.written = at;
    for (const [x, off] of this.subxacts) if (off >= at) this.subxacts.delete(x);
  }

  /** The messages in order, read back in pieces (memory stays at one piece). */
  async *read(): AsyncGenerator<Buffer> {
    await this.flush();
    let pos = 0;
    let rest = Buffer.alloc(0);
    while (pos < this.written) {
      const chunk = Buffer.alloc(Math.min(READ_BYTES, this.written - pos));
      const { bytesRead } = await this.fh.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) throw new Error(`spool file ${this.file} ended early`);
      pos += bytesRead;
      const buf = rest.length ? Buffer.concat([rest, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
      let at = 0;
      while (buf.length - at >= 4 && buf.length - at >= 4 + buf.readUInt32BE(at)) {
        const len = buf.readUInt32BE(at);
        yield buf.subarray(at + 4, at + 4 + len);
        at += 4 + len;
      }
      rest = Buffer.from(buf.subarray(at));
    }
    if (rest.length) throw new Error(`spool file ${this.file} ends in the middle of a message`);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => {});
    await rm(this.file, { force: true });
  }
}

export class Spools {
  private readonly files = new Map<number, SpoolFile>();
  private ready = false;

  constructor(private readonly dir: string) {}

  /** Transactions streamed and not yet ended. */
  get open(): number {
    return this.files.size;
  }

  /** Bytes spooled for transactions not yet ended. */
  get bytes(): number {
    let n = 0;
    for (const f of this.files.values()) n += f.size;
    return n;
  }

  /** Files of an earlier session (after a kill -9) are worthless: the server streams those transactions again. */
  async reset(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /** A new stream of `xid` (its first block): any leftover of it is dropped. */
  async begin(xid: number): Promise<void> {
    if (!this.ready) {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.ready = true;
    }
    await this.files.get(xid)?.close();
    const file = path.join(this.dir, `${xid}.spool`);
    this.files.set(xid, new SpoolFile(file, await open(file, 'w+', 0o600)));
  }

  /** One message of the stream block of top-level transaction `top`, from (sub)transaction `xid`. */
  async append(top: number, xid: number, payload: Buffer): Promise<void> {
    const f = this.files.get(top);
    if (!f) throw new Error(`pgoutput: a streamed change of transaction ${top} arrived before its first Stream Start`);
    await f.append(xid, payload);
  }

  /** End of a stream block: what was gathered goes to the file. */
  async pause(top: number): Promise<void> {
    await this.files.get(top)?.flush();
  }

  async abort(top: number, subxid: number): Promise<void> {
    const f = this.files.get(top);
    if (!f) return;
    if (subxid !== top) return f.cut(subxid);
    this.files.delete(top);
    await f.close();
  }

  /** The messages of a committed transaction, in order; its file is removed afterwards. */
  async *commit(top: number): AsyncGenerator<Buffer> {
    const f = this.files.get(top);
    if (!f) return; // streamed without a change of a published table
    try {
      yield* f.read();
    } finally {
      this.files.delete(top);
      await f.close();
    }
  }

  async close(): Promise<void> {
    for (const f of this.files.values()) await f.close();
    this.files.clear();
    if (this.ready) await rm(this.dir, { recursive: true, force: true });
  }
}
