import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AppendFile } from './append-file';
import { readWatermarkFile, scanSegment, writeWatermarkFile } from './delay-log';
import { DelaySchedule, scheduleTag } from './delay-schedule';
import { GroupCommit } from './group-commit';
import type { StoreLogger, SyncCallback } from './message-store';

// Other modules import the delayed-message store from here alone; the pieces live in
// delay-schedule.ts (one exchange's schedule), delay-index.ts (due-time buckets),
// delay-log.ts (on-disk formats and recovery scan) and delay-peek.ts (listing).
export { DelaySchedule, scheduleTag } from './delay-schedule';
export type { DelayedRecord, Released } from './delay-log';
export type { DelayCounters } from './delay-index';

// Pending delayed messages live on disk, not in memory. Each delayed exchange appends its
// messages, in publish order, to a log of segment files (one file written and fsynced per
// group commit, however spread the due times are). Where each message is goes into an index
// of due-time buckets (bucketMs wide), 32 bytes per message, spilled to one scratch .idx file
// per bucket in small batches. Memory holds, per bucket, a counter and at most a few KB of
// unspilled entries, and per log segment a live count. Only buckets about to come due
// (lookaheadMs ahead) are read back, into typed arrays; bodies are read from the log one by
// one as they are released. So resident memory grows with the rate of messages coming due,
// not with how many are pending.

export interface DelayStoreOptions {
  readonly dir: string;
  /** Durable: fsynced, recovered at open. Otherwise scratch: wiped at open, never fsynced. */
  readonly durable: boolean;
  /** Width of a due-time bucket. Default 1000 ms. */
  readonly bucketMs?: number;
  /** How far ahead of its start a bucket is read back into memory. Default 2 buckets. */
  readonly lookaheadMs?: number;
  /** A log segment rolls over past this size. Default 64 MiB. */
  readonly segmentSize?: number;
  readonly logger?: StoreLogger;
  /**
   * Calls back once everything the broker routed so far is durable in the message store:
   * released messages' own copies must be on disk before their segment or watermark goes.
   */
  readonly routedDurable?: (cb: SyncCallback) => void;
}

const SILENT: StoreLogger = { warn() {}, error() {} };

/**
 * The directory of delayed-message schedules of one broker (durable), or its scratch
 * directory (transient messages, and persistent ones on non-durable exchanges).
 */
export class DelayStore {
  readonly dir: string;
  readonly durable: boolean;
  readonly bucketMs: number;
  readonly lookaheadMs: number;
  readonly segmentSize: number;
  readonly logger: StoreLogger;
  closed = false;
  private readonly dirFd: number;
  private readonly commit: GroupCommit;
  private readonly schedules = new Map<string, DelaySchedule>();
  private toClose: AppendFile[] = [];
  private readonly routed: (cb: SyncCallback) => void;

  private constructor(options: DelayStoreOptions) {
    this.dir = options.dir;
    this.durable = options.durable;
    this.bucketMs = Math.max(1, Math.floor(options.bucketMs ?? 1000));
    this.lookaheadMs = options.lookaheadMs ?? 2 * this.bucketMs;
    this.segmentSize = options.segmentSize ?? 64 * 1024 * 1024;
    this.logger = options.logger ?? SILENT;
    this.routed = options.routedDurable ?? ((cb) => setImmediate(() => cb(null)));
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
    this.dirFd = openSync(this.dir, 'r');
    this.commit = new GroupCommit(
      this.dirFd,
      {
        beforeWrite: () => {},
        hasBuffered: () => false,
        betweenWrites: () => this.betweenWrites(),
        writeFailed: (err) => this.logger.error({ dir: this.dir, err: String(err) }, 'delayed-message store write failed; retrying'),
        writeRecovered: () => this.logger.warn({ dir: this.dir }, 'delayed-message store writes succeed again'),
      },
      1000,
      this.durable,
    );
    if (this.durable) this.recover();
  }

