import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, ftruncateSync, fstatSync, mkdirSync, openSync, read, readdirSync, readSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { AppendFile } from './append-file';
import { GroupCommit } from './group-commit';
import type { StoreLogger, SyncCallback } from './message-store';

// Pending delayed messages live on disk, not in memory. Each delayed exchange's messages are
// appended to one file per bucket of due time (bucketMs wide); memory holds, per bucket, a
// counter and a closed file, and only buckets about to come due (lookaheadMs ahead) are read
// back, into typed arrays of 28 bytes per message (due, seq, where the record is). Bodies are
// read one by one as they are released. So resident memory grows with the rate of messages
// coming due, not with how many are pending.
//
// Release order is (due, seq) per exchange, seq being publish order. A bucket is read in file
// order, which is seq order, and sorted by a counting sort on the millisecond within the
// bucket, which is stable, so equal due times keep publish order without a comparison sort.
//
// Durable schedules (persistent messages on durable exchanges) are crash-safe:
//   - a message is confirmed once its record is fsynced (afterSync);
//   - a bucket file is unlinked only after every message in it was released and the copies
//     the release routed to durable queues are fsynced by the message store (routedDurable);
//   - the (due, seq) of the last released message is appended to the exchange's watermark
//     file at the same point, so a restart skips what was already released (exactly once
//     without a crash; a crash between the routing and the watermark repeats at most the
//     messages released since the last watermark: at least once).
// Messages may not be released before the watermark: a new message whose due time lies
// before the last released one (the clock stepped back) is moved up to it.
//
// Files:  <tag>-<bucket>.dly   header, then records        (tag: hash of the exchange's key)
//         <tag>.wm             header, then watermarks
//   record     crc u32 · len u32 · due f64 · seq f64 · publishedAt f64 · exchange shortstr ·
//              routing key shortstr · properties (u32 length + bytes) · bcc count u8 +
//              shortstrs · body (the rest); crc covers everything after itself
//   watermark  crc u32 · due f64 · seq f64

const BUCKET_MAGIC = 0x594c4457;
const WM_MAGIC = 0x4d574457;
const RECORD_FIXED = 32;
const WM_RECORD = 20;
const CHUNK = 1024 * 1024;
/** A watermark file is rewritten to one record once it grows past this. */
const WM_ROTATE = 1024 * 1024;

export interface DelayStoreOptions {
  readonly dir: string;
  /** Durable: fsynced, recovered at open. Otherwise scratch: wiped at open, never fsynced. */
  readonly durable: boolean;
  /** Width of a due-time bucket (one file each). Default 1000 ms. */
  readonly bucketMs?: number;
  /** How far ahead of its start a bucket is read back into memory. Default 2 buckets. */
  readonly lookaheadMs?: number;
  /** Bucket files kept open for appending at once; idle ones beyond are closed. Default 256. */
  readonly maxOpenFiles?: number;
  readonly logger?: StoreLogger;
  /**
   * Calls back once everything the broker routed so far is durable in the message store:
   * released messages' own copies must be on disk before their bucket or watermark moves on.
   */
  readonly routedDurable?: (cb: SyncCallback) => void;
}

/** One delayed message as stored and as handed back on release. */
export interface DelayedRecord {
  readonly exchange: string;
  readonly routingKey: string;
  readonly properties: Buffer;
  readonly body: Buffer;
  readonly bcc: readonly string[] | null;
  readonly publishedAt: number;
}

export interface Released extends DelayedRecord {
  readonly due: number;
  readonly seq: number;
}

interface Bucket {
  readonly no: number;
  readonly path: string;
  file: AppendFile | null;
  /** Logical end of the file (what appends reached). */
  end: number;
  /** Messages in the file not yet released. */
  pending: number;
  /** Read into the window (or being read): later appends go to the late heap. */
  loaded: boolean;
  /** The store's append counter at this bucket's last append (for closing idle files). */
  lastAppend: number;
}

/** One bucket's messages in release order, read back from its file. */
interface Run {
  readonly bucket: Bucket;
  readonly due: Float64Array;
  readonly seq: Float64Array;
  readonly offset: Float64Array;
  readonly length: Uint32Array;
  readonly n: number;
  at: number;
}

