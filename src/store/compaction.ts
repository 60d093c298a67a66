import { closeSync, fsync, openSync, read, renameSync, unlinkSync } from 'node:fs';
import { AppendFile } from './append-file';
import type { GroupCommit } from './group-commit';
import type { StoreLogger } from './message-store';
import type { QueueTable } from './queue-index';
import {
  ACK_MAGIC,
  FILE_HEADER_SIZE,
  KeyCache,
  RECORD_HEADER_SIZE,
  RecordType,
  SEGMENT_MAGIC,
  appendDelete,
  appendIdBatch,
  appendRaw,
  writeFileHeader,
} from './record-format';
import { KeyDecoder } from './recovery';
import { COMPACT_EXT, type Segment, type SegmentTable } from './segment';

/** The points between compaction's durable steps, named for crash tests. */
export type CompactionStep = 'copy-step' | 'files-written' | 'segment-replaced' | 'acks-replaced' | 'member-removed';

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
    const eligible = s !== active && !s.pinned && !s.compacting && s.seg.settled && (s.ack === null || s.ack.settled);
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

/** Bounds on the synchronous work of one copy step. */
export interface StepLimits {
  /** Bytes of the old segment read (and at most copied) per step; a larger record goes alone. */
  readonly bytes: number;
  /** Ids looked up in the index per step (dead ones included). */
  readonly ids: number;
}

export const DEFAULT_STEP_LIMITS: StepLimits = { bytes: 1024 * 1024, ids: 8192 };

/** The most work any single copy step did, for tests and stats. */
export interface StepCounters {
  steps: number;
  maxIds: number;
  maxRecords: number;
  maxBytes: number;
  /** Runs finished (switched to the new files). */
  finished: number;
  failed: number;
}

export interface CompactionHost {
  readonly table: SegmentTable;
  readonly queues: QueueTable;
  readonly keys: KeyCache;
  readonly commit: GroupCommit;
  readonly dirFd: number;
  readonly logger: StoreLogger;
  readonly limits: StepLimits;
  readonly counters: StepCounters;
  readonly onStep?: ((step: CompactionStep) => void) | undefined;
  /** A file to close when the store closes (it may still be in a group commit round). */
  retire(file: AppendFile): void;
  /** The compaction is over (done, failed or abandoned) and holds nothing any more. */
  finished(c: Compaction): void;
}

type Phase = 'copy' | 'sync' | 'renamed' | 'switched' | 'done';

/**
 * Rewrites a run of adjacent segments as one file holding only their live publish records,
 * under the first segment's number, plus one ack file saying what became of them. The work is
 * cut into steps that each read at most `limits.bytes` of the old files (on the thread pool) and
 * look at most `limits.ids` ids, with a turn of the event loop between steps, so that the
 * broker keeps serving while megabytes are rewritten. Publishes, acks and deletes go on
 * meanwhile: the old files stay the truth until the switch, and every ack-file record written
 * for a member during the compaction is also appended to the new ack file ("forwarded").
 *
 *   copy      live records of each member, in id order, into first.seg.compact; for each, the
 *             queues it names that no longer hold it (acks) or hold it delivered go into
 *             first.ack.compact, from the in-memory state (which is never behind the disk).
 *             A copied id's index offset points into the new file at once; read() follows.
 *   sync      both .compact files written and fsynced                       → 'files-written'
 *   renamed   .seg.compact renamed over first.seg. Recovery now ignores the other members'
 *             .seg files and reads their .ack files as extra acks of first; the old first.ack
 *             and the members' ack files still hold every ack. The group commit now writes the
 *             new ack file too, in the same rounds as the old ones that get the same records.
 *             Once a round has synced the directory and that tail       → 'segment-replaced'
 *             .ack.compact is renamed over first.ack. The new ack file holds the state at copy
 *             time plus every forwarded record, so it lacks nothing the old one had for the
 *             messages in the new segment. Not before: an old first.seg with the new first.ack
 *             would miss the acks of messages that died before the copy.
 *   switched  in the same turn: members leave the table, first covers their ids, acks go to
 *             the new ack file only; their confirms wait for a round that also syncs the
 *             directory (so the ack rename is durable first)                → 'acks-replaced'
 *   done      after that round: the members' files are removed, each .seg before its .ack
 *             ('member-removed' after each .seg). An orphan .ack is dropped at recovery.
 *
 * A crash before 'segment-replaced' leaves .compact leftovers, which recovery removes; after
 * it, recovery finishes the merge (recovery.ts). close() abandons a run still copying, and
 * leaves one past its segment rename to recovery.
 */
