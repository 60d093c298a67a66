const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * x-expires: a queue unused for the period (no consumers, no basic.get, no redeclare) deletes
 * itself. One timer per queue, armed only while the queue has no consumers.
 */
export class IdleExpiry {
  private timer: NodeJS.Timeout | null = null;
  private lastUsed = Date.now();

  /** `idle()` says whether the queue is still without consumers (and not deleted). */
  constructor(
    private readonly idle: () => boolean,
    private readonly expire: () => void,
  ) {}

  touch(): void {
    this.lastUsed = Date.now();
  }

  /** (Re)arms for the current period; undefined disarms. */
  arm(expires: number | undefined): void {
    this.stop();
    if (expires === undefined || !this.idle()) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.idle()) return;
      if (Date.now() - this.lastUsed >= expires) this.expire();
      else this.arm(expires);
    }, Math.min(MAX_TIMER_MS, Math.max(0, this.lastUsed + expires - Date.now())));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