/** A message appended to a bucket that was already read (short delays). */
interface Late {
  readonly due: number;
  readonly seq: number;
  readonly bucket: Bucket;
  readonly offset: number;
  readonly length: number;
}

function earlierLate(a: Late, b: Late): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

export function scheduleTag(key: string): string {
  return createHash('sha1').update(key).digest('hex').slice(0, 24);
}

/** The schedule of one delayed exchange in one DelayStore. */
export class DelaySchedule {
  private readonly buckets = new Map<number, Bucket>();
  /** Bucket numbers not yet read, ascending. */
  private unloaded: number[] = [];
  private runs: Run[] = [];
  private readonly late: Late[] = [];
  /** Highest bucket number read or being read. */
  private loadedThrough = -Infinity;
  private loadingNo = Infinity;
  /** Messages not yet released. */
  pending = 0;
  /** Highest seq ever appended (or recovered); the exchange continues after it. */
  maxSeq = -1;
  /** Last released (due, seq); nothing earlier may be released any more. */
  private releasedDue = -Infinity;
  private releasedSeq = -1;
  /** What the watermark file says (durable) and what recovery skips. */
  private persistedDue = -Infinity;
  private persistedSeq = -1;
  private wm: AppendFile | null = null;
  private emptied: Bucket[] = [];
  private settling = false;
  dropped = false;
  /** A bucket finished loading: the exchange may release more. */
  onReady: () => void = () => {};
  /** Counters for tests and stats. */
  readonly counters = { bucketsLoaded: 0, chunksRead: 0, bucketsDeleted: 0, corrupt: 0, lateAppends: 0 };

  constructor(
    private readonly store: DelayStore,
    readonly key: string,
    readonly tag: string,
  ) {}

  // ---- appending ------------------------------------------------------------------------

  /** Appends a message; due is moved up to the last release if it lies before it. */
  append(rec: DelayedRecord, due: number, seq: number): void {
    if (this.dropped || this.store.closed) throw new Error('delayed-message schedule is closed');
    if (due < this.releasedDue) due = this.releasedDue;
    const no = Math.floor(due / this.store.bucketMs);
    let b = this.buckets.get(no);
    if (b === undefined) b = this.createBucket(no);
    const file = this.store.openForAppend(b);
    const offset = encodeRecord(file, rec, due, seq);
    const length = file.end - offset;
    b.end = file.end;
    b.pending++;
    b.lastAppend = this.store.appended(file);
    this.pending++;
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (b.loaded) {
      this.counters.lateAppends++;
      this.pushLate({ due, seq, bucket: b, offset, length });
    }
  }

  private createBucket(no: number): Bucket {
    const path = join(this.store.dir, `${this.tag}-${no}.dly`);
    const b: Bucket = { no, path, file: null, end: 0, pending: 0, loaded: no <= this.loadedThrough, lastAppend: 0 };
    const file = new AppendFile(path, openSync(path, 'wx+'), 0, this.store.tailCapacity);
    b.file = file;
    this.store.fileOpened(b);
    writeHeader(file, BUCKET_MAGIC, this.key, no, this.store.bucketMs);
    b.end = file.end;
    this.store.appended(file);
    this.store.directoryChanged();
    this.buckets.set(no, b);
    if (!b.loaded) insertSorted(this.unloaded, no);
    return b;
  }

  // ---- the window -----------------------------------------------------------------------

  /**
   * Messages due before this are all in memory (the first bucket not yet read starts here).
   * A release must wait for the loader when the head is not before it.
   */
  get frontier(): number {
    const next = this.unloaded.length === 0 ? Infinity : this.unloaded[0]! * this.store.bucketMs;
    return Math.min(next, this.loadingNo * this.store.bucketMs);
  }

  /** When the next bucket should start loading (Infinity when none is left). */
  get nextLoadAt(): number {
    if (this.unloaded.length === 0 || this.loadingNo !== Infinity) return Infinity;
    return this.unloaded[0]! * this.store.bucketMs - this.store.lookaheadMs;
  }

