import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import type { AppendFile } from './append-file';
import { MessageIndex } from './message-index';

export const SEGMENT_EXT = '.seg';
export const ACK_EXT = '.ack';
/** Suffix of files being written by compaction; any found at startup are leftovers. */
export const COMPACT_EXT = '.compact';

export function segmentFileName(no: number, ext: string): string {
  return no.toString().padStart(10, '0') + ext;
}

/**
 * One segment: a file of publish records for ids firstId..maxId (in that order, with gaps
 * where messages died before a compaction), its ack file, and how much of it is still live.
 * Ids grow with segment numbers, so the segment of an id is found by binary search.
 */
export class Segment {
  /** Live messages in this segment. */
  live = 0;
  /** Bytes of their records. */
  liveBytes = 0;
  /** Highest id published into this segment (firstId - 1 while empty). */
  maxId: number;
  /** Highest segment number merged into this one (its own number until a merge). */
  lastNo: number;
  /** Set when a merge could not finish: files on disk still need recovery to sort them out,
   *  so this segment is neither deleted nor compacted again in this run. */
  pinned = false;
  /** Part of the compaction in progress: its files must stay until that one is finished. */
  compacting = false;
  ack: AppendFile | null = null;

  constructor(
    readonly dir: string,
    readonly no: number,
    readonly firstId: number,
    public seg: AppendFile,
  ) {
    this.maxId = firstId - 1;
    this.lastNo = no;
  }

  get segPath(): string {
    return join(this.dir, segmentFileName(this.no, SEGMENT_EXT));
  }

  get ackPath(): string {
    return join(this.dir, segmentFileName(this.no, ACK_EXT));
  }

  get diskBytes(): number {
    return this.seg.end + (this.ack === null ? 0 : this.ack.end);
  }
}

/**
 * The live segments in id order and the index of live messages in them, kept consistent:
 * every live message is counted in exactly one segment's live/liveBytes.
 */
export class SegmentTable {
  readonly segments: Segment[] = [];
  readonly index = new MessageIndex();
  /** Segments whose last live message died since the owner last looked (may repeat). */
  emptied: Segment[] = [];

  add(segment: Segment): void {
    this.segments.push(segment);
  }

  remove(segment: Segment): void {
    const at = this.segments.indexOf(segment);
    if (at >= 0) this.segments.splice(at, 1);
  }

  /** The segment holding id (live or not yet compacted away), or undefined. */
  segmentOf(id: number): Segment | undefined {
    const segs = this.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (segs[mid]!.firstId <= id) lo = mid + 1;
      else hi = mid - 1;
    }
    const s = hi < 0 ? undefined : segs[hi];
    return s !== undefined && id <= s.maxId ? s : undefined;
  }

  /** Records a publish record of `segment`. */
  added(segment: Segment, id: number, offset: number, length: number, refs: number): void {
    this.index.set(id, offset, length, refs);
    segment.live++;
    segment.liveBytes += length;
    segment.maxId = id;
  }

  /** One queue let go of id. When that was the last, the message is dead. */
  release(id: number): void {
    const length = this.index.length(id);
    if (!this.index.release(id)) return;
    const segment = this.segmentOf(id);
    if (segment === undefined) return;
    segment.live--;
    segment.liveBytes -= length;
    if (segment.live === 0) this.emptied.push(segment);
  }
}

/** Reads a whole file into scratch (grown when too small); returns the buffer and the size. */
export function readWholeFile(path: string, scratch: Buffer): { buf: Buffer; size: number } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    let buf = scratch;
    if (buf.length < size) buf = Buffer.allocUnsafe(Math.max(size, Math.min(buf.length * 2, 1 << 30)));
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return { buf, size: got };
  } finally {
    closeSync(fd);
  }
}
