import { fdatasync, fsync } from 'node:fs';
import type { AppendFile } from './append-file';
import { runSyncCallbacks, type SyncCallback } from './message-store';

/** What the store does around each write round. */
export interface CommitHooks {
  /** Turn whatever is buffered elsewhere (per-queue ack lists) into file tails. */
  beforeWrite(): void;
  /** A round completed and no write is in flight: files may be deleted or rewritten now. */
  betweenWrites(): void;
  /** True when beforeWrite has something to encode. */
  hasBuffered(): boolean;
  writeFailed(err: Error): void;
  writeRecovered(): void;
}

interface WriteRound {
  /** Writes still in flight, plus one held by startWrites until it has started them all. */
  pending: number;
  /** `appended` when the round started: everything up to it is in the files when it ends. */
  seq: number;
  error: Error | null;
}

/**
 * Gets appended records to disk and tells waiters when they are there.
 *
 * Once per I/O turn a write round hands every file's tail to libuv's thread pool; rounds do
 * not overlap. When a round ends, a sync round fdatasyncs the files it wrote (and the
 * directory when files were created or removed). One sync round covers every record written
 * before it started, for all publishers and queues; while it runs, new appends accumulate for
 * the next, so the batch size adapts to the disk's latency.
 *
 * Appends only bump a counter. A waiter remembers the counter's value when it registered and
 * runs after the first sync round that started once those appends were written:
 *
 *   appended ≥ written ≥ synced       (all three count appends)
 */
export class GroupCommit {
  /** Appends so far (publish, ack, delivered, delete). Bumped by the store. */
  appended = 0;
  private written = 0;
  private synced = 0;
  /** Files whose tail holds bytes not yet handed to a write round. */
  private tails: AppendFile[] = [];
  private writeRound: WriteRound | null = null;
  private turnScheduled = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private failing = false;
  private waitSeq: number[] = [];
  private waitCb: SyncCallback[] = [];
  private dirty: AppendFile[] = [];
  private dirDirty = false;
  private syncing = false;
  private closeAfterRound: AppendFile[] = [];
  private idle: (() => void)[] = [];
  private stopped = false;
  /** Completed sync rounds. */
  rounds = 0;
  /** A failed fsync poisons everything after it: the kernel may have dropped the pages. */
  failure: Error | null = null;
  private readonly onTurn = (): void => this.turn();

  constructor(
    private readonly dirFd: number,
    private readonly hooks: CommitHooks,
    private readonly retryMs: number,
    /** False for scratch files that a restart discards anyway: writes, but no fsync. */
    private readonly syncFiles = true,
  ) {}

  /** Registers a file that was (or is about to be) appended to for the next write round. */
  touch(file: AppendFile): void {
    if (file.queued) return;
    file.queued = true;
    this.tails.push(file);
  }

  /** Something was appended or buffered: make sure a write round follows this turn. */
  scheduleTurn(): void {
    if (this.turnScheduled || this.stopped) return;
    this.turnScheduled = true;
    setImmediate(this.onTurn);
  }

  /** A burst larger than the write buffer may start writing before the turn ends. */
  writeEarly(): void {
    if (this.writeRound === null && !this.failing) this.startWrites();
  }

  register(cb: SyncCallback): void {
    this.waitSeq.push(this.appended);
    this.waitCb.push(cb);
    this.scheduleTurn();
  }

  /** A file was created, renamed or removed: the next sync round syncs the directory too. */
  directoryChanged(): void {
    this.dirDirty = true;
  }

  /** Closes a file now, or after the sync round in flight (which may still use its fd). */
  closeWhenIdle(file: AppendFile): void {
    this.dirty = this.dirty.filter((f) => f !== file);
    this.tails = this.tails.filter((f) => f !== file);
    file.queued = false;
    if (this.syncing) this.closeAfterRound.push(file);
    else file.closeInBackground();
  }

  get waiting(): number {
    return this.waitCb.length;
  }

