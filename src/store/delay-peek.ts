import { open as openPromise, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { Bucket } from './delay-index';
import { CHUNK, decodeRecord, IDX_ENTRY, RECORD_FIXED, type DelayedRecord, type Segment } from './delay-log';

// Listing (peek) reads what the release path reads, but must change nothing: no bucket is
// loaded, no file removed, no counter moved. So it has its own readers here, which only copy,
// and check after every await whether the schedule went away (gone) or the loader took the
// bucket meanwhile.

/** An index entry as peek() collects it. */
export interface PeekEntry {
  readonly due: number;
  readonly seq: number;
  readonly segment: number;
  readonly offset: number;
  readonly length: number;
}

export function comparePeek(a: PeekEntry, b: PeekEntry): number {
  return a.due - b.due || a.seq - b.seq;
}

/** Keeps the k earliest (due, seq) of index entries fed in any order; memory O(k). */
export class Earliest {
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

/** One listed message. */
export interface Peeked {
  due: number;
  seq: number;
  record: DelayedRecord;
}

/**
 * Reads an unread bucket's .idx file in chunks, keeping the k earliest entries, then adds
 * its unspilled tail. Null when the bucket was loaded meanwhile (the caller looks again).
 */
export async function readUnloadedBucket(b: Bucket, k: number, gone: () => boolean): Promise<PeekEntry[] | null> {
  const best = new Earliest(k);
  let fh: FileHandle | null = null;
  let pos = 0;
  try {
    for (;;) {
      if (b.loaded || gone()) return null;
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
      if (b.loaded || gone()) return null;
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
export async function readPeekedRecords(entries: readonly PeekEntry[], segments: ReadonlyMap<number, Segment>, gone: () => boolean): Promise<Peeked[]> {
  const out: Peeked[] = [];
  const handles = new Map<number, FileHandle | null>();
  try {
    for (const e of entries) {
      if (gone()) break;
      const seg = segments.get(e.segment);
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
        if (segments.get(e.segment) !== seg) continue;
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

