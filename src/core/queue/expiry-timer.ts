import { EntryState, QueueEntry } from './entry';
import { ExpiryHeap } from './expiry-heap';

/** setTimeout's range is 2^31-1 ms; a later expiry is re-armed when this one fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A queue's message TTLs with one timer: entries wait in an expiry heap, the timer is armed
 * for the earliest, and when it fires every ready entry due by then is handed to `expire`.
 */
export class ExpiryTimer {
  private readonly heap = new ExpiryHeap();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;

  constructor(
    /** Called for each ready entry whose time has come (delivered ones are skipped). */
    private readonly expire: (e: QueueEntry) => void,
    /** False once the queue is gone: nothing is re-armed. */
    private readonly live: () => boolean,
  ) {}

  track(e: QueueEntry): void {
    this.heap.push(e);
    if (this.timer === null || e.expiresAt < this.timerAt) this.arm(e.expiresAt);
  }

  /** Expire every ready entry due by `now`, then re-arm for the next. */
  expireDue(now: number): void {
    for (;;) {
      const top = this.heap.peek();
      if (top === undefined || top.expiresAt > now) break;
      this.heap.pop();
      if (top.state !== EntryState.Ready) continue; // delivered meanwhile; requeue re-tracks it
      this.expire(top);
    }
    const next = this.heap.peek();
    if (next !== undefined && this.live()) this.arm(next.expiresAt);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  clear(): void {
    this.stop();
    this.heap.clear();
  }

  private arm(at: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.expireDue(Date.now());
    }, Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now())));
    this.timer.unref();
  }
}
