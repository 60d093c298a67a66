import { Ring } from '../core/ring';
import type { FrameWriter } from '../protocol/frame-writer';

/**
 * Publisher confirms for one channel. Transient messages are confirmed as soon as they are
 * routed; persistent ones only after the group commit that covers them. Acks go out once per
 * I/O turn: one `multiple` ack for the contiguous confirmed prefix, and single acks for
 * transient messages confirmed while an older persistent one still waits for disk (so a
 * multiple ack never covers an unconfirmed message).
 */
export class ConfirmTracker {
  /** Last publish sequence number handed out (delivery tags of confirms start at 1). */
  private published = 0;
  /** Every seq up to here has been acked or nacked to the client. */
  private settledUpTo = 0;
  /** Persistent seqs waiting for fsync, oldest first (group commits complete in order). */
  private readonly awaitingSync = new Ring<number>(16);
  /** Seqs waiting on another node (cluster forwards), oldest first; they complete in any order. */
  private readonly awaitingExternal = new Ring<number>(16);
  private readonly externalDone = new Set<number>();
  private readonly singles: number[] = [];
  private readonly nacks: number[] = [];

  constructor(
    private readonly channel: number,
    private readonly requestFlush: () => void,
  ) {}

  /** The next publish's sequence number. */
  next(): number {
    return ++this.published;
  }

  /** Routed; nothing to wait for. */
  confirmed(seq: number): void {
    if (this.awaitingSync.length !== 0 || this.awaitingExternal.length !== 0) this.singles.push(seq);
    this.requestFlush();
  }

  /** Refused by a queue (x-overflow reject-publish) or lost to an internal failure. */
  rejected(seq: number): void {
    this.nacks.push(seq);
    this.requestFlush();
  }

  /** Written to the store; call syncedOldest() once it is on disk. */
  awaitSync(seq: number): void {
    this.awaitingSync.push(seq);
  }

  /** Confirmed by another node later, in any order relative to other publishes. */
  awaitExternal(seq: number): void {
    this.awaitingExternal.push(seq);
  }

  external(seq: number, ok: boolean): void {
    this.externalDone.add(seq);
    if (ok) this.singles.push(seq);
    else this.nacks.push(seq);
    this.requestFlush();
  }

  /** The oldest seq still waiting on another node, or undefined. */
  private oldestExternal(): number | undefined {
    for (;;) {
      const seq = this.awaitingExternal.peek();
      if (seq === undefined || !this.externalDone.has(seq)) return seq;
      this.awaitingExternal.shift();
      this.externalDone.delete(seq);
    }
  }

  get waitingForSync(): number {
    return this.awaitingSync.length;
  }

  /** The oldest `count` persistent publishes are durable now (or failed, then nacked). */
  syncedOldest(count: number, ok: boolean): void {
    for (let i = 0; i < count; i++) {
      const seq = this.awaitingSync.shift();
      if (seq === undefined) break;
      if (!ok) this.nacks.push(seq);
    }
    this.requestFlush();
  }

  flush(w: FrameWriter): void {
    // Nacks first settle the acks before them, so a later multiple ack cannot cover a nack.
    const oldestSync = this.awaitingSync.peek() ?? this.published + 1;
    const oldestExternal = this.awaitingExternal.length === 0 ? undefined : this.oldestExternal();
    const oldestWaiting = oldestExternal === undefined ? oldestSync : Math.min(oldestSync, oldestExternal);
    if (this.nacks.length !== 0) {
      this.nacks.sort((a, b) => a - b);
      for (const seq of this.nacks) {
        if (seq > this.settledUpTo + 1 && seq - 1 < oldestWaiting) this.ackUpTo(w, Math.min(seq - 1, oldestWaiting - 1));
        w.confirm(this.channel, seq, false, false);
        if (seq === this.settledUpTo + 1) this.settledUpTo = seq;
      }
      this.nacks.length = 0;
    }
    if (oldestWaiting - 1 > this.settledUpTo) this.ackUpTo(w, oldestWaiting - 1);
    if (this.singles.length !== 0) {
      for (const seq of this.singles) if (seq > this.settledUpTo) w.confirm(this.channel, seq, false, true);
      this.singles.length = 0;
    }
  }

  private ackUpTo(w: FrameWriter, upTo: number): void {
    w.confirm(this.channel, upTo, upTo > this.settledUpTo + 1, true);
    this.settledUpTo = upTo;
  }
}
