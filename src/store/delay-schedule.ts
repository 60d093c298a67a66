import { createHash } from 'node:crypto';
import { fstatSync, openSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { AppendFile } from './append-file';
import { DelayIndex, type DelayCounters } from './delay-index';
import { appendWatermark, decodeRecord, encodeRecord, LOG_MAGIC, WM_MAGIC, writeHeader, writeWatermarkFile, type DelayedRecord, type Released, type Segment } from './delay-log';
import { readPeekedRecords, type Peeked } from './delay-peek';
import type { DelayStore } from './delay-store';

// Each delayed exchange appends its messages, in publish order, to a log of segment files
// (delay-log.ts has the formats); where each message is goes into the due-time index
// (delay-index.ts). Release order is (due, seq) per exchange, seq being publish order.
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

/** A watermark file is rewritten to one record once it grows past this. */
const WM_ROTATE = 1024 * 1024;

export function scheduleTag(key: string): string {
  return createHash('sha1').update(key).digest('hex').slice(0, 24);
}

/** The schedule of one delayed exchange in one DelayStore. */
export class DelaySchedule {
  private readonly segments = new Map<number, Segment>();
  private active: Segment | null = null;
  private nextSegmentNo = 1;
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
  dropped = false;
  /** The store is rebuilding the index from the log (spills are synchronous). */
  recovering = false;
  /** A bucket finished loading: the exchange may release more. */
  onReady: () => void = () => {};
  /** Counters for tests and stats. */
  readonly counters: DelayCounters = { bucketsLoaded: 0, chunksRead: 0, segmentsDeleted: 0, corrupt: 0, lateAppends: 0, spills: 0 };
  private readonly index: DelayIndex;
  private readonly gone = (): boolean => this.dropped || this.store.closed;

  constructor(
    private readonly store: DelayStore,
    readonly key: string,
    readonly tag: string,
  ) {
    this.index = new DelayIndex(store, this, tag, this.counters);
  }

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
    this.index.add(due, seq, seg.no, offset, length);
    this.pending++;
    if (seq > this.maxSeq) this.maxSeq = seq;
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

  // ---- releasing ------------------------------------------------------------------------

  /**
   * Messages due before this are all in memory (the first bucket not yet read starts here).
   * A release must wait for the loader when the head is not before it.
   */
  get frontier(): number {
    return this.index.frontier;
  }

  /** When the next bucket should start loading (Infinity when none is left). */
  get nextLoadAt(): number {
    return this.index.nextLoadAt;
  }

  /** Starts reading the next bucket if it is within the lookahead and none is being read. */
  pump(now: number): void {
    this.index.pump(now);
  }

  /** Due time of the earliest message in memory (Infinity when none). */
  headDue(): number {
    return this.index.headDue();
  }

  /** Seq of the earliest message in memory (for merging schedules at equal due times). */
  headSeq(): number {
    return this.index.headSeq();
  }

  /**
   * Removes the earliest message in memory and reads it back; null when its record is corrupt
   * (logged and counted: the message is lost, as a corrupt segment record would be).
   */
  take(): Released | null {
    const ix = this.index;
    if (!ix.take()) return null;
    const due = ix.takenDue;
    const seq = ix.takenSeq;
    const segment = ix.takenSegment;
    const offset = ix.takenOffset;
    const length = ix.takenLength;
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
  async peek(count: number): Promise<Peeked[]> {
    return readPeekedRecords(await this.index.peekEntries(count), this.segments, this.gone);
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
      if (this.gone()) return;
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
    this.index.add(due, seq, seg.no, offset, length);
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
    this.index.drop();
    if (this.wm !== null) this.store.closeLater(this.wm);
    this.wm = null;
    rmSync(join(this.store.dir, `${this.tag}.wm`), { force: true });
    this.store.directoryChanged();
    this.pending = 0;
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
    return this.index.residentBytes() + this.segments.size * 200;
  }

  get bucketCount(): number {
    return this.index.bucketCount;
  }

  get segmentCount(): number {
    return this.segments.size;
  }
}
