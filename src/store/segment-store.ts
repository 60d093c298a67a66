import { closeSync, fsyncSync, mkdirSync, openSync, statfsSync, unlinkSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { AppendFile } from './append-file';
import { Compaction, DEFAULT_STEP_LIMITS, pickRun, type CompactionStep, type StepCounters, type StepLimits } from './compaction';
import { GroupCommit } from './group-commit';
import {
  assertPublishable,
  runSyncCallbacks,
  type MessageStore,
  type ReadMessage,
  type RecoveredQueue,
  type StoredMessage,
  type StoreLogger,
  type StoreStats,
  type SyncCallback,
} from './message-store';
import { QueueTable } from './queue-index';
import {
  ACK_MAGIC,
  KeyCache,
  RECORD_HEADER_SIZE,
  RecordType,
  SEGMENT_MAGIC,
  appendDelete,
  appendIdBatch,
  appendPublish,
  decodePublish,
  writeFileHeader,
} from './record-format';
import { recoverSegments } from './recovery';
import { Segment, SegmentTable } from './segment';
import { StoreLock } from './store-lock';

export interface SegmentStoreOptions {
  /** Directory of segment files; created if missing. One store per directory (locked). */
  readonly dir: string;
  /** A segment rolls over past this size. Default 64 MiB. */
  readonly segmentSize?: number;
  /** The write tail is written mid-turn once it holds this much. Default 4 MiB. */
  readonly writeBufferSize?: number;
  /** Rewrite a non-active segment when its live bytes fall below this fraction. Default 0.5; 0 never. */
  readonly compactBelow?: number;
  readonly logger?: StoreLogger;
  /** Delay before retrying writes that failed (ENOSPC, EIO). Default 1000 ms. */
  readonly writeRetryMs?: number;
  /** Called between compaction's durable steps; crash tests kill the process there. */
  readonly onCompactionStep?: (step: CompactionStep) => void;
  /** Work per compaction step (tests make it small to get many steps). */
  readonly compactionStep?: Partial<StepLimits>;
}

const SILENT: StoreLogger = { warn() {}, error() {} };


/**
 * The disk store. Publishes append to the active segment's in-memory tail; acks, delivered
 * marks and deletes are collected per queue and encoded, once per turn, into the ack file of
 * the segment holding each message. GroupCommit writes the tails on the thread pool and
 * fsyncs them; between its write rounds, segments whose messages are all gone are deleted and
 * the oldest run of sparse ones is compacted. See record-format.ts for the bytes, recovery.ts
 * for what a restart does with them, compaction.ts for how files are rewritten safely.
 */
export class SegmentStore implements MessageStore {
  private readonly dir: string;
  private readonly segmentSize: number;
  private readonly writeBufferSize: number;
  private readonly compactBelow: number;
  private readonly logger: StoreLogger;
  private readonly onCompactionStep: ((step: CompactionStep) => void) | undefined;
  private readonly lock: StoreLock;
  private readonly dirFd: number;
  private readonly table: SegmentTable;
  private readonly queues: QueueTable;
  private readonly keys = new KeyCache();
  private readonly commit: GroupCommit;
  private active: Segment;
  private nextId: number;
  private nextSegmentNo: number;
  private acks = new Map<string, number[]>();
  private deliveries = new Map<string, number[]>();
  private releasedSinceCompactionCheck = false;
  private lastError: string | null = null;
  private closed = false;
  /** close() released the files: nothing may touch a descriptor any more. */
  private finished = false;
  private readonly release = (id: number): void => this.table.release(id);
  private readonly stepLimits: StepLimits;
  private compaction: Compaction | null = null;
  private readonly compactionCounters: StepCounters = { steps: 0, maxIds: 0, maxRecords: 0, maxBytes: 0, finished: 0, failed: 0 };
  private compactionWaiters: (() => void)[] = [];
  /** Files a compaction gave up on, closed with the store. */
  private retired: AppendFile[] = [];

  private constructor(options: SegmentStoreOptions) {
    this.dir = options.dir;
    this.segmentSize = options.segmentSize ?? 64 * 1024 * 1024;
    if (this.segmentSize < 4096 || this.segmentSize > 1024 * 1024 * 1024) throw new RangeError('segmentSize must be 4 KiB to 1 GiB');
    this.writeBufferSize = options.writeBufferSize ?? 4 * 1024 * 1024;
    this.compactBelow = options.compactBelow ?? 0.5;
    this.logger = options.logger ?? SILENT;
    this.onCompactionStep = options.onCompactionStep;
    this.stepLimits = { ...DEFAULT_STEP_LIMITS, ...options.compactionStep };
    mkdirSync(this.dir, { recursive: true });
    this.lock = StoreLock.acquire(this.dir);
    this.dirFd = openSync(this.dir, 'r');
    const state = recoverSegments(this.dir, this.logger, 64 * 1024);
    this.table = state.table;
    this.queues = state.queues;
    this.nextId = state.nextId;
    this.nextSegmentNo = state.nextSegmentNo;
    // Truncations and deletions made by recovery must be durable before anything new is.
    fsyncSync(this.dirFd);
    this.commit = new GroupCommit(
      this.dirFd,
      {
        beforeWrite: () => {
          this.encodeIdBatches(this.acks, RecordType.Ack);
          this.encodeIdBatches(this.deliveries, RecordType.Delivered);
        },
        hasBuffered: () => this.acks.size !== 0 || this.deliveries.size !== 0,
        betweenWrites: () => {
          this.dropEmptySegments();
          if (this.releasedSinceCompactionCheck && this.compactBelow > 0 && !this.closed && this.compaction === null) this.compactOne();
          else if (this.compaction === null) this.notifyCompactionIdle();
        },
        writeFailed: (err) => {
          const text = String(err);
          if (this.lastError !== text) {
            this.logger.error({ dir: this.dir, err: text }, 'message store write failed; keeping records in memory and retrying');
          }
          this.lastError = text;
        },
        writeRecovered: () => {
          this.logger.warn({ dir: this.dir }, 'message store writes succeed again');
          this.lastError = null;
        },
      },
      options.writeRetryMs ?? 1000,
    );
    this.active = this.createSegment();
  }

  /** Opens (recovering) the store in options.dir. Synchronous: nothing may be served before it. */
  static open(options: SegmentStoreOptions): SegmentStore {
    return new SegmentStore(options);
  }

  publish(msg: StoredMessage, queues: readonly string[], publishedAt = Date.now()): number {
    if (this.closed) throw new Error('message store is closed');
    assertPublishable(queues);
    if (this.active.seg.end >= this.segmentSize) this.rollOver();
    const segment = this.active;
    const file = segment.seg;
    const id = this.nextId;
    this.commit.touch(file);
    const offset = appendPublish(file, this.keys, id, publishedAt, msg, queues);
    this.nextId = id + 1;
    this.table.added(segment, id, offset, file.end - offset, queues.length);
    this.queues.add(queues, id);
    this.commit.appended++;
    // A burst bigger than the write buffer starts writing before the turn ends.
    if (file.used >= this.writeBufferSize) this.commit.writeEarly();
    this.commit.scheduleTurn();
    return id;
  }

  ack(queue: string, id: number): void {
    // After close (the broker tearing down channels last) there is nothing left to record.
    if (this.closed || !this.queues.remove(queue, id)) return;
    let ids = this.acks.get(queue);
    if (ids === undefined) this.acks.set(queue, (ids = []));
    ids.push(id);
    this.table.release(id);
    this.releasedSinceCompactionCheck = true;
    this.commit.appended++;
    this.commit.scheduleTurn();
  }

  delivered(queue: string, id: number): void {
    if (this.closed || !this.queues.markDelivered(queue, id)) return;
    let ids = this.deliveries.get(queue);
    if (ids === undefined) this.deliveries.set(queue, (ids = []));
    ids.push(id);
    this.commit.appended++;
    this.commit.scheduleTurn();
  }

  deleteQueue(queue: string): void {
    const q = this.closed ? undefined : this.queues.get(queue);
    if (q === undefined) return;
    // One delete record in the ack file of each segment holding the queue's messages, so
    // that the record goes away with the last of them.
    const upTo = q.last();
    const key = this.keys.get(queue);
    let last: Segment | undefined;
    q.forEach((id) => {
      const segment = this.table.segmentOf(id);
      if (segment === undefined || segment === last) return;
      last = segment;
      appendDelete(this.ackFile(segment), key, upTo);
      if (segment.compacting) this.compaction?.forwardDelete(key, upTo);
    });
    // Pending acks of this queue stay: one may be for a message that already left it and lies
    // beyond upTo, where no delete record covers it. Duplicates of the delete are harmless.
    this.queues.removeQueue(queue, this.release);
    this.releasedSinceCompactionCheck = true;
    this.commit.appended++;
    this.commit.scheduleTurn();
  }

  afterSync(cb: SyncCallback): void {
    if (this.closed) {
      setImmediate(() => runSyncCallbacks([cb], new Error('message store is closed')));
      return;
    }
    this.commit.register(cb);
    this.commit.scheduleTurn();
  }

  read(id: number): ReadMessage {
    if (this.finished) throw new Error('message store is closed');
    const index = this.table.index;
    const segment = index.refs(id) === 0 ? undefined : this.table.segmentOf(id);
    if (segment === undefined) throw new RangeError(`message ${id} is not in the store`);
    const length = index.length(id);
    const file = this.compaction?.fileFor(id) ?? segment.seg;
    const rec = file.read(index.offset(id), length);
    // Checked on every read too: a bit that rots after recovery must not reach a consumer.
    if (rec.readUInt32LE(0) !== crc32(rec.subarray(4)) || rec[RECORD_HEADER_SIZE] !== RecordType.Publish || rec.readDoubleLE(RECORD_HEADER_SIZE + 1) !== id) {
      throw new Error(`${segment.segPath}: record of message ${id} at offset ${index.offset(id)} is corrupt`);
    }
    return decodePublish(rec, RECORD_HEADER_SIZE, length);
  }

  recover(): Map<string, RecoveredQueue> {
    return this.queues.snapshot();
  }

  diskFree(): number {
    const s = statfsSync(this.dir);
    return s.bavail * s.bsize;
  }

  stats(): StoreStats {
    let diskBytes = 0;
    for (const s of this.table.segments) diskBytes += s.diskBytes;
    return {
      messages: this.table.index.count,
      diskBytes,
      segments: this.table.segments.length,
      syncs: this.commit.rounds,
      lastError: this.lastError ?? (this.commit.failure === null ? null : String(this.commit.failure)),
    };
  }

  /**
   * Recounts what the bookkeeping claims (each segment's live messages and bytes against the
   * index) and returns the disagreements; empty when consistent. For tests and debugging.
   */
  checkInvariants(): string[] {
    const problems: string[] = [];
    const index = this.table.index;
    let total = 0;
    for (const s of this.table.segments) {
      let live = 0;
      let bytes = 0;
      for (let id = s.firstId; id <= s.maxId; id++) {
        if (index.refs(id) === 0) continue;
        live++;
        bytes += index.length(id);
      }
      total += live;
      if (live !== s.live || bytes !== s.liveBytes) {
        problems.push(`segment ${s.no}: counts ${s.live} live / ${s.liveBytes} bytes, index has ${live} / ${bytes}`);
      }
    }
    if (total !== index.count) problems.push(`segments hold ${total} live messages, index counts ${index.count}`);
    return problems;
  }

  /** Bytes of the in-memory index (message positions and queue membership). */
  indexBytes(): number {
    return this.table.index.byteSize + this.queues.byteSize;
  }

  /** What compaction steps did so far: the most work any one step did, runs finished. */
  compactionStats(): Readonly<StepCounters> {
    return { ...this.compactionCounters };
  }

  /** A compaction is under way (for tests). */
  compactionRunning(): boolean {
    return this.compaction !== null;
  }

  /**
   * Resolves once no compaction runs and none is due (for tests: the store is as compact as
   * it will get until more messages die).
   */
  compactionSettled(): Promise<void> {
    return new Promise((resolve) => {
      this.compactionWaiters.push(resolve);
      this.releasedSinceCompactionCheck ||= this.compactBelow > 0;
      this.commit.scheduleTurn();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Before the drain: a compaction still copying is abandoned, one past its rename reaches
    // the switch, so that the drain syncs what the switch handed to the group commit.
    const compaction = this.compaction;
    if (compaction !== null) await compaction.stop();
    await this.commit.drain();
    // A switched run's old files stay on disk: recovery folds and removes them.
    for (const f of [...(compaction?.takeRetired() ?? []), ...this.retired]) f.close();
    for (const s of this.table.segments) {
      s.seg.close();
      s.ack?.close();
    }
    closeSync(this.dirFd);
    this.finished = true;
    this.lock.release();
  }

  // -------------------------------------------------------------------------------------

  /** Encodes per-queue id lists into the ack files of the segments holding those ids. */
  private encodeIdBatches(batches: Map<string, number[]>, type: RecordType.Ack | RecordType.Delivered): void {
    if (batches.size === 0) return;
    for (const [queue, ids] of batches) {
      for (let i = 1; i < ids.length; i++) {
        if (ids[i]! < ids[i - 1]!) {
          ids.sort((a, b) => a - b);
          break;
        }
      }
      const key = this.keys.get(queue);
      let from = 0;
      while (from < ids.length) {
        const segment = this.table.segmentOf(ids[from]!);
        let to = from + 1;
        const limit = segment === undefined ? -1 : segment.maxId;
        while (to < ids.length && ids[to]! <= limit) to++;
        // A segment about to be deleted needs no record of its messages' fate.
        // Not so for one in a compaction (or kept after a failed one): its files stay for now.
        if (segment !== undefined && (segment.live !== 0 || segment === this.active || segment.compacting || segment.pinned)) {
          appendIdBatch(this.ackFile(segment), type, key, ids, from, to);
          if (segment.compacting) this.compaction?.forwardIds(type, key, ids, from, to);
        }
        from = to;
      }
    }
    batches.clear();
  }

  /** The segment's ack file, created on first use, with its tail registered for writing. */
  private ackFile(segment: Segment): AppendFile {
    let file = segment.ack;
    if (file === null) {
      file = new AppendFile(segment.ackPath, openSync(segment.ackPath, 'w+'), 0, 64 * 1024);
      this.commit.touch(file);
      writeFileHeader(file, ACK_MAGIC, segment.firstId);
      segment.ack = file;
      this.commit.directoryChanged();
    } else {
      this.commit.touch(file);
    }
    return file;
  }

  private createSegment(): Segment {
    const no = this.nextSegmentNo++;
    const segment = new Segment(this.dir, no, this.nextId, new AppendFile('', -1, 0, 0));
    const fd = openSync(segment.segPath, 'wx+');
    segment.seg = new AppendFile(segment.segPath, fd, 0, Math.min(this.writeBufferSize, 1024 * 1024));
    this.commit.touch(segment.seg);
    writeFileHeader(segment.seg, SEGMENT_MAGIC, segment.firstId, no);
    this.table.add(segment);
    this.commit.directoryChanged();
    return segment;
  }

  private rollOver(): void {
    const old = this.active;
    old.seg.seal();
    this.active = this.createSegment();
    if (old.live === 0) this.table.emptied.push(old);
    this.commit.scheduleTurn();
  }

  private dropEmptySegments(): void {
    const emptied = this.table.emptied;
    if (emptied.length === 0) return;
    this.table.emptied = [];
    for (const segment of emptied) {
      if (segment.live !== 0 || segment === this.active || segment.pinned || segment.compacting || !this.table.segments.includes(segment)) continue;
      // Segment first: an ack file without its segment is harmless, the reverse resurrects.
      unlinkSync(segment.segPath);
      if (segment.ack !== null) unlinkSync(segment.ackPath);
      this.table.remove(segment);
      this.commit.closeWhenIdle(segment.seg);
      if (segment.ack !== null) this.commit.closeWhenIdle(segment.ack);
      this.commit.directoryChanged();
    }
  }

  /** Starts rewriting (and merging) the oldest run of sparse or small segments, if any. */
  private compactOne(): void {
    this.releasedSinceCompactionCheck = false;
    const run = pickRun(this.table.segments, this.active, this.segmentSize, this.compactBelow);
    if (run.length === 0) {
      this.notifyCompactionIdle();
      return;
    }
    const { table, queues, keys, commit, dirFd, logger, onCompactionStep: onStep, stepLimits: limits, compactionCounters: counters } = this;
    try {
      this.compaction = new Compaction(
        {
          table,
          queues,
          keys,
          commit,
          dirFd,
          logger,
          limits,
          counters,
          onStep,
          retire: (f) => this.retired.push(f),
          finished: (c) => {
            if (this.compaction !== c) return;
            this.compaction = null;
            if (this.closed) return;
            // More to do elsewhere? Look again after the next write round.
            this.releasedSinceCompactionCheck = true;
            this.commit.scheduleTurn();
          },
        },
        run,
      );
    } catch (err) {
      logger.warn({ file: run[0]!.segPath, err: String(err) }, 'could not start a segment compaction');
    }
  }

  private notifyCompactionIdle(): void {
    if (this.compactionWaiters.length === 0 || (this.releasedSinceCompactionCheck && this.compactBelow > 0)) return;
    const waiters = this.compactionWaiters;
    this.compactionWaiters = [];
    for (const w of waiters) w();
  }
}
