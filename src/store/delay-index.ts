import { appendFile, appendFileSync, close, open, read, rmSync, unlink } from 'node:fs';
import { join } from 'node:path';
import { CHUNK, IDX_ENTRY } from './delay-log';
import { comparePeek, readUnloadedBucket, type PeekEntry } from './delay-peek';
import type { DelayStore } from './delay-store';

// The due-time index of one schedule: where each pending message sits in the log, by due
// time. It lives mostly on disk so that memory grows with the rate of messages coming due,
// not with how many are pending: entries go to one scratch .idx file per bucket (bucketMs
// wide) in small batches, and only buckets about to come due (lookaheadMs ahead) are read
// back, into typed arrays.
//
// A bucket's entries are in seq order (appends are), and a counting sort on the millisecond
// within the bucket is stable, so equal due times keep publish order without a comparison
// sort. Messages due in a bucket already read (short delays) go to a small heap instead.

/** Unspilled index entries per bucket before they are appended to its .idx file. */
const IDX_BATCH = 512;
/** Allocated bytes of all unspilled tails of a schedule before all of them are spilled. */
const TAIL_BUDGET = 4 * 1024 * 1024;

/** Counters for tests and stats, shared by a schedule and its index. */
export interface DelayCounters {
  bucketsLoaded: number;
  chunksRead: number;
  segmentsDeleted: number;
  corrupt: number;
  lateAppends: number;
  spills: number;
}

/** What the index reads of the schedule that owns it, at the moment it needs it. */
export interface IndexOwner {
  readonly dropped: boolean;
  /** The store is rebuilding the index from the log (spills are synchronous). */
  readonly recovering: boolean;
  /** A bucket finished loading: the exchange may release more. */
  readonly onReady: () => void;
}

export interface Bucket {
  readonly no: number;
  readonly path: string;
  /** Messages due in it not yet released. */
  pending: number;
  /** Read into the window (or being read): later appends go to the late heap. */
  loaded: boolean;
  /** Index entries not yet handed to the .idx file. */
  tail: Buffer | null;
  tailUsed: number;
  /** Appends to the .idx file in flight (or queued behind one), and who waits for them to end. */
  writing: number;
  /**
   * Spills waiting for the one in flight: two appends to one file on the thread pool may land
   * in either order, and the load relies on the file being in append (seq) order.
   */
  queued: Buffer[];
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

let incarnations = 0;

/** The due-time buckets, the window read from them, and the late heap of one schedule. */
export class DelayIndex {
  private readonly buckets = new Map<number, Bucket>();
  /** Bucket numbers not yet read, ascending. */
  private unloaded: number[] = [];
  private runs: Run[] = [];
  private readonly late: Late[] = [];
  /** Highest bucket number read or being read. */
  private loadedThrough = -Infinity;
  private loadingNo = Infinity;
  /** Settles once the bucket being read (loadingNo) is in the window. */
  private loading: Promise<void> | null = null;
  /** Allocated bytes of the buckets' unspilled index tails. */
  private tailCapacity = 0;
  /**
   * In .idx names: an append still in flight for a dropped schedule must not land in (or
   * remove) the file of an exchange redeclared under the same name.
   */
  private readonly incarnation = ++incarnations;
  /**
   * The message take() removed. Fields rather than a returned object: releasing must not
   * allocate per message.
   */
  takenDue = 0;
  takenSeq = 0;
  takenSegment = 0;
  takenOffset = 0;
  takenLength = 0;
  private readonly gone = (): boolean => this.owner.dropped || this.store.closed;

  constructor(
    private readonly store: DelayStore,
    private readonly owner: IndexOwner,
    private readonly tag: string,
    private readonly counters: DelayCounters,
  ) {}

