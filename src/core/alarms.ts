import { statfsSync } from 'node:fs';
import { totalmem } from 'node:os';

export type AlarmKind = 'memory' | 'disk';

/** RabbitMQ's vm_memory_high_watermark_paging_ratio. */
const PAGING_RATIO = 0.5;

export interface AlarmOptions {
  /** Absolute bytes, or a fraction of total RAM when <= 1 (RabbitMQ's vm_memory_high_watermark). */
  memoryHighWatermark: number;
  /** Bytes of free disk below which publishers are blocked (disk_free_limit); 0 disables. */
  diskFreeLimit: number;
  /** Directory whose file system is watched; null when running in memory. */
  dataDir: string | null;
  intervalMs?: number;
}

/**
 * RabbitMQ's resource alarms: when memory use passes the watermark or free disk falls under
 * the limit, publishing connections are blocked (connection.blocked, socket not read) until it
 * clears. Sampled on one timer, never on the message path.
 */
export class ResourceAlarms {
  private readonly active = new Set<AlarmKind>();
  private timer: NodeJS.Timeout | null = null;
  memoryLimit: number;
  /** Called with the new state whenever any alarm is raised or cleared. */
  onChange: (blocked: boolean) => void = () => {};

  constructor(private readonly options: AlarmOptions) {
    const w = options.memoryHighWatermark;
    this.memoryLimit = w <= 1 ? Math.floor(totalmem() * w) : w;
  }

  get blocked(): boolean {
    return this.active.size !== 0;
  }

  get alarms(): AlarmKind[] {
    return [...this.active];
  }

  start(): void {
    this.check();
    this.timer = setInterval(() => this.check(), this.options.intervalMs ?? 250);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Free bytes on the data directory's file system, or Infinity in memory. */
  diskFree(): number {
    if (this.options.dataDir === null) return Infinity;
    try {
      const s = statfsSync(this.options.dataDir);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      return Infinity;
    }
  }

  /** Past RabbitMQ's paging ratio (half the watermark): long queues page transient messages out. */
  paging = false;

  check(): void {
    const before = this.blocked;
    const rss = process.memoryUsage.rss();
    this.paging = rss > this.memoryLimit * PAGING_RATIO;
    this.set('memory', rss > this.memoryLimit);
    this.set('disk', this.options.diskFreeLimit > 0 && this.diskFree() < this.options.diskFreeLimit);
    if (before !== this.blocked) this.onChange(this.blocked);
  }

  private set(kind: AlarmKind, on: boolean): void {
    if (on) this.active.add(kind);
    else this.active.delete(kind);
  }
}
