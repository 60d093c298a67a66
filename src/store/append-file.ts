import { closeSync, readSync, writeSync } from 'node:fs';

const EMPTY = Buffer.alloc(0);

/**
 * A file that only grows at its end, through an in-memory tail. Records are encoded straight
 * into the tail (no per-record Buffer) and the tail is written with one positioned write per
 * I/O turn. A record's position is its logical offset: bytes below `size` are in the file,
 * the rest are still in the tail, and read() serves either.
 *
 * A failed write (ENOSPC, EIO) keeps the unwritten bytes in the tail; the retry rewrites them
 * at the same position, so a partial write never leaves a gap or a duplicate.
 */
export class AppendFile {
  /** Bytes handed to the kernel. */
  size: number;
  /** Written since the last sync started (so the next group commit must fsync this file). */
  dirty = false;
  buf: Buffer = EMPTY;
  /** Bytes of `buf` in use. */
  used = 0;

  constructor(
    readonly path: string,
    readonly fd: number,
    size: number,
    /** Tail capacity to start with and to shrink back to; allocated on first use. */
    private readonly capacity: number,
  ) {
    this.size = size;
  }

  /** Logical end: file bytes plus the tail. */
  get end(): number {
    return this.size + this.used;
  }

  get pending(): number {
    return this.used;
  }

  /** Makes room for n more bytes in the tail; returns where they start in `buf`. */
  reserve(n: number): number {
    if (this.used + n > this.buf.length) {
      const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.capacity, this.used + n));
      this.buf.copy(next, 0, 0, this.used);
      this.buf = next;
    }
    return this.used;
  }

  /** Writes the tail. Throws what writeSync throws, keeping whatever was not written. */
  flush(): void {
    let done = 0;
    try {
      while (done < this.used) {
        const n = writeSync(this.fd, this.buf, done, this.used - done, this.size);
        done += n;
        this.size += n;
      }
    } finally {
      if (done > 0) {
        this.dirty = true;
        if (done < this.used) this.buf.copy(this.buf, 0, done, this.used);
        this.used -= done;
      }
      // A burst may have grown the tail far past its usual size; give that memory back.
      if (this.used === 0 && this.buf.length > this.capacity * 4) this.buf = EMPTY;
    }
  }

  /** Drops the tail's memory once nothing more will be appended (a segment that rolled over). */
  releaseTail(): void {
    if (this.used === 0) this.buf = EMPTY;
  }

  /** Reads length bytes at a logical offset, from the file or the tail. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    // After a partial write a record can straddle the file and the tail.
    const fromFile = Math.max(0, Math.min(length, this.size - offset));
    if (fromFile < length) this.buf.copy(out, fromFile, offset + fromFile - this.size, offset + length - this.size);
    let got = 0;
    while (got < fromFile) {
      const n = readSync(this.fd, out, got, fromFile - got, offset + got);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file at ${offset + got}`);
      got += n;
    }
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}