  /** Indexes a message appended to the log (or recovered from it). */
  add(due: number, seq: number, segment: number, offset: number, length: number): void {
    const no = Math.floor(due / this.store.bucketMs);
    let b = this.buckets.get(no);
    if (b === undefined) {
      b = { no, path: join(this.store.dir, `${this.tag}-${this.incarnation}-${no}.idx`), pending: 0, loaded: no <= this.loadedThrough, tail: null, tailUsed: 0, writing: 0, queued: [], drained: [], spilled: false, fileBytes: 0 };
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
    if (this.owner.recovering) {
      // Nothing else runs during recovery: queued asynchronous appends would pile up in memory.
      appendFileSync(b.path, data);
      return;
    }
    if (b.writing++ !== 0) {
      b.queued.push(data);
      return;
    }
    this.write(b, data);
  }

  private write(b: Bucket, data: Buffer): void {
    appendFile(b.path, data, (err) => {
      if (err !== null && !this.owner.dropped) this.store.logger.error({ file: b.path, err: String(err) }, 'could not spill a delayed-message index');
      if (b.queued.length !== 0) {
        // Everything queued meanwhile goes in one append, still after this one.
        const next = b.queued.length === 1 ? b.queued[0]! : Buffer.concat(b.queued);
        b.writing -= b.queued.length;
        b.queued = [];
        this.write(b, next);
        return;
      }
      if (--b.writing === 0) {
        const waiting = b.drained;
        b.drained = [];
        for (const w of waiting) w();
      }
    });
  }

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
    if (this.gone() || this.loadingNo !== Infinity || this.unloaded.length === 0) return;
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
    if (!this.gone()) this.owner.onReady();
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
          if (this.gone()) return;
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
    if (this.gone()) return Infinity;
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
   * Removes the earliest message in memory into the taken* fields; false when there is none.
   */
  take(): boolean {
    const r = this.headRun();
    const l = this.late[0];
    let bucket: Bucket;
    if (r !== undefined && (l === undefined || r.due[r.at]! < l.due || (r.due[r.at] === l.due && r.seq[r.at]! < l.seq))) {
      bucket = r.bucket;
      this.takenDue = r.due[r.at]!;
      this.takenSeq = r.seq[r.at]!;
      this.takenOffset = r.offset[r.at]!;
      this.takenSegment = r.segment[r.at]!;
      this.takenLength = r.length[r.at]!;
      r.at++;
    } else if (l !== undefined) {
      this.popLate();
      bucket = l.bucket;
      this.takenDue = l.due;
      this.takenSeq = l.seq;
      this.takenOffset = l.offset;
      this.takenSegment = l.segment;
      this.takenLength = l.length;
    } else {
      return false;
    }
    if (--bucket.pending === 0 && this.buckets.get(bucket.no) === bucket) this.buckets.delete(bucket.no);
    return true;
  }

  // ---- listing (read only) --------------------------------------------------------------

  /** The next count pending index entries in release order (see DelaySchedule.peek). */
  async peekEntries(count: number): Promise<PeekEntry[]> {
    const out: PeekEntry[] = [];
    if (count <= 0) return out;
    // A bucket being read is in neither the window nor its file's reach: wait for it.
    while (this.loading !== null) await this.loading;
    if (this.gone()) return out;
    // Everything in memory belongs to buckets up to loadedThrough, all before unread ones.
    let prev = this.loadedThrough;
    out.push(...this.windowEntries(null, count));
    while (out.length < count) {
      const no = this.nextBucketAfter(prev);
      if (no === Infinity) break;
      out.push(...(await this.bucketEntries(no, count - out.length)));
      if (this.gone()) break;
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
      if (this.gone()) return [];
      if (this.loadingNo === no && this.loading !== null) {
        await this.loading;
        continue;
      }
      const b = this.buckets.get(no);
      if (b === undefined) return [];
      if (b.loaded) return this.windowEntries(b, k);
      const got = await readUnloadedBucket(b, k, this.gone);
      if (got !== null) return got;
      // The loader took the bucket meanwhile: its entries are in the window now.
    }
  }

  /** The schedule was dropped: .idx files go, and memory is let go. */
  drop(): void {
    for (const b of this.buckets.values()) if (b.spilled || b.writing !== 0) rmSync(b.path, { force: true });
    // An append still in flight may recreate an .idx file: removed when it ends.
    for (const b of this.buckets.values()) if (b.writing !== 0) b.drained.push(() => rmSync(b.path, { force: true }));
    this.buckets.clear();
    this.unloaded = [];
    this.runs = [];
    this.late.length = 0;
    this.tailCapacity = 0;
  }

  /** Bytes kept in memory for the window, the tails and the bookkeeping. */
  residentBytes(): number {
    let bytes = this.buckets.size * 200 + this.late.length * 100 + this.unloaded.length * 8 + this.tailCapacity;
    for (const r of this.runs) bytes += r.n * 32;
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

function clampOffset(d: number, width: number): number {
  return d < 0 ? 0 : d >= width ? width - 1 : d;
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
