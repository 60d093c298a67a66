import { createHash } from 'node:crypto';
import { appendFile, appendFileSync, close, closeSync, fsyncSync, ftruncateSync, fstatSync, mkdirSync, open, openSync, read, readdirSync, readSync, renameSync, rmSync, unlink, unlinkSync, writeSync } from 'node:fs';
import { open as openPromise, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { AppendFile } from './append-file';
import { GroupCommit } from './group-commit';
import type { StoreLogger, SyncCallback } from './message-store';

// Pending delayed messages live on disk, not in memory. Each delayed exchange appends its
// messages, in publish order, to a log of segment files (one file written and fsynced per
// group commit, however spread the due times are). Where each message is goes into an index
// of due-time buckets (bucketMs wide), 32 bytes per message, spilled to one scratch .idx file
// per bucket in small batches. Memory holds, per bucket, a counter and at most a few KB of
// unspilled entries, and per log segment a live count. Only buckets about to come due
// (lookaheadMs ahead) are read back, into typed arrays; bodies are read from the log one by
// one as they are released. So resident memory grows with the rate of messages coming due,
// not with how many are pending.
//
// Release order is (due, seq) per exchange, seq being publish order. A bucket's entries are
// in seq order (appends are), and a counting sort on the millisecond within the bucket is
// stable, so equal due times keep publish order without a comparison sort.
//
// Durable schedules (persistent messages on durable exchanges) are crash-safe:
//   - a message is confirmed once its log record is fsynced (afterSync);
//   - the .idx files are derived: every open rebuilds them from the log;
//   - a log segment is unlinked only after every message in it was released and the copies
//     the release routed to durable queues are fsynced by the message store (routedDurable);
//   - the (due, seq) of the last released message is appended to the exchange's watermark
//     file at the same point, so a restart skips what was already released (exactly once
//     without a crash; a crash between the routing and the watermark repeats at most the
//     messages released since the last watermark: at least once).
// Messages may not be released before the watermark: a new message whose due time lies
// before the last released one (the clock stepped back) is moved up to it.
//
// Files:  <tag>-<segment>.log   header, then records     (tag: hash of the exchange's key)
//         <tag>-<n>-<bucket>.idx  index entries (scratch; n tells incarnations apart)
//         <tag>.wm              header, then watermarks
//   record     crc u32 · len u32 · due f64 · seq f64 · publishedAt f64 · exchange shortstr ·
//              routing key shortstr · properties (u32 length + bytes) · bcc count u8 +
//              shortstrs · body (the rest); crc covers everything after itself
//   idx entry  due f64 · seq f64 · offset f64 · segment u32 · length u32
//   watermark  crc u32 · due f64 · seq f64

const LOG_MAGIC = 0x474c4457;
const WM_MAGIC = 0x4d574457;
const RECORD_FIXED = 32;
const WM_RECORD = 20;
const IDX_ENTRY = 32;
const CHUNK = 1024 * 1024;
/** Unspilled index entries per bucket before they are appended to its .idx file. */
const IDX_BATCH = 512;
/** Allocated bytes of all unspilled tails of a schedule before all of them are spilled. */
const TAIL_BUDGET = 4 * 1024 * 1024;
/** A watermark file is rewritten to one record once it grows past this. */
const WM_ROTATE = 1024 * 1024;

export interface DelayStoreOptions {
  readonly dir: string;
  /** Durable: fsynced, recovered at open. Otherwise scratch: wiped at open, never fsynced. */
  readonly durable: boolean;
  /** Width of a due-time bucket. Default 1000 ms. */
  readonly bucketMs?: number;
  /** How far ahead of its start a bucket is read back into memory. Default 2 buckets. */
  readonly lookaheadMs?: number;
  /** A log segment rolls over past this size. Default 64 MiB. */
  readonly segmentSize?: number;
  readonly logger?: StoreLogger;
  /**
   * Calls back once everything the broker routed so far is durable in the message store:
   * released messages' own copies must be on disk before their segment or watermark goes.
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

interface Segment {
  readonly no: number;
  readonly path: string;
  file: AppendFile;
  /** Messages in it not yet released. */
  live: number;
}

interface Bucket {
  readonly no: number;
  readonly path: string;
  /** Messages due in it not yet released. */
  pending: number;
  /** Read into the window (or being read): later appends go to the late heap. */
  loaded: boolean;
  /** Index entries not yet handed to the .idx file. */
  tail: Buffer | null;
  tailUsed: number;
  /** Appends to the .idx file in flight, and who waits for them to end. */
  writing: number;
  drained: Array<() => void>;
  /** The .idx file exists. */
  spilled: boolean;
  /** Bytes handed to the .idx file so far (peek reads exactly this much once writes end). */
  fileBytes: number;
}

/** One bucket's messages in release order, read back from its index. */
interface Run {
  readonly due: Float64Array;
  readonly seq: Float64Array;
  readonly offset: Float64Array;
  readonly segment: Uint32Array;
  readonly length: Uint32Array;
  readonly n: number;
  at: number;
  readonly bucket: Bucket;
}

/** A message appended to a bucket that was already read (short delays). */
interface Late {
  readonly due: number;
  readonly seq: number;
  readonly bucket: Bucket;
  readonly segment: number;
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
  private readonly segments = new Map<number, Segment>();
  private active: Segment | null = null;
  private nextSegmentNo = 1;
  /** Bucket numbers not yet read, ascending. */
  private unloaded: number[] = [];
  private runs: Run[] = [];
  private readonly late: Late[] = [];
  /** Highest bucket number read or being read. */
  private loadedThrough = -Infinity;
  private loadingNo = Infinity;
  /** Settles once the bucket being read (loadingNo) is in the window. */
  private loading: Promise<void> | null = null;
  /** Messages not yet released. */
  pending = 0;
  /** Highest seq ever appended (or recovered); the exchange continues after it. */
  maxSeq = -1;
  /** Last released (due, seq); nothing earlier may be released any more. */
  private releasedDue = -Infinity;
  private releasedSeq = -1;
  /** What the watermark file says (durable). */
  private persistedDue = -Infinity;
  private persistedSeq = -1;
  private wm: AppendFile | null = null;
  private emptied: Segment[] = [];
  private settling = false;
  /** Allocated bytes of the buckets' unspilled index tails. */
  private tailCapacity = 0;
  dropped = false;
  /** The store is rebuilding the index from the log (spills are synchronous). */
  recovering = false;
  /** A bucket finished loading: the exchange may release more. */
  onReady: () => void = () => {};
  /**
   * In .idx names: an append still in flight for a dropped schedule must not land in (or
   * remove) the file of an exchange redeclared under the same name.
   */
  private readonly incarnation = ++incarnations;
  /** Counters for tests and stats. */
  readonly counters = { bucketsLoaded: 0, chunksRead: 0, segmentsDeleted: 0, corrupt: 0, lateAppends: 0, spills: 0 };

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
    let seg = this.active;
    if (seg === null || seg.file.end >= this.store.segmentSize) seg = this.roll();
    const offset = encodeRecord(seg.file, rec, due, seq);
    const length = seg.file.end - offset;
    seg.live++;
    this.store.appended(seg.file);
    this.index(due, seq, seg.no, offset, length);
    this.pending++;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  private index(due: number, seq: number, segment: number, offset: number, length: number): void {
    const no = Math.floor(due / this.store.bucketMs);
    let b = this.buckets.get(no);
    if (b === undefined) {
      b = { no, path: join(this.store.dir, `${this.tag}-${this.incarnation}-${no}.idx`), pending: 0, loaded: no <= this.loadedThrough, tail: null, tailUsed: 0, writing: 0, drained: [], spilled: false, fileBytes: 0 };
      this.buckets.set(no, b);
      if (!b.loaded) insertSorted(this.unloaded, no);
    }
    b.pending++;
    if (b.loaded) {
      this.counters.lateAppends++;
      this.pushLate({ due, seq, bucket: b, segment, offset, length });
      return;
    }
    // Tails start small and double: many buckets with a few entries each must stay cheap.
    if (b.tail === null || b.tailUsed === b.tail.length) {
      const size = b.tail === null ? 8 * IDX_ENTRY : b.tail.length * 2;
      const next = Buffer.allocUnsafe(size);
      if (b.tail !== null) b.tail.copy(next, 0, 0, b.tailUsed);
      this.tailCapacity += size - (b.tail?.length ?? 0);
      b.tail = next;
    }
    const t = b.tail;
    const p = b.tailUsed;
    t.writeDoubleLE(due, p);
    t.writeDoubleLE(seq, p + 8);
    t.writeDoubleLE(offset, p + 16);
    t.writeUInt32LE(segment, p + 24);
    t.writeUInt32LE(length, p + 28);
    b.tailUsed = p + IDX_ENTRY;
    if (b.tailUsed === IDX_BATCH * IDX_ENTRY) this.spill(b);
    else if (this.tailCapacity > TAIL_BUDGET) this.spillAll();
  }

  /** Tails of many buckets add up: past the budget, every bucket spills what it holds. */
  private spillAll(): void {
    for (const b of this.buckets.values()) if (b.tail !== null && !b.loaded) this.spill(b);
  }

  /** Appends a bucket's unspilled entries to its .idx file (thread pool; no fsync: derived). */
  private spill(b: Bucket): void {
    const data = b.tail!.subarray(0, b.tailUsed);
    this.tailCapacity -= b.tail!.length;
    b.tail = null;
    b.tailUsed = 0;
    b.spilled = true;
    b.fileBytes += data.length;
    this.counters.spills++;
    if (this.recovering) {
      // Nothing else runs during recovery: queued asynchronous appends would pile up in memory.
      appendFileSync(b.path, data);
      return;
    }
    b.writing++;
    appendFile(b.path, data, (err) => {
      if (err !== null && !this.dropped) this.store.logger.error({ file: b.path, err: String(err) }, 'could not spill a delayed-message index');
      if (--b.writing === 0) {
        const waiting = b.drained;
        b.drained = [];
        for (const w of waiting) w();
      }
    });
  }

  private roll(): Segment {
    const no = this.nextSegmentNo++;
    const path = join(this.store.dir, `${this.tag}-${no}.log`);
    const file = new AppendFile(path, openSync(path, 'wx+'), 0, 1024 * 1024);
    writeHeader(file, LOG_MAGIC, this.key, no, this.store.bucketMs);
    const seg: Segment = { no, path, file, live: 0 };
    this.segments.set(no, seg);
    const old = this.active;
    this.active = seg;
    this.store.appended(file);
    this.store.directoryChanged();
    if (old !== null) {
      old.file.seal();
      if (old.live === 0) this.emptied.push(old);
    }
    return seg;
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
    this.loading = this.load(b).then(
      () => this.loaded(),
      (err: unknown) => {
        this.store.logger.error({ file: b.path, err: String(err) }, 'could not read a delayed-message index');
        this.loaded();
      },
    );
  }

  private loaded(): void {
    this.loadingNo = Infinity;
    this.loading = null;
    if (!this.dropped && !this.store.closed) this.onReady();
  }

  /** Reads a bucket's index in bounded chunks, then orders it by (due, seq). */
  private async load(b: Bucket): Promise<void> {
    const width = this.store.bucketMs;
    const base = b.no * width;
    // Entries still in memory are taken now; later appends go to the late heap.
    const tail = b.tail === null ? null : b.tail.subarray(0, b.tailUsed);
    this.tailCapacity -= b.tail?.length ?? 0;
    b.tail = null;
    b.tailUsed = 0;
    if (b.writing !== 0) await new Promise<void>((resolve) => b.drained.push(resolve));
    const parts: Buffer[] = [];
    if (b.spilled) {
      const fd = await openAsync(b.path);
      try {
        for (let pos = 0; ; ) {
          const chunk = Buffer.allocUnsafe(CHUNK);
          const n = await readAsync(fd, chunk, CHUNK, pos);
          if (this.dropped || this.store.closed) return;
          this.counters.chunksRead++;
          if (n === 0) break;
          parts.push(chunk.subarray(0, n - (n % IDX_ENTRY)));
          pos += n - (n % IDX_ENTRY);
          if (n < CHUNK) break;
        }
      } finally {
        close(fd, () => {});
      }
      // Everything is in memory from here on: the file is not needed again.
      unlink(b.path, () => {});
      b.spilled = false;
    }
    if (tail !== null) parts.push(tail);
    let n = 0;
    for (const p of parts) n += p.length / IDX_ENTRY;
    // Stable counting sort on the millisecond within the bucket: entries are in seq order.
    const starts = new Uint32Array(width + 1);
    for (const p of parts) for (let o = 0; o < p.length; o += IDX_ENTRY) starts[clampOffset(p.readDoubleLE(o) - base, width) + 1]!++;
    for (let i = 1; i <= width; i++) starts[i]! += starts[i - 1]!;
    const run: Run = { due: new Float64Array(n), seq: new Float64Array(n), offset: new Float64Array(n), segment: new Uint32Array(n), length: new Uint32Array(n), n, at: 0, bucket: b };
    for (const p of parts) {
      for (let o = 0; o < p.length; o += IDX_ENTRY) {
        const due = p.readDoubleLE(o);
        const at = starts[clampOffset(due - base, width)]!++;
        run.due[at] = due;
        run.seq[at] = p.readDoubleLE(o + 8);
        run.offset[at] = p.readDoubleLE(o + 16);
        run.segment[at] = p.readUInt32LE(o + 24);
        run.length[at] = p.readUInt32LE(o + 28);
      }
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
    let segment: number;
    let offset: number;
    let length: number;
    let due: number;
    let seq: number;
    if (r !== undefined && (l === undefined || r.due[r.at]! < l.due || (r.due[r.at] === l.due && r.seq[r.at]! < l.seq))) {
      bucket = r.bucket;
      due = r.due[r.at]!;
      seq = r.seq[r.at]!;
      offset = r.offset[r.at]!;
      segment = r.segment[r.at]!;
      length = r.length[r.at]!;
      r.at++;
    } else if (l !== undefined) {
      this.popLate();
      ({ bucket, due, seq, segment, offset, length } = l);
    } else {
      return null;
    }
    if (--bucket.pending === 0 && this.buckets.get(bucket.no) === bucket) this.buckets.delete(bucket.no);
    this.pending--;
    this.releasedDue = due;
    this.releasedSeq = seq;
    const seg = this.segments.get(segment);
    if (seg === undefined) {
      this.counters.corrupt++;
      return null;
    }
    if (--seg.live === 0 && seg !== this.active) this.emptied.push(seg);
    const buf = seg.file.read(offset, length);
    if (buf.readUInt32LE(0) !== crc32(buf.subarray(4)) || buf.readDoubleLE(16) !== seq) {
      this.counters.corrupt++;
      this.store.logger.error({ file: seg.path, offset }, 'corrupt delayed-message record dropped');
      return null;
    }
    return decodeRecord(buf);
  }

  // ---- listing (read only) --------------------------------------------------------------

  /**
   * The next `count` pending messages in release order, read without changing anything: no
   * bucket is loaded or released, no file is removed, no counter moves. The window (runs and
   * late heap) is copied; buckets not yet read are read from their .idx files in bounded
   * asynchronous chunks plus their unspilled tails, bucket after bucket only until `count` are
   * found; records are read from the log asynchronously (a record still in a write buffer is
   * copied from memory). Releases and appends go on meanwhile, so the answer is approximate
   * at its edges: a message released while listing may still be shown or be left out, and one
   * appended while listing shows only if its bucket is read after the append (a message due
   * before a bucket already read is missed).
   */
  async peek(count: number): Promise<Array<{ due: number; seq: number; record: DelayedRecord }>> {
    return this.readEntries(await this.peekEntries(count));
  }

  private async peekEntries(count: number): Promise<PeekEntry[]> {
    const out: PeekEntry[] = [];
    if (count <= 0) return out;
    // A bucket being read is in neither the window nor its file's reach: wait for it.
    while (this.loading !== null) await this.loading;
    if (this.dropped || this.store.closed) return out;
    // Everything in memory belongs to buckets up to loadedThrough, all before unread ones.
    let prev = this.loadedThrough;
    out.push(...this.windowEntries(null, count));
    while (out.length < count) {
      const no = this.nextBucketAfter(prev);
      if (no === Infinity) break;
      out.push(...(await this.bucketEntries(no, count - out.length)));
      if (this.dropped || this.store.closed) break;
      prev = no;
    }
    return out;
  }

  /** The first k entries in memory (of one bucket, or of all), in release order. */
  private windowEntries(bucket: Bucket | null, k: number): PeekEntry[] {
    const out: PeekEntry[] = [];
    // Runs are disjoint, in bucket order, each sorted.
    for (const r of this.runs) {
      if (out.length >= k) break;
      if (bucket !== null && r.bucket !== bucket) continue;
      for (let i = r.at; i < r.n && out.length < k; i++) {
        out.push({ due: r.due[i]!, seq: r.seq[i]!, segment: r.segment[i]!, offset: r.offset[i]!, length: r.length[i]! });
      }
    }
    const late: PeekEntry[] = [];
    for (const l of this.late) if (bucket === null || l.bucket === bucket) late.push({ due: l.due, seq: l.seq, segment: l.segment, offset: l.offset, length: l.length });
    if (late.length === 0) return out;
    return [...out, ...late].sort(comparePeek).slice(0, k);
  }

  /** The lowest bucket number after prev that may hold pending messages (Infinity: none). */
  private nextBucketAfter(prev: number): number {
    const u = this.unloaded;
    let lo = 0;
    let hi = u.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (u[mid]! <= prev) lo = mid + 1;
      else hi = mid;
    }
    let best = lo < u.length ? u[lo]! : Infinity;
    if (this.loadedThrough > prev) {
      // Buckets read into the window since the listing started.
      if (this.loadingNo > prev && this.loadingNo < best) best = this.loadingNo;
      for (const r of this.runs) if (r.at < r.n && r.bucket.no > prev && r.bucket.no < best) best = r.bucket.no;
      for (const l of this.late) if (l.bucket.no > prev && l.bucket.no < best) best = l.bucket.no;
    }
    return best;
  }

  /** The first k pending entries of bucket no, wherever they are now. */
  private async bucketEntries(no: number, k: number): Promise<PeekEntry[]> {
    for (;;) {
      if (this.dropped || this.store.closed) return [];
      if (this.loadingNo === no && this.loading !== null) {
        await this.loading;
        continue;
      }
      const b = this.buckets.get(no);
      if (b === undefined) return [];
      if (b.loaded) return this.windowEntries(b, k);
      const got = await this.readBucket(b, k);
      if (got !== null) return got;
      // The loader took the bucket meanwhile: its entries are in the window now.
    }
  }

  /**
   * Reads an unread bucket's .idx file in chunks, keeping the k earliest entries, then adds
   * its unspilled tail. Null when the bucket was loaded meanwhile (the caller looks again).
   */
  private async readBucket(b: Bucket, k: number): Promise<PeekEntry[] | null> {
    const best = new Earliest(k);
    let fh: FileHandle | null = null;
    let pos = 0;
    try {
      for (;;) {
        if (b.loaded || this.dropped || this.store.closed) return null;
        if (b.writing !== 0) {
          // Bytes being appended are neither in the tail nor surely in the file yet.
          await new Promise<void>((resolve) => b.drained.push(resolve));
          continue;
        }
        const end = b.fileBytes;
        if (pos >= end) {
          // All spilled entries are read and nothing is in flight: file + tail is the bucket.
          if (b.tail !== null) best.add(b.tail, b.tailUsed);
          return best.result();
        }
        if (fh === null) {
          try {
            fh = await openPromise(b.path, 'r');
          } catch {
            return null;
          }
          continue;
        }
        const len = Math.min(CHUNK, end - pos);
        const chunk = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(chunk, 0, len, pos);
        if (b.loaded || this.dropped || this.store.closed) return null;
        const whole = bytesRead - (bytesRead % IDX_ENTRY);
        if (whole === 0) {
          // Should not happen (those bytes were written); answer what there is.
          if (b.tail !== null) best.add(b.tail, b.tailUsed);
          return best.result();
        }
        best.add(chunk, whole);
        pos += whole;
      }
    } finally {
      if (fh !== null) await fh.close().catch(() => {});
    }
  }

  /** Reads the records of entries, skipping those released (and their segment gone) meanwhile. */
  private async readEntries(entries: readonly PeekEntry[]): Promise<Array<{ due: number; seq: number; record: DelayedRecord }>> {
    const out: Array<{ due: number; seq: number; record: DelayedRecord }> = [];
    const handles = new Map<number, FileHandle | null>();
    try {
      for (const e of entries) {
        if (this.dropped || this.store.closed) break;
        const seg = this.segments.get(e.segment);
        if (seg === undefined) continue;
        let buf: Buffer;
        if (e.offset + e.length <= seg.file.size) {
          let fh = handles.get(e.segment);
          if (fh === undefined) {
            fh = await openPromise(seg.path, 'r').catch(() => null);
            handles.set(e.segment, fh);
          }
          if (fh === null) continue;
          buf = Buffer.allocUnsafe(e.length);
          const { bytesRead } = await fh.read(buf, 0, e.length, e.offset);
          if (bytesRead < e.length) continue;
        } else {
          // Not written yet: copied from the segment's buffers (one record, bounded).
          if (this.segments.get(e.segment) !== seg) continue;
          buf = seg.file.read(e.offset, e.length);
        }
        if (buf.length < RECORD_FIXED || buf.readUInt32LE(0) !== crc32(buf.subarray(4)) || buf.readDoubleLE(16) !== e.seq) continue;
        const { due, seq, ...record } = decodeRecord(buf);
        out.push({ due, seq, record });
      }
    } finally {
      for (const fh of handles.values()) if (fh !== null) await fh.close().catch(() => {});
    }
    return out;
  }

  /**
   * A batch of releases was routed. Emptied segments go, and the watermark moves, once the
   * routed copies are durable (at once for a scratch store: nothing survives a restart).
   */
  settle(): void {
    if (this.settling || this.dropped) return;
    if (!this.store.durable) {
      for (const seg of this.emptied) if (seg.live === 0 && seg !== this.active) this.deleteSegment(seg);
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
      for (const seg of emptied) if (seg.live === 0 && seg !== this.active && this.segments.get(seg.no) === seg) this.deleteSegment(seg);
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

  /** Recovery: what the watermark file said. */
  recoveredWatermark(due: number, seq: number): void {
    this.persistedDue = this.releasedDue = due;
    this.persistedSeq = this.releasedSeq = seq;
    if (seq > this.maxSeq) this.maxSeq = seq;
  }

  /** Recovery: a log segment found on disk, and its live records (visited by the caller). */
  recoveredSegment(no: number, path: string, end: number): { no: number; live: number } {
    const file = new AppendFile(path, openSync(path, 'r+'), end, 0);
    file.seal();
    const seg: Segment = { no, path, file, live: 0 };
    this.segments.set(no, seg);
    if (no >= this.nextSegmentNo) this.nextSegmentNo = no + 1;
    return seg;
  }

  recoveredRecord(seg: { no: number; live: number }, due: number, seq: number, offset: number, length: number): void {
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (this.isReleased(due, seq)) return;
    (seg as Segment).live++;
    this.index(due, seq, seg.no, offset, length);
    this.pending++;
  }

  /** Recovery: segments without live records go; index tails are spilled synchronously. */
  recoveryDone(): void {
    this.recovering = false;
    for (const seg of [...this.segments.values()]) {
      if (seg.live === 0) {
        this.segments.delete(seg.no);
        seg.file.close();
        unlinkSync(seg.path);
      }
    }
  }

  isReleased(due: number, seq: number): boolean {
    return due < this.persistedDue || (due === this.persistedDue && seq <= this.persistedSeq);
  }

  private deleteSegment(seg: Segment): void {
    this.segments.delete(seg.no);
    unlinkSync(seg.path);
    this.store.closeLater(seg.file);
    this.store.directoryChanged();
    this.counters.segmentsDeleted++;
  }

  /** The exchange was deleted: every file goes. */
  drop(): void {
    if (this.dropped) return;
    this.dropped = true;
    for (const seg of this.segments.values()) {
      rmSync(seg.path, { force: true });
      this.store.closeLater(seg.file);
    }
    this.segments.clear();
    this.active = null;
    for (const b of this.buckets.values()) if (b.spilled || b.writing !== 0) rmSync(b.path, { force: true });
    // An append still in flight may recreate an .idx file: removed when it ends.
    for (const b of this.buckets.values()) if (b.writing !== 0) b.drained.push(() => rmSync(b.path, { force: true }));
    this.buckets.clear();
    if (this.wm !== null) this.store.closeLater(this.wm);
    this.wm = null;
    rmSync(join(this.store.dir, `${this.tag}.wm`), { force: true });
    this.store.directoryChanged();
    this.unloaded = [];
    this.runs = [];
    this.late.length = 0;
    this.pending = 0;
    this.tailCapacity = 0;
    this.store.forget(this);
  }

  /** Close: the message store is already closed (and synced), so the watermark may move. */
  finalWatermark(): void {
    if (this.store.durable && !this.dropped) this.writeWatermark(this.releasedDue, this.releasedSeq);
  }

  /** Files to close with the store. */
  files(): AppendFile[] {
    const out = [...this.segments.values()].map((s) => s.file);
    if (this.wm !== null) out.push(this.wm);
    return out;
  }

  /** Bytes this schedule keeps in memory for its messages (window, tails and bookkeeping). */
  residentBytes(): number {
    let bytes = this.buckets.size * 200 + this.segments.size * 200 + this.late.length * 100 + this.unloaded.length * 8 + this.tailCapacity;
    for (const r of this.runs) bytes += r.n * 32;
    return bytes;
  }

  get bucketCount(): number {
    return this.buckets.size;
  }

  get segmentCount(): number {
    return this.segments.size;
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

let incarnations = 0;

/** An index entry as peek() collects it. */
interface PeekEntry {
  readonly due: number;
  readonly seq: number;
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
}

function comparePeek(a: PeekEntry, b: PeekEntry): number {
  return a.due - b.due || a.seq - b.seq;
}

/** Keeps the k earliest (due, seq) of index entries fed in any order; memory O(k). */
class Earliest {
  private items: PeekEntry[] = [];
  private worst: PeekEntry | null = null;

  constructor(private readonly k: number) {}

  /** Adds the index entries in buf[0, bytes). */
  add(buf: Buffer, bytes: number): void {
    for (let o = 0; o + IDX_ENTRY <= bytes; o += IDX_ENTRY) {
      const due = buf.readDoubleLE(o);
      const seq = buf.readDoubleLE(o + 8);
      const w = this.worst;
      if (w !== null && (due > w.due || (due === w.due && seq >= w.seq))) continue;
      this.items.push({ due, seq, offset: buf.readDoubleLE(o + 16), segment: buf.readUInt32LE(o + 24), length: buf.readUInt32LE(o + 28) });
      if (this.items.length >= 2 * this.k) this.trim();
    }
  }

  private trim(): void {
    this.items.sort(comparePeek);
    if (this.items.length >= this.k) {
      this.items.length = this.k;
      this.worst = this.items[this.k - 1]!;
    }
  }

  result(): PeekEntry[] {
    this.trim();
    return this.items;
  }
}

function clampOffset(d: number, width: number): number {
  return d < 0 ? 0 : d >= width ? width - 1 : d;
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
  readonly segmentSize: number;
  readonly logger: StoreLogger;
  closed = false;
  private readonly dirFd: number;
  private readonly commit: GroupCommit;
  private readonly schedules = new Map<string, DelaySchedule>();
  private toClose: AppendFile[] = [];
  private readonly routed: (cb: SyncCallback) => void;

  private constructor(options: DelayStoreOptions) {
    this.dir = options.dir;
    this.durable = options.durable;
    this.bucketMs = Math.max(1, Math.floor(options.bucketMs ?? 1000));
    this.lookaheadMs = options.lookaheadMs ?? 2 * this.bucketMs;
    this.segmentSize = options.segmentSize ?? 64 * 1024 * 1024;
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

  /** Keys of the schedules known (after recovery: those found on disk). */
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
    return n;
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
    for (const s of this.schedules.values()) for (const f of s.files()) f.close();
    for (const f of this.toClose) f.close();
    this.toClose = [];
    for (const s of this.schedules.values()) s.dropped = true;
    closeSync(this.dirFd);
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- for schedules -------------------------------------------------------------------

  /** Registers an append for the next write round. */
  appended(file: AppendFile): void {
    this.commit.touch(file);
    this.commit.appended++;
    this.commit.scheduleTurn();
  }

  directoryChanged(): void {
    this.commit.directoryChanged();
    this.commit.scheduleTurn();
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
    if (this.toClose.length === 0) return;
    const files = this.toClose;
    this.toClose = [];
    for (const f of files) this.commit.closeWhenIdle(f);
  }

  /**
   * Reads every log: watermarks first, then segments in order (torn tails cut), rebuilding
   * the bucket index of the messages the watermark does not cover.
   */
  private recover(): void {
    const names = readdirSync(this.dir);
    for (const name of names) {
      if (name.endsWith('.wm.tmp') || name.endsWith('.idx')) rmSync(join(this.dir, name), { force: true });
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
    const logs = names
      .filter((n) => n.endsWith('.log'))
      .map((n) => ({ name: n, no: Number(n.slice(n.lastIndexOf('-') + 1, -4)) }))
      .sort((a, b) => a.no - b.no);
    for (const { name } of logs) {
      const path = join(this.dir, name);
      scanSegment(path, this.logger, (key, no, end) => {
        const s = this.schedule(key);
        s.recovering = true;
        const seg = s.recoveredSegment(no, path, end);
        return (due, seq, offset, length) => s.recoveredRecord(seg, due, seq, offset, length);
      });
    }
    for (const s of this.schedules.values()) s.recoveryDone();
    fsyncSync(this.dirFd);
  }
}

/**
 * Recovery scan of one log segment: checks every record, cuts a torn or corrupt tail, and
 * hands each record's position to the schedule that owns the segment.
 */
function scanSegment(
  path: string,
  logger: StoreLogger,
  owner: (key: string, no: number, end: number) => (due: number, seq: number, offset: number, length: number) => void,
): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(18);
    if (readSync(fd, head, 0, 18, 0) < 18 || head.readUInt32LE(0) !== LOG_MAGIC) {
      logger.warn({ file: path }, 'removing a delayed-message log without a header');
      unlinkSync(path);
      return;
    }
    const no = head.readDoubleLE(4);
    const kl = head.readUInt16LE(16);
    const kb = Buffer.alloc(kl);
    if (readSync(fd, kb, 0, kl, 18) < kl) {
      unlinkSync(path);
      return;
    }
    const key = kb.toString('utf8');
    const records: Array<[number, number, number, number]> = [];
    let pos = 18 + kl;
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
      records.push([chunk.readDoubleLE(o + 8), chunk.readDoubleLE(o + 16), pos, len]);
      pos += len;
    }
    if (pos < size) {
      logger.warn({ file: path, at: pos, size }, 'cutting a torn or corrupt tail off a delayed-message log');
      ftruncateSync(fd, pos);
      fsyncSync(fd);
    }
    const visit = owner(key, no, pos);
    for (const [due, seq, offset, length] of records) visit(due, seq, offset, length);
  } finally {
    closeSync(fd);
  }
}

// ---- encoding ---------------------------------------------------------------------------

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

function readAsync(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buf, 0, length, position, (err, n) => (err === null ? resolve(n) : reject(err)));
  });
}

function openAsync(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (err, fd) => (err === null ? resolve(fd) : reject(err)));
  });
}
