// CPU time and resident memory of another process (the broker under test), from /proc.
// Linux only; elsewhere the readers return -1 and the sampler reports nothing.

import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux

/** user + system CPU seconds of pid, or -1. */
export function readCpuSeconds(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // after "pid (comm) " the fields start at #3 (state); utime is #14, stime #15
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const ut = Number(rest[11]);
    const st = Number(rest[12]);
    if (!Number.isFinite(ut) || !Number.isFinite(st)) return -1;
    return (ut + st) / CLK_TCK;
  } catch {
    return -1;
  }
}

/** VmRSS of pid in KB, or -1. */
export function readRssKb(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(s);
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

export interface ProcessUsage {
  pid: number;
  cpu_s: number;
  rss_start_kb: number;
  rss_max_kb: number;
  rss_end_kb: number;
}

/** Samples a process's RSS every intervalMs and its CPU time at start and stop. */
export class ProcessSampler {
  private cpu0 = -1;
  private rss0 = -1;
  private rssMax = -1;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 50,
  ) {}

  start(): void {
    this.cpu0 = readCpuSeconds(this.pid);
    this.rss0 = readRssKb(this.pid);
    this.rssMax = this.rss0;
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  sample(): void {
    const r = readRssKb(this.pid);
    if (r > this.rssMax) this.rssMax = r;
  }

  /** Peak RSS so far (KB). */
  get peakKb(): number {
    return this.rssMax;
  }

  stop(): ProcessUsage {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    const cpu1 = readCpuSeconds(this.pid);
    return {
      pid: this.pid,
      cpu_s: this.cpu0 >= 0 && cpu1 >= 0 ? cpu1 - this.cpu0 : -1,
      rss_start_kb: this.rss0,
      rss_max_kb: this.rssMax,
      rss_end_kb: readRssKb(this.pid),
    };
  }
}