  static open(options: DelayStoreOptions): DelayStore {
    return new DelayStore(options);
  }

  /** The schedule of a delayed exchange (recovered from disk if there was one). */
  schedule(key: string): DelaySchedule {
    let s = this.schedules.get(key);
    if (s === undefined) {
      s = new DelaySchedule(this, key, scheduleTag(key));
      this.schedules.set(key, s);
    }
    return s;
  }

  /** Keys of the schedules known (after recovery: those found on disk). */
  keys(): string[] {
    return [...this.schedules.keys()];
  }

  /** Pending messages over all schedules. */
  get pending(): number {
    let n = 0;
    for (const s of this.schedules.values()) n += s.pending;
    return n;
  }

  residentBytes(): number {
    let n = 0;
    for (const s of this.schedules.values()) n += s.residentBytes();
    return n;
  }

  afterSync(cb: SyncCallback): void {
    if (this.closed) {
      setImmediate(() => cb(new Error('delayed-message store is closed')));
      return;
    }
    this.commit.register(cb);
  }

  routedDurable(cb: SyncCallback): void {
    this.routed(cb);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const s of this.schedules.values()) s.finalWatermark();
    this.closed = true;
    await this.commit.drain();
    for (const s of this.schedules.values()) for (const f of s.files()) f.close();
    for (const f of this.toClose) f.close();
    this.toClose = [];
    for (const s of this.schedules.values()) s.dropped = true;
    closeSync(this.dirFd);
    if (!this.durable) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- for schedules -------------------------------------------------------------------

  /** Registers an append for the next write round. */
  appended(file: AppendFile): void {
    this.commit.touch(file);
    this.commit.appended++;
    this.commit.scheduleTurn();
  }

  directoryChanged(): void {
    this.commit.directoryChanged();
    this.commit.scheduleTurn();
  }

  /** Closed between write rounds, when no write can be using the descriptor. */
  closeLater(f: AppendFile): void {
    this.toClose.push(f);
    this.commit.scheduleTurn();
  }

  forget(s: DelaySchedule): void {
    if (this.schedules.get(s.key) === s) this.schedules.delete(s.key);
  }

  private betweenWrites(): void {
    if (this.toClose.length === 0) return;
    const files = this.toClose;
    this.toClose = [];
    for (const f of files) this.commit.closeWhenIdle(f);
  }

  /**
   * Reads every log: watermarks first, then segments in order (torn tails cut), rebuilding
   * the bucket index of the messages the watermark does not cover.
   */
  private recover(): void {
    const names = readdirSync(this.dir);
    for (const name of names) {
      if (name.endsWith('.wm.tmp') || name.endsWith('.idx')) rmSync(join(this.dir, name), { force: true });
    }
    for (const name of names) {
      if (!name.endsWith('.wm')) continue;
      const got = readWatermarkFile(join(this.dir, name));
      if (got === null) continue;
      const s = this.schedule(got.key);
      s.recoveredWatermark(got.due, got.seq);
      // Rewritten to one record so the file starts small again.
      writeWatermarkFile(this.dir, join(this.dir, name), got.key, got.due, got.seq, true);
    }
    const logs = names
      .filter((n) => n.endsWith('.log'))
      .map((n) => ({ name: n, no: Number(n.slice(n.lastIndexOf('-') + 1, -4)) }))
      .sort((a, b) => a.no - b.no);
    for (const { name } of logs) {
      const path = join(this.dir, name);
      scanSegment(path, this.logger, (key, no, end) => {
        const s = this.schedule(key);
        s.recovering = true;
        const seg = s.recoveredSegment(no, path, end);
        return (due, seq, offset, length) => s.recoveredRecord(seg, due, seq, offset, length);
      });
    }
    for (const s of this.schedules.values()) s.recoveryDone();
    fsyncSync(this.dirFd);
  }
}