export class Compaction {
  readonly first: Segment;
  private readonly last: Segment;
  private phase: Phase = 'copy';
  /** Every id of the run up to this one has been copied (if live): its offset is in segOut. */
  private copiedThrough: number;
  private member = 0;
  private cursor: number;
  private readonly segOut: AppendFile;
  private readonly ackOut: AppendFile;
  private readonly tmpSeg: string;
  private readonly tmpAck: string;
  /** (id, offset in the old file) of each copied record, to undo the copy if it fails. */
  private moved: number[] = [];
  private readBuf: Buffer = Buffer.alloc(0);
  private readonly decoder = new KeyDecoder();
  /** Files of the old run, kept open until the new ones are durable. */
  private retired: AppendFile[] = [];
  private members: readonly Segment[];
  private inflight = false;
  private stopping = false;
  private idle: (() => void)[] = [];
  private syncedAfterSwitch = false;
  /** The group commit writes ackOut now (the copy is done). */
  private handedOver = false;

  constructor(
    private readonly host: CompactionHost,
    readonly run: readonly Segment[],
  ) {
    this.first = run[0]!;
    this.last = run[run.length - 1]!;
    this.members = run.slice(1);
    this.copiedThrough = this.first.firstId - 1;
    this.cursor = this.first.firstId;
    this.tmpSeg = this.first.segPath + COMPACT_EXT;
    this.tmpAck = this.first.ackPath + COMPACT_EXT;
    let liveBytes = 0;
    for (const s of run) liveBytes += s.liveBytes;
    // Named after their final paths: the name only appears in messages, and is right from the switch on.
    const segFd = openSync(this.tmpSeg, 'w+');
    let ackFd: number;
    try {
      ackFd = openSync(this.tmpAck, 'w+');
    } catch (err) {
      closeSync(segFd);
      unlinkQuietly(this.tmpSeg);
      throw err;
    }
    this.segOut = new AppendFile(this.first.segPath, segFd, 0, Math.min(liveBytes, host.limits.bytes) + FILE_HEADER_SIZE);
    this.ackOut = new AppendFile(this.first.ackPath, ackFd, 0, 64 * 1024);
    writeFileHeader(this.segOut, SEGMENT_MAGIC, this.first.firstId, this.last.no);
    writeFileHeader(this.ackOut, ACK_MAGIC, this.first.firstId);
    for (const s of run) s.compacting = true;
    this.schedule();
  }

  /** The file to read id from while its copy is under way, or null for its segment's own. */
  fileFor(id: number): AppendFile | null {
    return id <= this.copiedThrough && id >= this.first.firstId && this.phase !== 'switched' && this.phase !== 'done' ? this.segOut : null;
  }

  /** Before the switch, records for a member's ack file are also kept for the new one. */
  get forwarding(): boolean {
    return this.phase !== 'switched' && this.phase !== 'done';
  }

  forwardIds(type: RecordType.Ack | RecordType.Delivered, key: Buffer, ids: readonly number[], from: number, to: number): void {
    if (!this.forwarding) return;
    appendIdBatch(this.ackOut, type, key, ids, from, to);
    if (this.handedOver) this.host.commit.touch(this.ackOut);
  }

  forwardDelete(key: Buffer, upTo: number): void {
    if (!this.forwarding) return;
    appendDelete(this.ackOut, key, upTo);
    if (this.handedOver) this.host.commit.touch(this.ackOut);
  }