  /** Starts reading the next bucket if it is within the lookahead and none is being read. */
  pump(now: number): void {
    if (this.dropped || this.store.closed || this.loadingNo !== Infinity || this.unloaded.length === 0) return;
    const no = this.unloaded[0]!;
    if (no * this.store.bucketMs - this.store.lookaheadMs > now) return;
    this.unloaded.shift();
    const b = this.buckets.get(no)!;
    b.loaded = true;
    this.loadingNo = no;
    if (no > this.loadedThrough) this.loadedThrough = no;
    this.load(b).then(
      () => this.loaded(),
      (err: unknown) => {
        this.store.logger.error({ file: b.path, err: String(err) }, 'could not read a delayed-message bucket');
        this.loaded();
      },
    );
  }

  private loaded(): void {
    this.loadingNo = Infinity;
    if (!this.dropped && !this.store.closed) this.onReady();
  }

  /** Reads a bucket's record headers in bounded chunks, then orders them by (due, seq). */
  private async load(b: Bucket): Promise<void> {
    const width = this.store.bucketMs;
    const base = b.no * width;
    const end = b.end;
    let cap = Math.max(16, b.pending);
    let n = 0;
    let dueOff = new Uint32Array(cap);
    let seqs = new Float64Array(cap);
    let offs = new Float64Array(cap);
    let lens = new Uint32Array(cap);
    const file = this.store.openForAppend(b);
    let pos = headerLength(this.key);
    const chunk = Buffer.allocUnsafe(CHUNK);
    while (pos < end) {
      const want = Math.min(CHUNK, end - pos);
      let got: Buffer;
      if (pos + want <= file.size) {
        const k = await readAsync(file.fd, chunk, want, pos);
        got = chunk.subarray(0, k);
      } else {
        got = file.read(pos, want);
      }
      if (this.dropped || this.store.closed) return;
      this.counters.chunksRead++;
      let p = 0;
      while (p + RECORD_FIXED <= got.length) {
        const len = got.readUInt32LE(p + 4);
        if (len < RECORD_FIXED) throw new Error(`${b.path}: bad record length ${len} at ${pos + p}`);
        const due = got.readDoubleLE(p + 8);
        const seq = got.readDoubleLE(p + 16);
        if (due > this.persistedDue || (due === this.persistedDue && seq > this.persistedSeq)) {
          if (n === cap) {
            cap *= 2;
            dueOff = grow(dueOff, cap);
            seqs = grow(seqs, cap);
            offs = grow(offs, cap);
            lens = grow(lens, cap);
          }
          dueOff[n] = Math.min(width - 1, Math.max(0, due - base));
          seqs[n] = seq;
          offs[n] = pos + p;
          lens[n] = len;
          n++;
        }
        p += len;
      }
      // Chunks start at a record; one longer than the chunk is skipped past unread.
      if (p === 0) throw new Error(`${b.path}: truncated record at ${pos}`);
      pos += p;
    }
    // Stable counting sort on the millisecond within the bucket: file order is seq order.
    const starts = new Uint32Array(width + 1);
    for (let i = 0; i < n; i++) starts[dueOff[i]! + 1]!++;
    for (let i = 1; i <= width; i++) starts[i]! += starts[i - 1]!;
    const run: Run = { bucket: b, due: new Float64Array(n), seq: new Float64Array(n), offset: new Float64Array(n), length: new Uint32Array(n), n, at: 0 };
    for (let i = 0; i < n; i++) {
      const at = starts[dueOff[i]!]!++;
      run.due[at] = base + dueOff[i]!;
      run.seq[at] = seqs[i]!;
      run.offset[at] = offs[i]!;
      run.length[at] = lens[i]!;
    }
    this.counters.bucketsLoaded++;
    if (n !== 0) this.runs.push(run);
  }

  private headRun(): Run | undefined {
    while (this.runs.length !== 0 && this.runs[0]!.at >= this.runs[0]!.n) this.runs.shift();
    return this.runs[0];
  }

  /** Due time of the earliest message in memory (Infinity when none). */
  headDue(): number {
    if (this.dropped || this.store.closed) return Infinity;
    const r = this.headRun();
    const l = this.late[0];
    const rd = r === undefined ? Infinity : r.due[r.at]!;
    return l === undefined ? rd : Math.min(rd, l.due);
  }

  /** Seq of the earliest message in memory (for merging schedules at equal due times). */
  headSeq(): number {
    const r = this.headRun();
    const l = this.late[0];
    if (r === undefined) return l?.seq ?? Infinity;
    if (l === undefined || r.due[r.at]! < l.due || (r.due[r.at] === l.due && r.seq[r.at]! < l.seq)) return r.seq[r.at]!;
    return l.seq;
  }