  /**
   * Writes and syncs everything (close). Gives up after a few failed attempts and fails the
   * remaining waiters rather than leave confirms hanging.
   */
  async drain(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (let failures = 0; failures < 3; ) {
      if (this.writeRound !== null || this.syncing) await new Promise<void>((resolve) => this.idle.push(resolve));
      else if (this.tails.length !== 0 || this.hooks.hasBuffered()) {
        this.startWrites();
      } else {
        this.kick();
        if (!this.syncing) break;
      }
      if (this.failing && this.writeRound === null) failures++;
    }
    if (this.waitCb.length !== 0) {
      const cbs = this.waitCb;
      this.waitCb = [];
      this.waitSeq = [];
      runSyncCallbacks(cbs, new Error('message store closed with records it could not write'));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Write rounds

  private turn(): void {
    this.turnScheduled = false;
    if (this.writeRound === null && !this.stopped) this.startWrites();
  }

  private startWrites(): void {
    this.hooks.beforeWrite();
    const round: WriteRound = { pending: 1, seq: this.appended, error: null };
    this.writeRound = round;
    const files = this.tails;
    this.tails = [];
    for (const file of files) {
      file.queued = false;
      if (file.startWrite((err) => this.fileWritten(round, file, err))) round.pending++;
    }
    this.fileWritten(round, null, null);
  }

  private fileWritten(round: WriteRound, file: AppendFile | null, err: Error | null): void {
    if (file !== null) {
      if (err !== null) {
        round.error ??= err;
        this.touch(file);
      }
      if (file.dirty) {
        file.dirty = false;
        this.dirty.push(file);
      }
    }
    if (--round.pending !== 0) return;
    this.writeRound = null;
    if (round.error !== null) {
      this.failing = true;
      this.hooks.writeFailed(round.error);
      if (this.retryTimer === null && !this.stopped) {
        // Not unref'd: a process holding unwritten records must not end quietly.
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.turn();
        }, this.retryMs);
      }
    } else {
      if (this.failing) {
        this.failing = false;
        this.hooks.writeRecovered();
      }
      if (round.seq > this.written) this.written = round.seq;
      this.hooks.betweenWrites();
    }
    this.kick();
    // Appends made while the round ran found their turn returning early: write them now.
    if (round.error === null && (this.tails.length !== 0 || this.hooks.hasBuffered())) this.scheduleTurn();
    this.notifyIdle();
  }

  // ---------------------------------------------------------------------------------------
  // Sync rounds

  /** Starts a sync round if none is running and there is something to sync or someone waiting. */
  private kick(): void {
    if (this.syncing) return;
    if (!this.syncFiles) {
      this.dirty = [];
      this.dirDirty = false;
    }
    if (this.dirty.length === 0 && !this.dirDirty) {
      this.synced = this.written;
      this.release();
      return;
    }
    const files = this.dirty;
    const syncDir = this.dirDirty;
    this.dirty = [];
    this.dirDirty = false;
    const target = this.written;
    this.syncing = true;
    let pending = files.length + (syncDir ? 1 : 0);
    let error: Error | null = null;
    const done = (err: NodeJS.ErrnoException | null): void => {
      if (err !== null && error === null) error = err;
      if (--pending !== 0) return;
      this.syncing = false;
      this.rounds++;
      for (const f of this.closeAfterRound) f.closeInBackground();
      this.closeAfterRound = [];
      if (error !== null && this.failure === null) this.failure = error;
      this.synced = target;
      this.release();
      if (this.dirty.length !== 0 || this.dirDirty || this.waitSeq.some((s) => s <= this.written)) this.kick();
      this.notifyIdle();
    };
    // fdatasync is enough for appended data: it flushes the size change with the bytes.
    for (const f of files) fdatasync(f.fd, done);
    if (syncDir) fsync(this.dirFd, done);
  }

  private release(): void {
    let n = 0;
    while (n < this.waitSeq.length && this.waitSeq[n]! <= this.synced) n++;
    if (n === 0) return;
    const cbs = this.waitCb.splice(0, n);
    this.waitSeq.splice(0, n);
    runSyncCallbacks(cbs, this.failure);
  }

  private notifyIdle(): void {
    if (this.writeRound !== null || this.syncing) return;
    const idle = this.idle;
    this.idle = [];
    for (const f of idle) f();
  }
}