  /**
   * For close(): abandons the compaction if its new segment is not in place yet, else lets it
   * reach the switch (a few directory syncs). Resolves once nothing of it is in flight; the
   * files of a switched run are left for close() (and recovery) to deal with.
   */
  stop(): Promise<void> {
    this.stopping = true;
    if (!this.inflight) this.stopNow();
    if (this.phase === 'done' || this.phase === 'switched') return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Files of the old run still open (close() closes them when the store closes). */
  takeRetired(): AppendFile[] {
    const r = this.retired;
    this.retired = [];
    return r;
  }

  // -------------------------------------------------------------------------------------

  private schedule(): void {
    setImmediate(() => this.step());
  }

  private step(): void {
    if (this.stopping) {
      this.stopNow();
      return;
    }
    switch (this.phase) {
      case 'copy':
        this.copyStep();
        return;
      case 'sync':
        this.syncOutputs();
        return;
      case 'renamed':
        return;
      case 'switched':
        this.removeMembers();
        return;
      case 'done':
        return;
    }
  }

  /** Called with nothing in flight, possibly more than once. */
  private stopNow(): void {
    if (this.inflight) return;
    if (this.phase === 'copy' || this.phase === 'sync') this.abandon(null);
    // The new segment is in place, the old ack files still hold every ack: leave it to recovery.
    else if (this.phase === 'renamed') this.keepOldAcks(null);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.inflight) return;
    const idle = this.idle;
    this.idle = [];
    for (const f of idle) f();
  }

  /** Picks the next window of the current member: ids to look at and the bytes to read. */
  private copyStep(): void {
    const { index } = this.host.table;
    const { limits, counters } = this.host;
    const s = this.run[this.member]!;
    const from = this.cursor;
    let id = from;
    let start = -1;
    let end = 0;
    while (id <= s.maxId && id - from < limits.ids) {
      if (index.refs(id) !== 0) {
        const off = index.offset(id);
        const recEnd = off + index.length(id);
        if (start < 0) start = off;
        else if (recEnd - start > limits.bytes) break;
        end = recEnd;
      }
      id++;
    }
    const to = id - 1;
    counters.steps++;
    counters.maxIds = Math.max(counters.maxIds, id - from);
    if (start < 0) {
      this.advance(to);
      this.schedule();
      return;
    }
    const length = end - start;
    if (this.readBuf.length < length) this.readBuf = Buffer.allocUnsafe(Math.max(length, limits.bytes));
    const buf = this.readBuf;
    this.inflight = true;
    readFully(s.seg.fd, buf, length, start, (err) => {
      this.inflight = false;
      if (err !== null) return this.abandon(err);
      if (this.stopping) return this.stopNow();
      this.copyWindow(buf, start, end, from, to);
      this.writeOutputs(() => {
        this.advance(to);
        this.host.onStep?.('copy-step');
        if (this.stopping) return this.stopNow();
        this.schedule();
      });
    });
  }

  /** Copies the ids from..to still live (their records lie in buf, read from `start`). */
  private copyWindow(buf: Buffer, start: number, end: number, from: number, to: number): void {
    const { table, queues, keys, counters } = this.host;
    const { index } = table;
    const acks = new Map<string, number[]>();
    const delivered = new Map<string, number[]>();
    let records = 0;
    let bytes = 0;
    for (let id = from; id <= to; id++) {
      if (index.refs(id) === 0) continue;
      const off = index.offset(id);
      const len = index.length(id);
      if (off < start || off + len > end) throw new Error(`compaction: record ${id} outside its window`);
      const at = off - start;
      const newOff = appendRaw(this.segOut, buf, at, at + len);
      this.moved.push(id, off);
      index.setOffset(id, newOff);
      records++;
      bytes += len;
      // The queues the record names, as recovery will read them: say which have let it go.
      const p = at + RECORD_HEADER_SIZE;
      const nq = buf.readUInt16LE(p + 17);
      let q = p + 19;
      for (let i = 0; i < nq; i++) {
        const qLen = buf.readUInt16LE(q);
        const queue = this.decoder.decode(buf, q + 2, q + 2 + qLen);
        q += 2 + qLen;
        const state = queues.get(queue)?.stateOf(id) ?? -1;
        const into = state < 0 ? acks : state === 1 ? delivered : null;
        if (into === null) continue;
        let list = into.get(queue);
        if (list === undefined) into.set(queue, (list = []));
        list.push(id);
      }
    }
    for (const [queue, ids] of acks) appendIdBatch(this.ackOut, RecordType.Ack, keys.get(queue), ids, 0, ids.length);
    for (const [queue, ids] of delivered) appendIdBatch(this.ackOut, RecordType.Delivered, keys.get(queue), ids, 0, ids.length);
    this.copiedThrough = to;
    counters.maxRecords = Math.max(counters.maxRecords, records);
    counters.maxBytes = Math.max(counters.maxBytes, bytes);
  }