  /**
   * Removes the earliest message in memory and reads it back; null when its record is corrupt
   * (logged and counted: the message is lost, as a corrupt segment record would be).
   */
  take(): Released | null {
    const r = this.headRun();
    const l = this.late[0];
    let bucket: Bucket;
    let offset: number;
    let length: number;
    let due: number;
    let seq: number;
    if (r !== undefined && (l === undefined || r.due[r.at]! < l.due || (r.due[r.at] === l.due && r.seq[r.at]! < l.seq))) {
      bucket = r.bucket;
      due = r.due[r.at]!;
      seq = r.seq[r.at]!;
      offset = r.offset[r.at]!;
      length = r.length[r.at]!;
      r.at++;
    } else if (l !== undefined) {
      this.popLate();
      ({ bucket, due, seq, offset, length } = l);
    } else {
      return null;
    }
    bucket.pending--;
    this.pending--;
    if (bucket.pending === 0) this.emptied.push(bucket);
    this.releasedDue = due;
    this.releasedSeq = seq;
    const buf = this.store.openForAppend(bucket).read(offset, length);
    if (buf.readUInt32LE(0) !== crc32(buf.subarray(4)) || buf.readDoubleLE(16) !== seq) {
      this.counters.corrupt++;
      this.store.logger.error({ file: bucket.path, offset }, 'corrupt delayed-message record dropped');
      return null;
    }
    return decodeRecord(buf);
  }

  /**
   * A batch of releases was routed. Emptied buckets go, and the watermark moves, once the
   * routed copies are durable (at once for a scratch store: nothing survives a restart).
   */
  settle(): void {
    if (this.settling || this.dropped) return;
    if (!this.store.durable) {
      for (const b of this.emptied) if (b.pending === 0) this.deleteBucket(b);
      this.emptied = [];
      return;
    }
    if (this.emptied.length === 0 && this.releasedDue === this.persistedDue && this.releasedSeq === this.persistedSeq) return;
    this.settling = true;
    const due = this.releasedDue;
    const seq = this.releasedSeq;
    const emptied = this.emptied;
    this.emptied = [];
    this.store.routedDurable((err) => {
      this.settling = false;
      if (this.dropped || this.store.closed) return;
      if (err !== null) {
        this.emptied.push(...emptied);
        return;
      }
      this.writeWatermark(due, seq);
      for (const b of emptied) if (b.pending === 0 && this.buckets.get(b.no) === b) this.deleteBucket(b);
      if (this.emptied.length !== 0 || this.releasedSeq !== this.persistedSeq) this.settle();
    });
  }

  /** Appends the watermark; rewrites the file to one record when it grew large. */
  writeWatermark(due: number, seq: number): void {
    if (due < this.persistedDue || (due === this.persistedDue && seq <= this.persistedSeq)) return;
    this.persistedDue = due;
    this.persistedSeq = seq;
    const path = join(this.store.dir, `${this.tag}.wm`);
    if (this.wm !== null && this.wm.end > WM_ROTATE) {
      this.store.closeLater(this.wm);
      this.wm = null;
      writeWatermarkFile(this.store.dir, path, this.key, due, seq, this.store.durable);
      return;
    }
    if (this.wm === null) {
      const fd = openSync(path, 'a+');
      const size = fstatSync(fd).size;
      this.wm = new AppendFile(path, fd, size, 4096);
      if (size === 0) {
        writeHeader(this.wm, WM_MAGIC, this.key, 0, 0);
        this.store.directoryChanged();
      }
    }
    appendWatermark(this.wm, due, seq);
    this.store.appended(this.wm);
  }

