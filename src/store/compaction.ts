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

/** The points between compaction's durable steps, named for crash tests. */
export type CompactionStep = 'files-written' | 'segment-replaced' | 'acks-replaced' | 'member-removed';

export interface CompactionContext {
  readonly table: SegmentTable;
  readonly keys: KeyCache;
  readonly commit: GroupCommit;
  readonly dirFd: number;
  readonly logger: StoreLogger;
  readonly onStep?: ((step: CompactionStep) => void) | undefined;
}

/** Is this segment worth rewriting on its own, or as part of a merge? */
export function isSparse(s: Segment, segmentSize: number, compactBelow: number): boolean {
  const size = s.seg.size - FILE_HEADER_SIZE;
  return s.liveBytes < size * compactBelow && size - s.liveBytes >= segmentSize / 8;
}

export function isSmall(s: Segment, segmentSize: number): boolean {
  return s.seg.size < segmentSize / 4;
}

/**
 * The oldest run of adjacent non-active segments worth rewriting together: sparse ones (mostly
 * dead bytes) and small ones (left small by earlier compactions), while their live data fits
 * in three quarters of a segment. A run qualifies if it holds a sparse segment, or if it merges
 * two or more small ones (which keeps the file count following the live data too).
 */
export function pickRun(segments: readonly Segment[], active: Segment, segmentSize: number, compactBelow: number): Segment[] {
  let run: Segment[] = [];
  let live = 0;
  let sparse = false;
  const qualifies = (): boolean => run.length !== 0 && (sparse || run.length >= 2);
  for (const s of segments) {
    const eligible = s !== active && !s.pinned && s.seg.settled && (s.ack === null || s.ack.settled);
    const isSparseNow = eligible && isSparse(s, segmentSize, compactBelow);
    const fits = eligible && (isSparseNow || isSmall(s, segmentSize)) && live + s.liveBytes <= segmentSize * 0.75;
    if (!fits) {
      if (qualifies()) return run;
      run = [];
      live = 0;
      sparse = false;
      if (!eligible || !(isSparseNow || isSmall(s, segmentSize))) continue;
    }
    run.push(s);
    live += s.liveBytes;
    sparse ||= isSparseNow;
  }
  return qualifies() ? run : [];
}

/**
 * Rewrites a run of adjacent segments as one file holding only their live publish records,
 * under the first segment's number, plus one ack file holding only the records that still
 * matter (acks and delivered marks of live messages, deletes that may cover them). The id
 * range grows to the run's, so lookups by id keep working; the others are then removed.
 *
 * Crash safety rests on one invariant: the ack records on disk always include every ack the
 * segment files on disk need. Hence the order:
 *   1. write and fsync first.seg.compact (header: lastNo = the run's last segment number) and
 *      first.ack.compact;
 *   2. rename first.seg.compact over first.seg, fsync the directory. From here recovery sees
 *      that first.seg covers the later numbers: it ignores their .seg files and reads their
 *      .ack files as extra acks for first (the old first.ack is a superset for its part);
 *   3. replace first.ack, fsync the directory;
 *   4. remove the merged segments' files, each .seg before its .ack.
 * A leftover .compact file is removed at startup. Runs synchronously between turns; the caller
 * has written every member's tails. Returns the bytes reclaimed.
 */
