import { closeSync, fsyncSync, openSync, readdirSync, renameSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { AppendFile } from './append-file';
import type { StoreLogger } from './message-store';
import { QueueTable } from './queue-index';
import {
  ACK_MAGIC,
  FILE_HEADER_SIZE,
  RecordType,
  SEGMENT_MAGIC,
  appendRaw,
  publishId,
  readFileHeader,
  recordQueue,
  scanRecords,
  writeFileHeader,
  type ScanProblem,
} from './record-format';
import { ACK_EXT, COMPACT_EXT, SEGMENT_EXT, Segment, SegmentTable, readWholeFile, segmentFileName } from './segment';

export interface RecoveredState {
  readonly table: SegmentTable;
  readonly queues: QueueTable;
  /** Greater than every id found in any record, so no id is ever reused. */
  readonly nextId: number;
  readonly nextSegmentNo: number;
}

const SEGMENT_NAME = /^(\d{10})\.seg$/;
const ACK_NAME = /^(\d{10})\.ack$/;

/**
 * Rebuilds the store's state from its directory: every segment in order, then its ack file.
 * Records in an ack file only name messages of its own segment, and applying ack, delivered
 * and delete records is order-independent, so each segment is complete once its files are
 * read. Damage is logged with the file name and skipped; a torn tail is cut off so that new
 * appends never follow garbage. Segments left with no live message are deleted, and the
 * leftovers of a merge interrupted by a crash (compaction.ts) are finished off.
 */
export function recoverSegments(dir: string, logger: StoreLogger, tailCapacity: number): RecoveredState {
  return new Recovery(dir, logger).run(tailCapacity);
}

/**
 * Queue keys as strings without decoding the same UTF-8 for every record: a million records
 * name the same ten queues. Keyed by an FNV-1a hash of the bytes, confirmed byte by byte.
 */
export class KeyDecoder {
  private readonly cache = new Map<number, { bytes: Buffer; key: string }>();

  decode(b: Buffer, start: number, end: number): string {
    let h = 0x811c9dc5;
    for (let i = start; i < end; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    const hit = this.cache.get(h);
    if (hit !== undefined && hit.bytes.length === end - start) {
      let same = true;
      for (let i = start, j = 0; i < end; i++, j++) {
        if (b[i] !== hit.bytes[j]) {
          same = false;
          break;
        }
      }
      if (same) return hit.key;
    }
    const key = b.toString('utf8', start, end);
    if (this.cache.size < 65536) this.cache.set(h, { bytes: Buffer.from(b.subarray(start, end)), key });
    return key;
  }
}

class Recovery {
  private readonly table = new SegmentTable();
  private readonly queues = new QueueTable();
  private readonly release = (id: number): void => this.table.release(id);
  private readonly keys = new KeyDecoder();
  private scratch: Buffer = Buffer.allocUnsafe(0);
  /** Highest id of any publish record or segment header so far. */
  private maxId = 0;
  /** Highest id named by an ack-file record (a delete's upTo may lie in a later segment). */
  private maxNamed = 0;
  private readonly ends = new Map<Segment, { seg: number; ack: number }>();
  /** Ack files of segments merged into this one, to be folded into its own ack file. */
  private readonly folds = new Map<Segment, string[]>();
  /** Segment files made redundant by a merge, removed once recovery is done. */
  private readonly covered: string[] = [];

  constructor(
    private readonly dir: string,
    private readonly logger: StoreLogger,
  ) {}

  run(tailCapacity: number): RecoveredState {
    const { segNos, ackNos } = this.listFiles();
    let cover: Segment | undefined;
    let coverThrough = -1;
    for (const no of segNos) {
      const segPath = join(this.dir, segmentFileName(no, SEGMENT_EXT));
      const ackPath = join(this.dir, segmentFileName(no, ACK_EXT));
      if (cover !== undefined && no <= coverThrough) {
        // Merged into `cover` by a compaction that the crash interrupted before removing it.
        this.covered.push(segPath);
        if (ackNos.has(no)) {
          this.applyAcks(cover, ackPath, false);
          this.folds.get(cover)!.push(ackPath);
        }
        continue;
      }
      const segment = this.readSegment(no, segPath, ackPath, ackNos.has(no));
      if (segment === undefined) continue;
      const ackEnd = ackNos.has(no) ? this.applyAcks(segment, ackPath, true) : -1;
      this.ends.get(segment)!.ack = ackEnd;
      this.folds.set(segment, []);
      if (coverThrough < segment.lastNo) {
        cover = segment;
        coverThrough = segment.lastNo;
      }
    }
    this.keepLiveSegments(tailCapacity);
    this.queues.trim();
    return {
      table: this.table,
      queues: this.queues,
      nextId: Math.floor(Math.max(this.maxId, Number.isSafeInteger(this.maxNamed) ? this.maxNamed : 0)) + 1,
      nextSegmentNo: (segNos.length === 0 ? 0 : segNos[segNos.length - 1]!) + 1,
    };
  }

  private listFiles(): { segNos: number[]; ackNos: Set<number> } {
    const segNos: number[] = [];
    const ackNos = new Set<number>();
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith(COMPACT_EXT)) {
        this.logger.warn({ file: join(this.dir, name) }, 'removing leftover of a compaction interrupted by a crash');
        unlinkSync(join(this.dir, name));
        continue;
      }
      const seg = SEGMENT_NAME.exec(name);
      if (seg !== null) segNos.push(Number(seg[1]));
      const ack = ACK_NAME.exec(name);
      if (ack !== null) ackNos.add(Number(ack[1]));
    }
    segNos.sort((a, b) => a - b);
    const segSet = new Set(segNos);
    for (const no of [...ackNos]) {
      // Its segment was deleted and the crash came before the ack file followed.
      if (segSet.has(no)) continue;
      unlinkSync(join(this.dir, segmentFileName(no, ACK_EXT)));
      ackNos.delete(no);
    }
    return { segNos, ackNos };
  }

  /** Reads one segment's publish records into the table and queues; undefined if unusable. */
  private readSegment(no: number, segPath: string, ackPath: string, hasAck: boolean): Segment | undefined {
    const read = readWholeFile(segPath, this.scratch);
    this.scratch = read.buf;
    const b = this.scratch;
    const header = readFileHeader(b, read.size, SEGMENT_MAGIC);
    if (header === null || header.firstId < 1 || !Number.isSafeInteger(header.firstId) || header.firstId <= this.maxId) {
      if (read.size < FILE_HEADER_SIZE) {
        this.logger.warn({ file: segPath, bytes: read.size }, `segment file ${segPath} has no complete header (crash while creating it); removed`);
        unlinkSync(segPath);
        if (hasAck) unlinkSync(ackPath);
      } else {
        this.logger.error({ file: segPath }, `segment file ${segPath} has a damaged header; moved aside as .corrupt, its messages are lost`);
        renameSync(segPath, segPath + '.corrupt');
        if (hasAck) renameSync(ackPath, ackPath + '.corrupt');
      }
      return undefined;
    }
    // The file stays closed until we know it survives; `seg` is a placeholder until then.
    const segment = new Segment(this.dir, no, header.firstId, new AppendFile(segPath, -1, 0, 0));
    segment.lastNo = Math.max(no, header.lastNo);
    this.table.add(segment);
    this.maxId = Math.max(this.maxId, header.firstId - 1);
    const { table, queues, logger, keys } = this;
    const end = scanRecords(
      b,
      FILE_HEADER_SIZE,
      read.size,
      (type, p, start, recEnd) => {
        if (type !== RecordType.Publish) {
          logger.warn({ file: segPath, offset: start, type }, 'unexpected record type in segment file; skipped');
          return;
        }
        const id = publishId(b, p);
        if (!Number.isSafeInteger(id) || id <= segment.maxId) {
          logger.warn({ file: segPath, offset: start, id }, 'publish record out of id order; skipped');
          return;
        }
        const nq = b.readUInt16LE(p + 17);
        let q = p + 19;
        for (let i = 0; i < nq; i++) {
          const len = b.readUInt16LE(q);
          queues.addOne(keys.decode(b, q + 2, q + 2 + len), id);
          q += 2 + len;
        }
        table.added(segment, id, start, recEnd - start, nq);
      },
      (problem) => report(logger, segPath, problem),
    );
    if (end < read.size) truncateSync(segPath, end);
    this.maxId = Math.max(this.maxId, segment.maxId);
    this.ends.set(segment, { seg: end, ack: -1 });
    return segment;
  }

  /** Applies an ack file's records to segment's messages; returns where its intact data ends. */
  private applyAcks(segment: Segment, ackPath: string, own: boolean): number {
    const read = readWholeFile(ackPath, this.scratch);
    this.scratch = read.buf;
    const a = this.scratch;
    const header = readFileHeader(a, read.size, ACK_MAGIC);
    if (header === null || (own && header.firstId !== segment.firstId)) {
      // Without its acks the segment's messages come back: at-least-once, never lost.
      this.logger.error({ file: ackPath }, `ack file ${ackPath} has a damaged header; ignored, acked messages in it may be redelivered`);
      renameSync(ackPath, ackPath + '.corrupt');
      return -1;
    }
    const { queues, release } = this;
    const end = scanRecords(
      a,
      FILE_HEADER_SIZE,
      read.size,
      (type, p) => {
        const { queue, rest } = recordQueue(a, p);
        if (type === RecordType.Delete) {
          const upTo = a.readDoubleLE(rest);
          this.maxNamed = Math.max(this.maxNamed, upTo);
          queues.removeQueue(queue, release, upTo);
          return;
        }
        const count = a.readUInt32LE(rest);
        for (let i = 0, o = rest + 4; i < count; i++, o += 8) {
          const id = a.readDoubleLE(o);
          if (id > this.maxNamed) this.maxNamed = id;
          if (id < segment.firstId || id > segment.maxId) continue;
          if (type === RecordType.Ack) {
            if (queues.remove(queue, id)) release(id);
          } else if (type === RecordType.Delivered) {
            queues.markDelivered(queue, id);
          }
        }
      },
      (problem) => report(this.logger, ackPath, problem),
    );
    if (end < read.size) truncateSync(ackPath, end);
    return end;
  }

  /** Deletes dead segments, opens the live ones, and finishes interrupted merges. */
  private keepLiveSegments(tailCapacity: number): void {
    // Covered files go first: once their covering segment is gone they would read as live.
    for (const path of this.covered) unlinkSync(path);
    const dirFd = openSync(this.dir, 'r');
    try {
      if (this.covered.length !== 0) fsyncSync(dirFd);
      for (const segment of [...this.table.segments]) {
        const ends = this.ends.get(segment)!;
        const folds = this.folds.get(segment)!;
        if (segment.live === 0) {
          unlinkSync(segment.segPath);
          if (ends.ack >= 0) unlinkSync(segment.ackPath);
          for (const path of folds) unlinkSync(path);
          this.table.remove(segment);
          continue;
        }
        segment.seg = new AppendFile(segment.segPath, openSync(segment.segPath, 'r+'), ends.seg, 0);
        if (ends.ack >= 0) segment.ack = new AppendFile(segment.ackPath, openSync(segment.ackPath, 'r+'), ends.ack, tailCapacity);
        if (folds.length !== 0) this.fold(segment, folds, tailCapacity, dirFd);
      }
    } finally {
      closeSync(dirFd);
    }
    this.table.emptied = [];
  }

  /** Copies the intact records of merged segments' ack files into segment's own, then removes them. */
  private fold(segment: Segment, paths: readonly string[], tailCapacity: number, dirFd: number): void {
    let ack = segment.ack;
    if (ack === null) {
      ack = new AppendFile(segment.ackPath, openSync(segment.ackPath, 'w+'), 0, tailCapacity);
      writeFileHeader(ack, ACK_MAGIC, segment.firstId);
      segment.ack = ack;
    }
    const target = ack;
    for (const path of paths) {
      const read = readWholeFile(path, this.scratch);
      this.scratch = read.buf;
      const a = this.scratch;
      scanRecords(a, FILE_HEADER_SIZE, read.size, (_type, _p, start, end) => appendRaw(target, a, start, end), () => {});
      target.flush();
    }
    fsyncSync(target.fd);
    fsyncSync(dirFd);
    for (const path of paths) unlinkSync(path);
    target.dirty = false;
  }
}

function report(logger: StoreLogger, file: string, problem: ScanProblem): void {
  if (problem.kind === 'torn-tail') {
    logger.warn(
      { file, offset: problem.offset, droppedBytes: problem.resumeAt - problem.offset },
      `truncated torn or corrupt tail of ${file} at offset ${problem.offset}; records before it are kept`,
    );
  } else {
    logger.warn(
      { file, offset: problem.offset, skippedBytes: problem.resumeAt - problem.offset },
      `skipped a corrupt record in ${file} at offset ${problem.offset} (checksum mismatch); later records are kept`,
    );
  }
}