  /** Recovery: what the watermark file said, and a bucket file found on disk. */
  recoveredWatermark(due: number, seq: number): void {
    this.persistedDue = this.releasedDue = due;
    this.persistedSeq = this.releasedSeq = seq;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  recoveredBucket(no: number, path: string, end: number, pending: number, maxSeq: number): void {
    const b: Bucket = { no, path, file: null, end, pending, loaded: false, lastAppend: 0 };
    this.buckets.set(no, b);
    insertSorted(this.unloaded, no);
    this.pending += pending;
    if (maxSeq > this.maxSeq) this.maxSeq = maxSeq;
  }

  /** Watermark as the recovery scan should apply it. */
  isReleased(due: number, seq: number): boolean {
    return due < this.persistedDue || (due === this.persistedDue && seq <= this.persistedSeq);
  }

  private deleteBucket(b: Bucket): void {
    this.buckets.delete(b.no);
    // Unlinked now so that a new file for the same bucket can be created; the descriptor
    // closes once no write round can use it (a write to an unlinked file is harmless).
    unlinkSync(b.path);
    if (b.file !== null) this.store.fileClosed(b);
    this.store.directoryChanged();
    this.counters.bucketsDeleted++;
  }

  /** The exchange was deleted: every file goes. */
  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    for (const b of this.buckets.values()) {
      rmSync(b.path, { force: true });
      if (b.file !== null) this.store.fileClosed(b);
    }
    this.buckets.clear();
    if (this.wm !== null) this.store.closeLater(this.wm);
    this.wm = null;
    rmSync(join(this.store.dir, `${this.tag}.wm`), { force: true });
    this.store.directoryChanged();
    this.unloaded = [];
    this.runs = [];
    this.late.length = 0;
    this.pending = 0;
    this.store.forget(this);
  }

  /** Close: the message store is already closed (and synced), so the watermark may move. */
  finalWatermark(): void {
    if (this.store.durable && !this.dropped) this.writeWatermark(this.releasedDue, this.releasedSeq);
  }

  /** Bytes this schedule keeps in memory for its messages (window and bookkeeping). */
  residentBytes(): number {
    let bytes = this.buckets.size * 160 + this.late.length * 96 + this.unloaded.length * 8;
    for (const r of this.runs) bytes += r.n * 28;
    return bytes;
  }

  get bucketCount(): number {
    return this.buckets.size;
  }

