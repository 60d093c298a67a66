import { fdatasync, fsync } from 'node:fs';
import type { AppendFile } from './append-file';
import { runSyncCallbacks, type SyncCallback } from './message-store';

/**
 * Group commit: one fsync round covers every record written before it started, for all
 * publishers and queues. Appends only bump a counter; a waiter remembers the counter's value
 * when it registered, and runs after the first round that started once those appends were
 * written. While a round is in flight (on libuv's thread pool) new appends accumulate for
 * the next one, so the batch size adapts to the disk's latency.
 *
 *   appended ≥ written ≥ synced       (all three count appends)
 */
export class GroupCommit {
  /** Appends so far (publish, ack, delivered, delete). Bumped by the store. */
  appended = 0;
  private written = 0;
  private synced = 0;
  private waitSeq: number[] = [];
  private waitCb: SyncCallback[] = [];
  private dirty: AppendFile[] = [];
  private dirDirty = false;
  private syncing = false;
  private closeAfterRound: AppendFile[] = [];
  private idle: (() => void)[] = [];
  /** Completed rounds. */
  rounds = 0;
  /** A failed fsync poisons everything after it: the kernel may have dropped the pages. */
  failure: Error | null = null;

  constructor(private readonly dirFd: number) {}

  register(cb: SyncCallback): void {
    this.waitSeq.push(this.appended);
    this.waitCb.push(cb);
  }

  /** A file received bytes: the next round must sync it. */
  fileWritten(file: AppendFile): void {
    if (!file.dirty) return;
    file.dirty = false;
    this.dirty.push(file);
  }

  /** A file was created, renamed or removed: the next round syncs the directory too. */
  directoryChanged(): void {
    this.dirDirty = true;
  }

  /** Everything appended up to seq (a value of `appended`) is in the files. */
  allWritten(seq: number): void {
    if (seq > this.written) this.written = seq;
  }

  /** Closes a file now, or after the round in flight (which may still be fsyncing its fd). */
  closeWhenIdle(file: AppendFile): void {
    this.dirty = this.dirty.filter((f) => f !== file);
    if (this.syncing) this.closeAfterRound.push(file);
    else file.close();
  }

  get busy(): boolean {
    return this.syncing;
  }

  get waiting(): number {
    return this.waitCb.length;
  }

  /** Starts a round if none is running and there is something to sync or someone waiting. */
  kick(): void {
    if (this.syncing) return;
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
      for (const f of this.closeAfterRound) f.close();
      this.closeAfterRound = [];
      if (error !== null && this.failure === null) this.failure = error;
      this.synced = target;
      this.release();
      if (this.dirty.length !== 0 || this.dirDirty || this.waitSeq.some((s) => s <= this.written)) this.kick();
      if (!this.syncing) this.notifyIdle();
    };
    // fdatasync is enough for appended data: it flushes the size change with the bytes.
    for (const f of files) fdatasync(f.fd, done);
    if (syncDir) fsync(this.dirFd, done);
  }

  /** Runs every waiting callback with err (closing with records that could not be written). */
  failWaiting(err: Error): void {
    const cbs = this.waitCb;
    this.waitCb = [];
    this.waitSeq = [];
    runSyncCallbacks(cbs, err);
  }

  /** Resolves when no round is running (used by close). */
  whenIdle(): Promise<void> {
    if (!this.syncing) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private notifyIdle(): void {
    const idle = this.idle;
    this.idle = [];
    for (const f of idle) f();
  }

  private release(): void {
    let n = 0;
    while (n < this.waitSeq.length && this.waitSeq[n]! <= this.synced) n++;
    if (n === 0) return;
    const cbs = this.waitCb.splice(0, n);
    this.waitSeq.splice(0, n);
    runSyncCallbacks(cbs, this.failure);
  }
}