  private advance(to: number): void {
    this.copiedThrough = to;
    this.cursor = to + 1;
    const s = this.run[this.member]!;
    if (this.cursor > s.maxId) {
      this.member++;
      if (this.member === this.run.length) this.phase = 'sync';
      else this.cursor = this.run[this.member]!.firstId;
      this.copiedThrough = this.cursor - 1;
    }
  }

  /** Writes both output tails on the thread pool; done runs when both are in their files. */
  private writeOutputs(done: () => void): void {
    let pending = 1;
    let failure: Error | null = null;
    const one = (err: Error | null): void => {
      failure ??= err;
      if (--pending !== 0) return;
      this.inflight = false;
      if (failure !== null) this.abandon(failure);
      else if (this.stopping) this.stopNow();
      else done();
    };
    this.inflight = true;
    if (this.segOut.startWrite(one)) pending++;
    if (this.ackOut.startWrite(one)) pending++;
    one(null);
  }

  private syncOutputs(): void {
    this.writeOutputs(() => {
      this.inflight = true;
      fsync(this.segOut.fd, (err1) => {
        fsync(this.ackOut.fd, (err2) => {
          this.inflight = false;
          const err = err1 ?? err2;
          if (err !== null) return this.abandon(err);
          this.host.onStep?.('files-written');
          if (this.stopping) return this.stopNow();
          try {
            renameSync(this.tmpSeg, this.first.segPath);
          } catch (e) {
            return this.abandon(e as Error);
          }
          this.phase = 'renamed';
          // From here the group commit writes the new ack file's tail, in the same rounds as
          // the old ack files that get the same records: a confirmed ack is in both.
          const { commit } = this.host;
          this.handedOver = true;
          commit.touch(this.ackOut);
          commit.directoryChanged();
          commit.appended++;
          commit.register((e) => this.renameDurable(e));
          commit.scheduleTurn();
        });
      });
    });
  }

  /** The segment's rename and every record forwarded so far are on disk. */
  private renameDurable(err: Error | null): void {
    if (this.phase !== 'renamed') return;
    if (err !== null) return this.keepOldAcks(err);
    this.host.onStep?.('segment-replaced');
    if (this.stopping) return this.stopNow();
    try {
      renameSync(this.tmpAck, this.first.ackPath);
    } catch (e) {
      return this.keepOldAcks(e as Error);
    }
    this.switchOver();
    this.host.onStep?.('acks-replaced');
  }

  /** Adopts the new files in memory; the members' files go once the next group commit is synced. */
  private switchOver(): void {
    const { table, commit, counters } = this.host;
    const first = this.first;
    this.retired.push(first.seg);
    if (first.ack !== null) this.retired.push(first.ack);
    let live = 0;
    let liveBytes = 0;
    for (const s of this.run) {
      live += s.live;
      liveBytes += s.liveBytes;
    }
    for (const s of this.members) {
      this.retired.push(s.seg);
      if (s.ack !== null) this.retired.push(s.ack);
      table.remove(s);
    }
    this.segOut.seal();
    first.seg = this.segOut;
    first.ack = this.ackOut;
    first.maxId = this.last.maxId;
    first.lastNo = this.last.no;
    first.live = live;
    first.liveBytes = liveBytes;
    this.moved = [];
    this.phase = 'switched';
    counters.finished++;
    // Forwarded records still in the ack tail, the renames: durable in the next round.
    commit.touch(this.ackOut);
    commit.directoryChanged();
    commit.appended++;
    commit.register((err) => {
      if (err !== null || this.stopping) return;
      this.syncedAfterSwitch = true;
      this.schedule();
    });
    commit.scheduleTurn();
  }