  private pushLate(e: Late): void {
    const a = this.late;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (earlierLate(a[p]!, e)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }

  private popLate(): void {
    const a = this.late;
    const last = a.pop()!;
    if (a.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && earlierLate(a[r]!, a[l]!) ? r : l;
      if (earlierLate(last, a[c]!)) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
  }
}

const SILENT: StoreLogger = { warn() {}, error() {} };

/**
 * The directory of delayed-message schedules of one broker (durable), or its scratch
 * directory (transient messages, and persistent ones on non-durable exchanges).
 */
export class DelayStore {
  readonly dir: string;
  readonly durable: boolean;
  readonly bucketMs: number;
  readonly lookaheadMs: number;
  readonly logger: StoreLogger;
  readonly tailCapacity = 64 * 1024;
  closed = false;
  private readonly maxOpen: number;
  private readonly dirFd: number;
  private readonly commit: GroupCommit;
  private readonly schedules = new Map<string, DelaySchedule>();
  private readonly open = new Set<Bucket>();
  private toClose: AppendFile[] = [];
  private evicting = false;
  private readonly routed: (cb: SyncCallback) => void;

  private constructor(options: DelayStoreOptions) {
    this.dir = options.dir;
    this.durable = options.durable;
    this.bucketMs = Math.max(1, Math.floor(options.bucketMs ?? 1000));
    this.lookaheadMs = options.lookaheadMs ?? 2 * this.bucketMs;
    this.maxOpen = Math.max(2, options.maxOpenFiles ?? 256);
    this.logger = options.logger ?? SILENT;
    this.routed = options.routedDurable ?? ((cb) => setImmediate(() => cb(null)));
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    this.dirFd = openSync(this.dir, 'r');
    this.commit = new GroupCommit(
      this.dirFd,
      {
        beforeWrite: () => {},
        hasBuffered: () => false,
        betweenWrites: () => this.betweenWrites(),
        writeFailed: (err) => this.logger.error({ dir: this.dir, err: String(err) }, 'delayed-message store write failed; retrying'),
        writeRecovered: () => this.logger.warn({ dir: this.dir }, 'delayed-message store writes succeed again'),
      },
      1000,
      this.durable,
    );
    if (this.durable) this.recover();
  }

  static open(options: DelayStoreOptions): DelayStore {
    return new DelayStore(options);
  }

  /** The schedule of a delayed exchange (recovered from disk if there was one). */
  schedule(key: string): DelaySchedule {
    let s = this.schedules.get(key);
    if (s === undefined) {
      s = new DelaySchedule(this, key, scheduleTag(key));
      this.schedules.set(key, s);
    }
    return s;
  }

  /** Keys of the schedules that have pending messages (after recovery). */
  keys(): string[] {
    return [...this.schedules.keys()];
  }

  /** Pending messages over all schedules. */
  get pending(): number {
    let n = 0;
    for (const s of this.schedules.values()) n += s.pending;
    return n;
  }

  residentBytes(): number {
    let n = 0;
    for (const s of this.schedules.values()) n += s.residentBytes();
    return n + this.open.size * (this.tailCapacity + 200);
  }

  get openFiles(): number {
    return this.open.size;
  }

  afterSync(cb: SyncCallback): void {
    if (this.closed) {
      setImmediate(() => cb(new Error('delayed-message store is closed')));
      return;
    }
    this.commit.register(cb);
  }

  routedDurable(cb: SyncCallback): void {
    this.routed(cb);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const s of this.schedules.values()) s.finalWatermark();
    this.closed = true;
    await this.commit.drain();
    for (const b of this.open) b.file?.close();
    this.open.clear();
    for (const f of this.toClose) f.close();
    this.toClose = [];
    for (const s of this.schedules.values()) s.dropped = true;
    closeSync(this.dirFd);
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- for schedules -------------------------------------------------------------------

  /** Registers an append for the next write round; returns the append counter. */
  appended(file: AppendFile): number {
    this.commit.touch(file);
    this.commit.appended++;
    this.commit.scheduleTurn();
    return this.commit.appended;
  }

  directoryChanged(): void {
    this.commit.directoryChanged();
    this.commit.scheduleTurn();
  }

  /** A bucket's file, reopened if it was closed as idle. */
  openForAppend(b: Bucket): AppendFile {
    if (b.file === null) {
      b.file = new AppendFile(b.path, openSync(b.path, 'r+'), b.end, this.tailCapacity);
      this.fileOpened(b);
    }
    return b.file;
  }

  fileOpened(b: Bucket): void {
    this.open.add(b);
    if (this.open.size > this.maxOpen) this.commit.scheduleTurn();
  }

  fileClosed(b: Bucket): void {
    this.open.delete(b);
    if (b.file !== null) this.closeLater(b.file);
    b.file = null;
  }

  /** Closed between write rounds, when no write can be using the descriptor. */
  closeLater(f: AppendFile): void {
    this.toClose.push(f);
    this.commit.scheduleTurn();
  }

  forget(s: DelaySchedule): void {
    if (this.schedules.get(s.key) === s) this.schedules.delete(s.key);
  }

  private betweenWrites(): void {
    if (this.toClose.length !== 0) {
      const files = this.toClose;
      this.toClose = [];
      for (const f of files) this.commit.closeWhenIdle(f);
    }
    if (this.open.size > this.maxOpen && !this.evicting) this.evictIdle();
  }

  /**
   * Too many open files: closes the least recently appended ones not being read, once a sync
   * round has covered their last write (closing drops them from the group commit's list).
   */
  private evictIdle(): void {
    const candidates = [...this.open].filter((b) => !b.loaded).sort((a, b) => a.lastAppend - b.lastAppend);
    const victims = candidates.slice(0, Math.max(0, this.open.size - Math.floor(this.maxOpen * 0.75)));
    if (victims.length === 0) return;
    this.evicting = true;
    const mark = this.commit.appended;
    this.commit.register(() => {
      this.evicting = false;
      if (this.closed) return;
      for (const b of victims) {
        const f = b.file;
        if (f === null || b.lastAppend > mark || !f.settled || f.queued || !this.open.has(b)) continue;
        this.open.delete(b);
        b.file = null;
        this.commit.closeWhenIdle(f);
      }
    });
  }

  /** Reads every file: watermarks first, then buckets (torn tails cut, released ones removed). */
  private recover(): void {
    const names = readdirSync(this.dir);
    for (const name of names) {
      if (name.endsWith('.wm.tmp')) rmSync(join(this.dir, name), { force: true });
    }
    for (const name of names) {
      if (!name.endsWith('.wm')) continue;
      const got = readWatermarkFile(join(this.dir, name));
      if (got === null) continue;
      const s = this.schedule(got.key);
      s.recoveredWatermark(got.due, got.seq);
      // Rewritten to one record so the file starts small again.
      writeWatermarkFile(this.dir, join(this.dir, name), got.key, got.due, got.seq, true);
    }
    let changed = false;
    for (const name of names) {
      if (!name.endsWith('.dly')) continue;
      const path = join(this.dir, name);
      const scanned = scanBucket(path, this.bucketMs, this.logger, (key) => this.schedule(key));
      if (scanned === null || scanned.pending === 0) {
        unlinkSync(path);
        changed = true;
        continue;
      }
      this.schedule(scanned.key).recoveredBucket(scanned.no, path, scanned.end, scanned.pending, scanned.maxSeq);
    }
    if (changed) fsyncSync(this.dirFd);
  }
}

// ---- encoding ---------------------------------------------------------------------------

function headerLength(key: string): number {
  return 4 + 8 + 4 + 2 + Buffer.byteLength(key);
}

function writeHeader(file: AppendFile, magic: number, key: string, no: number, width: number): void {
  const k = Buffer.from(key);
  const at = file.reserve(18 + k.length);
  const b = file.buf;
  b.writeUInt32LE(magic, at);
  b.writeDoubleLE(no, at + 4);
  b.writeUInt32LE(width, at + 12);
  b.writeUInt16LE(k.length, at + 16);
  k.copy(b, at + 18);
  file.used = at + 18 + k.length;
}

function shortstrLength(s: string): number {
  return 1 + Buffer.byteLength(s);
}

function encodeRecord(file: AppendFile, rec: DelayedRecord, due: number, seq: number): number {
  let len = RECORD_FIXED + shortstrLength(rec.exchange) + shortstrLength(rec.routingKey) + 4 + rec.properties.length + 1 + rec.body.length;
  const bcc = rec.bcc ?? [];
  for (const k of bcc) len += shortstrLength(k);
  const at = file.reserve(len);
  const b = file.buf;
  b.writeUInt32LE(len, at + 4);
  b.writeDoubleLE(due, at + 8);
  b.writeDoubleLE(seq, at + 16);
  b.writeDoubleLE(rec.publishedAt, at + 24);
  let p = at + RECORD_FIXED;
  p = writeShortstr(b, p, rec.exchange);
  p = writeShortstr(b, p, rec.routingKey);
  b.writeUInt32LE(rec.properties.length, p);
  p += 4;
  p += rec.properties.copy(b, p);
  b[p++] = Math.min(255, bcc.length);
  for (let i = 0; i < Math.min(255, bcc.length); i++) p = writeShortstr(b, p, bcc[i]!);
  p += rec.body.copy(b, p);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + len)), at);
  const offset = file.offsetOf(at);
  file.used = at + len;
  return offset;
}

