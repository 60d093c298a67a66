/**
 * Message rates from plain counters. The broker only increments counters it already keeps
 * (Queue.stats, Exchange.stats, Channel.stats); once a second a sampler snapshots them here,
 * and a rate is the change over the last few snapshots. Nothing is done per message.
 */

/** Snapshots kept per entity: RATE_WINDOW seconds of history gives a smooth per-second rate. */
const RATE_WINDOW = 6;

/** A short ring of counter snapshots for one entity (a queue, an exchange, a channel...). */
export class CounterSeries {
  private readonly times = new Float64Array(RATE_WINDOW);
  private readonly values: Float64Array;
  private head = 0;
  private count = 0;

  constructor(readonly width: number) {
    this.values = new Float64Array(RATE_WINDOW * width);
  }

  record(now: number, counters: ArrayLike<number>): void {
    const at = this.head;
    this.times[at] = now;
    for (let i = 0; i < this.width; i++) this.values[at * this.width + i] = counters[i]!;
    this.head = (at + 1) % RATE_WINDOW;
    if (this.count < RATE_WINDOW) this.count++;
  }

  /** Per-second rate of counter i over the snapshots held; 0 until there are two. */
  rate(i: number): number {
    if (this.count < 2) return 0;
    const last = (this.head - 1 + RATE_WINDOW) % RATE_WINDOW;
    const first = (this.head - this.count + RATE_WINDOW) % RATE_WINDOW;
    const dt = (this.times[last]! - this.times[first]!) / 1000;
    if (dt <= 0) return 0;
    const dv = this.values[last * this.width + i]! - this.values[first * this.width + i]!;
    return round(dv / dt);
  }

  /** The most recent snapshot of counter i (0 before the first). */
  latest(i: number): number {
    if (this.count === 0) return 0;
    const last = (this.head - 1 + RATE_WINDOW) % RATE_WINDOW;
    return this.values[last * this.width + i]!;
  }
}

/**
 * Counters of a family of short-lived entities (channels, queues) summed into broker-wide
 * totals that do not go down when an entity goes away: an entity missing from a sample has
 * its last seen values moved into `retired`.
 */
export class RetiringTotals<K extends object> {
  private seen = new Map<K, Float64Array>();
  private readonly retired: Float64Array;

  constructor(readonly width: number) {
    this.retired = new Float64Array(width);
  }

  /** One sample: remember each live entity's counters and retire the ones that vanished. */
  sample(live: Iterable<K>, read: (k: K, out: Float64Array) => void): void {
    const next = new Map<K, Float64Array>();
    for (const k of live) {
      const v = this.seen.get(k) ?? new Float64Array(this.width);
      read(k, v);
      next.set(k, v);
    }
    for (const [k, v] of this.seen) {
      if (!next.has(k)) for (let i = 0; i < this.width; i++) this.retired[i]! += v[i]!;
    }
    this.seen = next;
  }

  /** Retired totals plus the live entities' current counters. */
  totals(live: Iterable<K>, read: (k: K, out: Float64Array) => void): Float64Array {
    const out = Float64Array.from(this.retired);
    const v = new Float64Array(this.width);
    for (const k of live) {
      read(k, v);
      for (let i = 0; i < this.width; i++) out[i]! += v[i]!;
    }
    return out;
  }
}

/** A long history of a few broker-wide values, for charts (RabbitMQ's `samples`). */
export class History {
  private readonly times: Float64Array;
  private readonly values: Float64Array;
  private head = 0;
  private count = 0;

  constructor(
    readonly width: number,
    readonly capacity: number,
  ) {
    this.times = new Float64Array(capacity);
    this.values = new Float64Array(capacity * width);
  }

  record(now: number, values: ArrayLike<number>): void {
    this.times[this.head] = now;
    for (let i = 0; i < this.width; i++) this.values[this.head * this.width + i] = values[i]!;
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /**
   * Samples of value i newer than `ageSeconds`, one every `incrSeconds`, newest first, as
   * RabbitMQ returns them: [{ sample, timestamp }].
   */
  samples(i: number, ageSeconds: number, incrSeconds: number, now = Date.now()): Array<{ sample: number; timestamp: number }> {
    const out: Array<{ sample: number; timestamp: number }> = [];
    const oldest = now - ageSeconds * 1000;
    let nextAt = Number.POSITIVE_INFINITY;
    for (let k = 0; k < this.count; k++) {
      const at = (this.head - 1 - k + this.capacity * 2) % this.capacity;
      const t = this.times[at]!;
      if (t < oldest) break;
      if (t > nextAt) continue;
      out.push({ sample: this.values[at * this.width + i]!, timestamp: Math.round(t) });
      nextAt = t - incrSeconds * 1000 + 500;
    }
    return out;
  }
}

/** Rates are shown with one decimal, as RabbitMQ's management UI does. */
function round(n: number): number {
  return Math.round(n * 10) / 10;
}
