import { fsyncSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { AppendFile } from './append-file';
import type { GroupCommit } from './group-commit';
import type { StoreLogger } from './message-store';
import {
  ACK_MAGIC,
  FILE_HEADER_SIZE,
  KeyCache,
  RecordType,
  SEGMENT_MAGIC,
  appendDelete,
  appendIdBatch,
  appendRaw,
  recordQueue,
  scanRecords,
  writeFileHeader,
} from './record-format';
import { COMPACT_EXT, type Segment, type SegmentTable } from './segment';

export interface CompactionContext {
  readonly table: SegmentTable;
  readonly keys: KeyCache;
  readonly commit: GroupCommit;
  readonly dirFd: number;
  readonly logger: StoreLogger;
}

/**
 * Rewrites a sparse segment with only its live publish records, and its ack file with only
 * the records that still matter (acks and delivered marks of live messages, deletes that may
 * cover them). The id range and segment number stay, so lookups by id are unaffected.
 *
 * Crash safety rests on one invariant: the ack file on disk always holds at least the acks the
 * segment file on disk needs. Hence the order: new files written and fsynced, then the segment
 * renamed over the old one and the directory synced (new segment + old, larger ack file is
 * consistent), then the ack file replaced. Leftover .compact files are removed at startup.
 *
 * Runs synchronously between turns; the caller has flushed both files' tails.
 */
export function compactSegment(ctx: CompactionContext, segment: Segment): number {
  const { table, commit } = ctx;
  const before = segment.diskBytes;
  const segPath = segment.segPath;
  const ackPath = segment.ackPath;
  const tmpSeg = segPath + COMPACT_EXT;
  const tmpAck = ackPath + COMPACT_EXT;
  let out: AppendFile | null = null;
  let ackOut: AppendFile | null = null;
  const moved: number[] = [];
  try {
    const old = segment.seg.read(0, segment.seg.size);
    out = new AppendFile(tmpSeg, openSync(tmpSeg, 'w+'), 0, segment.liveBytes + FILE_HEADER_SIZE);
    writeFileHeader(out, SEGMENT_MAGIC, segment.firstId);
    for (let id = segment.firstId; id <= segment.maxId; id++) {
      if (table.index.refs(id) === 0) continue;
      const off = table.index.offset(id);
      moved.push(id, appendRaw(out, old, off, off + table.index.length(id)));
    }
    out.flush();
    fsyncSync(out.fd);

    if (segment.ack !== null) {
      const a = segment.ack.read(0, segment.ack.size);
      const kept: number[] = [];
      const target = (): AppendFile => {
        if (ackOut === null) {
          ackOut = new AppendFile(tmpAck, openSync(tmpAck, 'w+'), 0, 64 * 1024);
          writeFileHeader(ackOut, ACK_MAGIC, segment.firstId);
        }
        return ackOut;
      };
      scanRecords(
        a,
        FILE_HEADER_SIZE,
        a.length,
        (type, p) => {
          const { queue, rest } = recordQueue(a, p);
          if (type === RecordType.Delete) {
            if (a.readDoubleLE(rest) >= segment.firstId) appendDelete(target(), ctx.keys.get(queue), a.readDoubleLE(rest));
            return;
          }
          if (type !== RecordType.Ack && type !== RecordType.Delivered) return;
          kept.length = 0;
          const count = a.readUInt32LE(rest);
          for (let i = 0, o = rest + 4; i < count; i++, o += 8) {
            const id = a.readDoubleLE(o);
            if (id >= segment.firstId && id <= segment.maxId && table.index.refs(id) !== 0) kept.push(id);
          }
          if (kept.length !== 0) appendIdBatch(target(), type, ctx.keys.get(queue), kept, 0, kept.length);
        },
        () => {}, // recovery already truncated damage; anything new is dropped with its segment's dead data
      );
      if (ackOut !== null) {
        const f: AppendFile = ackOut;
        f.flush();
        fsyncSync(f.fd);
      }
    }
    renameSync(tmpSeg, segPath);
    fsyncSync(ctx.dirFd);
  } catch (err) {
    for (const f of [out, ackOut]) {
      if (f === null) continue;
      f.close();
      try {
        unlinkSync(f.path);
      } catch {
        // already gone
      }
    }
    ctx.logger.warn({ file: segPath, err: String(err) }, 'segment compaction failed; the segment is kept as it was');
    return 0;
  }

  // The new segment is in place: read from it from now on.
  commit.closeWhenIdle(segment.seg);
  segment.seg = new AppendFile(segPath, out.fd, out.size, 0);
  for (let i = 0; i < moved.length; i += 2) table.index.setOffset(moved[i]!, moved[i + 1]!);
  try {
    const replacement: AppendFile | null = ackOut;
    if (replacement !== null) renameSync(tmpAck, ackPath);
    else if (segment.ack !== null) unlinkSync(ackPath);
    fsyncSync(ctx.dirFd);
    if (segment.ack !== null) commit.closeWhenIdle(segment.ack);
    segment.ack = replacement === null ? null : new AppendFile(ackPath, replacement.fd, replacement.size, 64 * 1024);
  } catch (err) {
    // The old ack file stays: it holds every ack the new segment needs, and more.
    const f: AppendFile | null = ackOut;
    if (f !== null) f.close();
    ctx.logger.warn({ file: ackPath, err: String(err) }, 'could not replace ack file after compaction; keeping the old one');
  }
  return before - segment.diskBytes;
}