function writeShortstr(b: Buffer, p: number, s: string): number {
  const n = b.write(s, p + 1, 'utf8');
  b[p] = n;
  return p + 1 + n;
}

function decodeRecord(b: Buffer): Released {
  const due = b.readDoubleLE(8);
  const seq = b.readDoubleLE(16);
  const publishedAt = b.readDoubleLE(24);
  let p = RECORD_FIXED;
  const exLen = b[p]!;
  const exchange = b.toString('utf8', p + 1, p + 1 + exLen);
  p += 1 + exLen;
  const rkLen = b[p]!;
  const routingKey = b.toString('utf8', p + 1, p + 1 + rkLen);
  p += 1 + rkLen;
  const propsLen = b.readUInt32LE(p);
  p += 4;
  const properties = b.subarray(p, p + propsLen);
  p += propsLen;
  const nBcc = b[p++]!;
  let bcc: string[] | null = null;
  for (let i = 0; i < nBcc; i++) {
    const n = b[p]!;
    (bcc ??= []).push(b.toString('utf8', p + 1, p + 1 + n));
    p += 1 + n;
  }
  return { exchange, routingKey, properties, body: b.subarray(p), bcc, publishedAt, due, seq };
}

function appendWatermark(file: AppendFile, due: number, seq: number): void {
  const at = file.reserve(WM_RECORD);
  const b = file.buf;
  b.writeDoubleLE(due, at + 4);
  b.writeDoubleLE(seq, at + 12);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + WM_RECORD)), at);
  file.used = at + WM_RECORD;
}