export function compactRun(ctx: CompactionContext, run: readonly Segment[]): number {
  const { table, commit } = ctx;
  const first = run[0]!;
  const last = run[run.length - 1]!;
  let before = 0;
  for (const s of run) before += s.diskBytes;
  const segPath = first.segPath;
  const ackPath = first.ackPath;
  const tmpSeg = segPath + COMPACT_EXT;
  const tmpAck = ackPath + COMPACT_EXT;
  let liveBytes = 0;
  for (const s of run) liveBytes += s.liveBytes;
  let out: AppendFile | null = null;
  // Assigned inside the scan callback, hence a holder rather than a narrowed local.
  const ackOut: { file: AppendFile | null } = { file: null };
  const moved: number[] = [];
  try {
    out = new AppendFile(tmpSeg, openSync(tmpSeg, 'w+'), 0, liveBytes + FILE_HEADER_SIZE);
    writeFileHeader(out, SEGMENT_MAGIC, first.firstId, last.no);
    for (const s of run) {
      const old = s.seg.read(0, s.seg.size);
      for (let id = s.firstId; id <= s.maxId; id++) {
        if (table.index.refs(id) === 0) continue;
        const off = table.index.offset(id);
        moved.push(id, appendRaw(out, old, off, off + table.index.length(id)));
      }
    }
    out.flush();
    fsyncSync(out.fd);

    const target = (): AppendFile => {
      if (ackOut.file === null) {
        ackOut.file = new AppendFile(tmpAck, openSync(tmpAck, 'w+'), 0, 64 * 1024);
        writeFileHeader(ackOut.file, ACK_MAGIC, first.firstId);
      }
      return ackOut.file;
    };
    const kept: number[] = [];
    const deletes = new Set<string>();
    for (const s of run) {
      if (s.ack === null) continue;
      const a = s.ack.read(0, s.ack.size);
      scanRecords(
        a,
        FILE_HEADER_SIZE,
        a.length,
        (type, p) => {
          const { queue, rest } = recordQueue(a, p);
          if (type === RecordType.Delete) {
            const upTo = a.readDoubleLE(rest);
            const key = `${upTo}:${queue}`;
            if (upTo >= first.firstId && !deletes.has(key)) {
              deletes.add(key);
              appendDelete(target(), ctx.keys.get(queue), upTo);
            }
            return;
          }
          if (type !== RecordType.Ack && type !== RecordType.Delivered) return;
          kept.length = 0;
          const count = a.readUInt32LE(rest);
          for (let i = 0, o = rest + 4; i < count; i++, o += 8) {
            const id = a.readDoubleLE(o);
            if (id >= s.firstId && id <= s.maxId && table.index.refs(id) !== 0) kept.push(id);
          }
          if (kept.length !== 0) appendIdBatch(target(), type, ctx.keys.get(queue), kept, 0, kept.length);
        },
        () => {}, // damage was reported by recovery; what it spoils dies with the old file
      );
    }
    if (ackOut.file !== null) {
      ackOut.file.flush();
      fsyncSync(ackOut.file.fd);
    }
    ctx.onStep?.('files-written');
    renameSync(tmpSeg, segPath);
    fsyncSync(ctx.dirFd);
    ctx.onStep?.('segment-replaced');
  } catch (err) {
    for (const f of [out, ackOut.file]) {
      if (f === null) continue;
      f.close();
      try {
        unlinkSync(f.path);
      } catch {
        // never created
      }
    }
    ctx.logger.warn({ file: segPath, err: String(err) }, 'segment compaction failed; the segments are kept as they were');
    return 0;
  }

  // Step 2 is done: the new file is the truth for the whole run. Adopt it in memory.
  commit.closeWhenIdle(first.seg);
  first.seg = new AppendFile(segPath, out.fd, out.size, 0);
  first.seg.seal();
  for (let i = 0; i < moved.length; i += 2) table.index.setOffset(moved[i]!, moved[i + 1]!);
  let live = 0;
  for (const s of run) live += s.live;
  first.maxId = last.maxId;
  first.lastNo = last.no;
  first.live = live;
  first.liveBytes = liveBytes;

  const replacement = ackOut.file;
  try {
    if (replacement !== null) renameSync(tmpAck, ackPath);
    else if (first.ack !== null) unlinkSync(ackPath);
    fsyncSync(ctx.dirFd);
    ctx.onStep?.('acks-replaced');
  } catch (err) {
    // Recovery still finds every needed ack in the old files; keep them all and stop here.
    replacement?.close();
    first.pinned = true;
    ctx.logger.error({ file: ackPath, err: String(err) }, 'could not replace the ack file after compaction; keeping the old ones');
    for (const s of run.slice(1)) {
      // Their .seg files are covered by first's header; their .ack files stay for recovery.
      table.remove(s);
      commit.closeWhenIdle(s.seg);
      if (s.ack !== null) commit.closeWhenIdle(s.ack);
    }
    return 0;
  }
  if (first.ack !== null) commit.closeWhenIdle(first.ack);
  first.ack = replacement === null ? null : new AppendFile(ackPath, replacement.fd, replacement.size, 64 * 1024);
  for (const s of run.slice(1)) {
    unlinkSync(s.segPath);
    ctx.onStep?.('member-removed');
    if (s.ack !== null) unlinkSync(s.ackPath);
    table.remove(s);
    commit.closeWhenIdle(s.seg);
    if (s.ack !== null) commit.closeWhenIdle(s.ack);
  }
  commit.directoryChanged();
  return before - first.diskBytes;
}
