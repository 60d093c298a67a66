import { openSync, readdirSync, renameSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { AppendFile } from './append-file';
import type { StoreLogger } from './message-store';
import { QueueTable } from './queue-index';
import {
  ACK_MAGIC,
  FILE_HEADER_SIZE,
  RecordType,
  SEGMENT_MAGIC,
  publishId,
  readFileHeader,
  recordQueue,
  scanRecords,
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
 * and delete records is order-independent, so each segment is complete once its two files
 * are read. Damage is logged with the file name and skipped; a torn tail is cut off so that
 * new appends never follow garbage. Segments left with no live message are deleted.
 */
export function recoverSegments(dir: string, logger: StoreLogger, tailCapacity: number): RecoveredState {
  const table = new SegmentTable();
  const queues = new QueueTable();
  const release = (id: number): void => table.release(id);
  const names = readdirSync(dir);
  const segNos: number[] = [];
  const ackNos = new Set<number>();
  for (const name of names) {
    if (name.endsWith(COMPACT_EXT)) {
      logger.warn({ file: join(dir, name) }, 'removing leftover of a compaction interrupted by a crash');
      unlinkSync(join(dir, name));
      continue;
    }
    const seg = SEGMENT_NAME.exec(name);
    if (seg !== null) segNos.push(Number(seg[1]));
    const ack = ACK_NAME.exec(name);
    if (ack !== null) ackNos.add(Number(ack[1]));
  }
  segNos.sort((a, b) => a - b);
  const segSet = new Set(segNos);
  for (const no of ackNos) {
    // The segment was deleted and the crash came before its ack file followed.
    if (!segSet.has(no)) unlinkSync(join(dir, segmentFileName(no, ACK_EXT)));
  }

  let scratch = Buffer.allocUnsafe(0);
  let maxId = 0; // highest id of any publish record or segment header so far
  let maxNamed = 0; // highest id named by an ack-file record (a delete's upTo may be in a later segment)
  const validEnds = new Map<Segment, { seg: number; ack: number }>();
  for (const no of segNos) {
    const segPath = join(dir, segmentFileName(no, SEGMENT_EXT));
    const ackPath = join(dir, segmentFileName(no, ACK_EXT));
    const read = readWholeFile(segPath, scratch);
    scratch = read.buf;
    const firstId = readFileHeader(scratch.subarray(0, read.size), SEGMENT_MAGIC);
    if (firstId < 1 || !Number.isSafeInteger(firstId) || firstId <= maxId) {
      if (read.size < FILE_HEADER_SIZE) {
        logger.warn({ file: segPath, bytes: read.size }, 'segment file has no complete header (crash while creating it); removed');
        unlinkSync(segPath);
        if (ackNos.has(no)) unlinkSync(ackPath);
      } else {
        logger.error({ file: segPath }, 'segment file has a damaged header; moved aside as .corrupt, its messages are lost');
        renameSync(segPath, segPath + '.corrupt');
        if (ackNos.has(no)) renameSync(ackPath, ackPath + '.corrupt');
      }
      continue;
    }
    // The file stays closed until we know it survives; `seg` is a placeholder until then.
    const segment = new Segment(dir, no, firstId, new AppendFile(segPath, -1, 0, 0));
    table.add(segment);
    maxId = Math.max(maxId, firstId - 1);

    const b = scratch;
    const segEnd = scanRecords(
      b,
      FILE_HEADER_SIZE,
      read.size,
      (type, p, start, end) => {
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
          queues.addOne(b.toString('utf8', q + 2, q + 2 + len), id);
          q += 2 + len;
        }
        table.added(segment, id, start, end - start, nq);
      },
      (problem) => report(logger, segPath, problem),
    );
    if (segEnd < read.size) truncateSync(segPath, segEnd);
    maxId = Math.max(maxId, segment.maxId);

    let ackEnd = -1;
    if (ackNos.has(no)) {
      const ackRead = readWholeFile(ackPath, scratch);
      scratch = ackRead.buf;
      const a = scratch;
      if (readFileHeader(a.subarray(0, ackRead.size), ACK_MAGIC) !== firstId) {
        // Without its acks the segment's messages come back: at-least-once, never lost.
        logger.error({ file: ackPath }, 'ack file has a damaged header; ignored, acked messages of this segment may be redelivered');
        renameSync(ackPath, ackPath + '.corrupt');
      } else {
        ackEnd = scanRecords(
          a,
          FILE_HEADER_SIZE,
          ackRead.size,
          (type, p) => {
            const { queue, rest } = recordQueue(a, p);
            if (type === RecordType.Delete) {
              const upTo = a.readDoubleLE(rest);
              maxNamed = Math.max(maxNamed, upTo);
              queues.removeQueue(queue, release, upTo);
              return;
            }
            const count = a.readUInt32LE(rest);
            for (let i = 0, o = rest + 4; i < count; i++, o += 8) {
              const id = a.readDoubleLE(o);
              if (id > maxNamed) maxNamed = id;
              if (id < segment.firstId || id > segment.maxId) continue;
              if (type === RecordType.Ack) {
                if (queues.remove(queue, id)) release(id);
              } else if (type === RecordType.Delivered) {
                queues.markDelivered(queue, id);
              }
            }
          },
          (problem) => report(logger, ackPath, problem),
        );
        if (ackEnd < ackRead.size) truncateSync(ackPath, ackEnd);
      }
    }
    validEnds.set(segment, { seg: segEnd, ack: ackEnd });
  }

  // Keep what still holds a live message; open its files for reading and appending acks.
  for (const segment of [...table.segments]) {
    const ends = validEnds.get(segment)!;
    if (segment.live === 0) {
      unlinkSync(segment.segPath);
      if (ends.ack >= 0) unlinkSync(segment.ackPath);
      table.remove(segment);
      continue;
    }
    segment.seg = new AppendFile(segment.segPath, openSync(segment.segPath, 'r+'), ends.seg, 0);
    if (ends.ack >= 0) segment.ack = new AppendFile(segment.ackPath, openSync(segment.ackPath, 'r+'), ends.ack, tailCapacity);
  }
  table.emptied = [];
  return {
    table,
    queues,
    nextId: Math.floor(Math.max(maxId, Number.isSafeInteger(maxNamed) ? maxNamed : 0)) + 1,
    nextSegmentNo: (segNos.length === 0 ? 0 : segNos[segNos.length - 1]!) + 1,
  };
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