/** Replaces a watermark file by one holding a single record (tmp file, fsync, rename). */
function writeWatermarkFile(dir: string, path: string, key: string, due: number, seq: number, sync: boolean): void {
  const k = Buffer.from(key);
  const b = Buffer.alloc(18 + k.length + WM_RECORD);
  b.writeUInt32LE(WM_MAGIC, 0);
  b.writeUInt16LE(k.length, 16);
  k.copy(b, 18);
  const at = 18 + k.length;
  b.writeDoubleLE(due, at + 4);
  b.writeDoubleLE(seq, at + 12);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + WM_RECORD)), at);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, b);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  if (sync) {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

function readWatermarkFile(path: string): { key: string; due: number; seq: number } | null {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got < 18 || buf.readUInt32LE(0) !== WM_MAGIC) return null;
    const kl = buf.readUInt16LE(16);
    if (18 + kl > got) return null;
    const key = buf.toString('utf8', 18, 18 + kl);
    let due = -Infinity;
    let seq = -1;
    for (let p = 18 + kl; p + WM_RECORD <= got; p += WM_RECORD) {
      if (buf.readUInt32LE(p) !== crc32(buf.subarray(p + 4, p + WM_RECORD))) break;
      due = buf.readDoubleLE(p + 4);
      seq = buf.readDoubleLE(p + 12);
    }
    return { key, due, seq };
  } finally {
    closeSync(fd);
  }
}

/**
 * Recovery scan of one bucket file: checks every record, cuts a torn tail, and counts the
 * messages the watermark does not cover. null for a file that is not a bucket at all.
 */
function scanBucket(
  path: string,
  width: number,
  logger: StoreLogger,
  scheduleOf: (key: string) => DelaySchedule,
): { key: string; no: number; end: number; pending: number; maxSeq: number } | null {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(18);
    if (readSync(fd, head, 0, 18, 0) < 18 || head.readUInt32LE(0) !== BUCKET_MAGIC) return null;
    const no = head.readDoubleLE(4);
    if (head.readUInt32LE(12) !== width) {
      throw new Error(`${path}: written with ${head.readUInt32LE(12)} ms buckets, the store uses ${width} ms`);
    }
    const kl = head.readUInt16LE(16);
    const kb = Buffer.alloc(kl);
    if (readSync(fd, kb, 0, kl, 18) < kl) return null;
    const key = kb.toString('utf8');
    const s = scheduleOf(key);
    let pos = 18 + kl;
    let pending = 0;
    let maxSeq = -1;
    let chunk = Buffer.allocUnsafe(CHUNK);
    let chunkStart = 0;
    let chunkLen = 0;
    const need = (at: number, n: number): boolean => {
      if (at + n > size) return false;
      if (at >= chunkStart && at + n <= chunkStart + chunkLen) return true;
      if (n > chunk.length) chunk = Buffer.allocUnsafe(n);
      chunkStart = at;
      chunkLen = readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at);
      return at + n <= chunkStart + chunkLen;
    };
    while (pos < size) {
      if (!need(pos, RECORD_FIXED)) break;
      const len = chunk.readUInt32LE(pos - chunkStart + 4);
      if (len < RECORD_FIXED || !need(pos, len)) break;
      const o = pos - chunkStart;
      if (chunk.readUInt32LE(o) !== crc32(chunk.subarray(o + 4, o + len))) break;
      const due = chunk.readDoubleLE(o + 8);
      const seq = chunk.readDoubleLE(o + 16);
      if (seq > maxSeq) maxSeq = seq;
      if (!s.isReleased(due, seq)) pending++;
      pos += len;
    }
    if (pos < size) {
      logger.warn({ file: path, at: pos, size }, 'cutting a torn or corrupt tail off a delayed-message bucket');
      ftruncateSync(fd, pos);
      fsyncSync(fd);
    }
    return { key, no, end: pos, pending, maxSeq };
  } finally {
    closeSync(fd);
  }
}

function insertSorted(a: number[], v: number): void {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  if (a[lo] !== v) a.splice(lo, 0, v);
}

function grow<T extends Float64Array | Uint32Array>(a: T, cap: number): T {
  const b = new (a.constructor as new (n: number) => T)(cap);
  b.set(a);
  return b;
}

function readAsync(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, length, position, (err, n) => (err === null ? resolve(n) : reject(err)));
  });
}