  private removeMembers(): void {
    if (!this.syncedAfterSwitch || this.phase !== 'switched') return;
    // A retired file may still be in a write round that started before the switch.
    if (this.retired.some((f) => f.busy)) {
      this.schedule();
      return;
    }
    const { commit, onStep } = this.host;
    for (const s of this.members) {
      unlinkSync(s.segPath);
      onStep?.('member-removed');
      if (s.ack !== null) unlinkSync(s.ackPath);
    }
    for (const f of this.takeRetired()) commit.closeWhenIdle(f);
    commit.directoryChanged();
    commit.scheduleTurn();
    this.finish();
  }

  private finish(): void {
    this.phase = 'done';
    for (const s of this.run) s.compacting = false;
    // Those that emptied meanwhile were passed over by dropEmptySegments: offer them again.
    for (const s of this.run) if (s.live === 0 && this.host.table.segments.includes(s)) this.host.table.emptied.push(s);
    this.host.finished(this);
    this.notifyIdle();
  }

  /** Before the rename: drop the new files, point the index back at the old ones. */
  private abandon(err: Error | null): void {
    if (this.phase === 'done') return;
    const index = this.host.table.index;
    for (let i = 0; i < this.moved.length; i += 2) {
      if (index.refs(this.moved[i]!) !== 0) index.setOffset(this.moved[i]!, this.moved[i + 1]!);
    }
    this.moved = [];
    this.copiedThrough = this.first.firstId - 1;
    for (const f of [this.segOut, this.ackOut]) f.close();
    unlinkQuietly(this.tmpSeg);
    unlinkQuietly(this.tmpAck);
    if (err !== null) {
      this.host.counters.failed++;
      this.host.logger.warn({ file: this.first.segPath, err: String(err) }, 'segment compaction failed; the segments are kept as they were');
    }
    this.finish();
  }

  /**
   * The new segment is on disk but the new ack file did not follow (an error, or close()):
   * recovery still finds every needed ack in the old files, so keep them all (pinned: never
   * deleted nor compacted in this run) and go on with the old files in memory.
   */
  private keepOldAcks(err: Error | null): void {
    if (err !== null) {
      this.host.counters.failed++;
      this.host.logger.error({ file: this.first.ackPath, err: String(err) }, 'could not replace the ack file after compaction; keeping the old ones');
    }
    const index = this.host.table.index;
    for (let i = 0; i < this.moved.length; i += 2) {
      if (index.refs(this.moved[i]!) !== 0) index.setOffset(this.moved[i]!, this.moved[i + 1]!);
    }
    this.moved = [];
    this.copiedThrough = this.first.firstId - 1;
    unlinkQuietly(this.tmpAck);
    // ackOut may be in a group commit round: closed with the store.
    this.host.retire(this.segOut);
    this.host.retire(this.ackOut);
    for (const s of this.run) s.pinned = true;
    this.finish();
  }
}

/** pread until length bytes are in buf (the old segment is complete: no short file). */
function readFully(fd: number, buf: Buffer, length: number, position: number, done: (err: Error | null) => void): void {
  let got = 0;
  const onRead = (err: NodeJS.ErrnoException | null, n: number): void => {
    if (err !== null) return done(err);
    if (n === 0) return done(new Error(`unexpected end of segment file at ${position + got}`));
    got += n;
    if (got < length) read(fd, buf, got, length - got, position + got, onRead);
    else done(null);
  };
  read(fd, buf, 0, length, position, onRead);
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never created, or already gone
  }
}
