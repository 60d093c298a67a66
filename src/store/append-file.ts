import { close, closeSync, readSync, write, writeSync } from 'node:fs';

const EMPTY = Buffer.alloc(0);

/**
 * A file that only grows at its end, through an in-memory tail. Records are encoded straight
 * into the tail (no per-record Buffer), and the tail is written with one positioned write per
 * I/O turn on libuv's thread pool, so the event loop never waits for the kernel's copy. While
 * a write is in flight the tail keeps filling in a second buffer:
 *
 *   [0, size)                      in the file
 *   [size, size + inflight)        being written (the `writing` buffer)
 *   [size + inflight, end)         the tail (`buf`), not yet handed to the kernel
 *
 * A record's position is its logical offset; read() serves any of the three. A failed write
 * (ENOSPC, EIO) puts its unwritten bytes back in front of the tail; the retry rewrites them at
 * the same position, so a partial write never leaves a gap or a duplicate.
 */
export class AppendFile {
  /** Bytes known to be in the file. */
  size: number;
  /** Written since the last sync started (so the next group commit must fsync this file). */
  dirty = false;
  /** In the group commit's list of tails for the next write round. */
  queued = false;
  buf: Buffer = EMPTY;
  /** Bytes of `buf` in use. */
  used = 0;
  private writing: Buffer = EMPTY;
  private inflight = 0;
  private spare: Buffer = EMPTY;
  /** Nothing more will be appended (a segment that rolled over): free the buffers once written. */
  private sealed = false;

  constructor(
    readonly path: string,
    readonly fd: number,
    size: number,
    /** Tail capacity to start with and to shrink back to; allocated on first use. */
    private readonly capacity: number,
  ) {
    this.size = size;
  }

  /** Logical end: file bytes, bytes being written, and the tail. */
  get end(): number {
    return this.size + this.inflight + this.used;
  }

  /** The logical offset of position `at` of the tail buffer. */
  offsetOf(at: number): number {
    return this.size + this.inflight + at;
  }

  /** True when every byte appended so far is in the file. */
  get settled(): boolean {
    return this.inflight === 0 && this.used === 0;
  }

  get busy(): boolean {
    return this.inflight !== 0;
  }

  /** Makes room for n more bytes in the tail; returns where they start in `buf`. */
  reserve(n: number): number {
    const need = this.used + n;
    if (need > this.buf.length) {
      const next = this.spare.length >= need ? this.spare : Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.capacity, need));
      if (next === this.spare) this.spare = EMPTY;
      this.buf.copy(next, 0, 0, this.used);
      this.buf = next;
    }
    return this.used;
  }

  /**
   * Hands the tail to the thread pool. done runs once all of it is in the file (null) or the
   * write failed (the unwritten bytes are back in the tail). Returns false, without calling
   * done, when there is nothing to write or a write is already in flight.
   */
  startWrite(done: (err: Error | null) => void): boolean {
    if (this.inflight !== 0 || this.used === 0) return false;
    const data = this.buf;
    const length = this.used;
    this.writing = data;
    this.inflight = length;
    this.buf = this.spare;
    this.spare = EMPTY;
    this.used = 0;
    let off = 0;
    const onWritten = (err: NodeJS.ErrnoException | null, n: number): void => {
      if (err === null) {
        off += n;
        if (off < length) {
          write(this.fd, data, off, length - off, this.size + off, onWritten);
          return;
        }
      }
      this.size += off;
      this.inflight = 0;
      this.writing = EMPTY;
      if (off > 0) this.dirty = true;
      if (err !== null) {
        // Unwritten bytes go back in front of whatever was appended meanwhile.
        const rest = length - off;
        const merged = Buffer.allocUnsafe(Math.max(this.capacity, rest + this.used));
        data.copy(merged, 0, off, length);
        this.buf.copy(merged, rest, 0, this.used);
        this.buf = merged;
        this.used += rest;
      } else if (!this.sealed && data.length <= this.capacity * 4) {
        this.spare = data;
      }
      if (this.sealed && this.used === 0) this.buf = EMPTY;
      done(err);
    };
    write(this.fd, data, 0, length, this.size, onWritten);
    return true;
  }

  /** Writes the tail synchronously (recovery, compaction, close). Not while a write is in flight. */
  flush(): void {
    if (this.inflight !== 0) throw new Error(`${this.path}: synchronous flush during an asynchronous write`);
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
      if (this.used === 0 && (this.sealed || this.buf.length > this.capacity * 4)) this.buf = EMPTY;
    }
  }

  seal(): void {
    this.sealed = true;
    this.spare = EMPTY;
    if (this.used === 0) this.buf = EMPTY;
  }

  /** Reads length bytes at a logical offset, wherever they are. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    const fileEnd = this.size;
    const writingEnd = fileEnd + this.inflight;
    let at = offset;
    let got = 0;
    while (got < length && at < fileEnd) {
      const n = readSync(this.fd, out, got, Math.min(length - got, fileEnd - at), at);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file at ${at}`);
      got += n;
      at += n;
    }
    if (got < length && at < writingEnd) {
      const n = Math.min(length - got, writingEnd - at);
      this.writing.copy(out, got, at - fileEnd, at - fileEnd + n);
      got += n;
      at += n;
    }
    if (got < length) this.buf.copy(out, got, at - writingEnd, at - writingEnd + (length - got));
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }

  /**
   * Closes on the thread pool: closing the last descriptor of an unlinked or replaced file
   * frees its blocks, milliseconds for a 16 MiB segment, which the event loop need not wait for.
   */
  closeInBackground(): void {
    close(this.fd, () => {});
  }
}
