// One producer: a connection with one channel that publishes pre-encoded messages in batches.
//
// Each message is a copy of a template (basic.publish + content header + body frames, encoded
// once); only the 16-byte stamp at the start of the body is patched per message. Messages are
// laid into a small pool of batch buffers (~32 KB each) and every full buffer goes to the socket
// in one write; a buffer returns to the pool when its write completes, which also bounds what is
// queued in user space. Nothing is allocated per message. Confirms are tracked in a ring of
// flags indexed by delivery tag (the broker may ack out of order, with or without multiple).

import type { FastPath, PerfConnection } from './connection';
import { S_CONFIRMED, S_DONE, S_NACKED, S_SENT, nowNs } from './shared';
import { M, type PublishTemplate } from './wire';

const TWO32 = 4294967296;
/** Batches written per event-loop turn before yielding so that confirms get read. */
const BATCHES_PER_TURN = 4;

interface PoolBuffer {
  buf: Buffer;
  onWritten: () => void;
}

export interface ProducerConfig {
  id: number;
  templates: PublishTemplate[];
  confirm: number;
  /** msg/s; 0 = as fast as possible. */
  rate: number;
  /** Messages to send; 0 = unlimited. */
  limit: number;
  batchBytes: number;
  stats: Float64Array;
  base: number;
}

export class Producer implements FastPath {
  private readonly templates: PublishTemplate[];
  private readonly single: boolean;
  private readonly stride: number;
  private readonly cap: number;
  private readonly pool: PoolBuffer[] = [];
  private readonly poolSize: number;
  private tplIdx = 0;
  private seq = 0;
  private nextTag = 1;
  private lowest = 1;
  private readonly ring: Uint8Array;
  private readonly mask: number;
  private confirmed = 0;
  private nacked = 0;
  private pumpScheduled = false;
  private running = false;
  private finished = false;
  /** Rate-limited: first scheduled send time and spacing, in ns. */
  private sched0 = 0;
  private readonly intervalNs: number;
  private readonly idHi: number;
  /** Set by the worker's rate scheduler to be woken when the window or pool frees up. */
  wake: (() => void) | null = null;
  private blocked = false;

  constructor(
    readonly conn: PerfConnection,
    private readonly cfg: ProducerConfig,
  ) {
    this.templates = cfg.templates;
    this.single = cfg.templates.length === 1;
    let maxLen = 0;
    for (const t of cfg.templates) maxLen = Math.max(maxLen, t.bytes.length);
    this.stride = maxLen;
    this.cap = Math.max(cfg.batchBytes, maxLen);
    // Bound what sits in user space to ~512 KB (but at least 4 buffers, e.g. 4 x 1 MB messages).
    this.poolSize = Math.max(4, Math.min(16, Math.ceil((512 * 1024) / this.cap)));
    for (let i = 0; i < this.poolSize; i++) {
      const buf = Buffer.alloc(this.cap);
      if (this.single) {
        // Pre-fill with copies of the one template: per message only the stamp is written.
        const t = cfg.templates[0]!.bytes;
        for (let off = 0; off + t.length <= this.cap; off += t.length) t.copy(buf, off);
      }
      const pb: PoolBuffer = { buf, onWritten: () => this.release(pb) };
      this.pool.push(pb);
    }
    let r = 1;
    while (r < cfg.confirm + 2) r *= 2;
    this.ring = new Uint8Array(cfg.confirm > 0 ? r : 1);
    this.mask = r - 1;
    this.intervalNs = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
    this.idHi = (cfg.id & 0xffffff) << 8;
    conn.fast = this;
  }

  get rateLimited(): boolean {
    return this.intervalNs > 0;
  }

  /** Start publishing; rate-limited producers are driven by the worker's scheduler instead. */
  start(t0: number, producers: number): void {
    this.running = true;
    if (this.intervalNs > 0) {
      // Stagger producers across one interval so that they do not all fire at once.
      this.sched0 = t0 + (this.intervalNs * this.cfg.id) / Math.max(1, producers);
    } else {
      this.schedulePump();
    }
  }

  stop(): void {
    this.running = false;
  }

  // ---- unthrottled publishing ------------------------------------------------------------------

  private schedulePump(): void {
    if (this.pumpScheduled || !this.running) return;
    this.pumpScheduled = true;
    setImmediate(this.pump);
  }

  private readonly pump = (): void => {
    this.pumpScheduled = false;
    for (let b = 0; b < BATCHES_PER_TURN; b++) {
      const n = this.room(this.cap / this.stride);
      if (n <= 0) return; // woken by a confirm, a completed write, or never (limit reached)
      this.fill(n, nowNs(), 0);
    }
    this.schedulePump();
  };

  /** How many messages may go out now (window, limit, a free buffer), at most max. */
  private room(max: number): number {
    if (!this.running || this.conn.error !== null) return 0;
    if (this.pool.length === 0) return 0;
    let n = Math.floor(max);
    if (this.cfg.confirm > 0) {
      const window = this.cfg.confirm - (this.nextTag - this.lowest);
      if (window < n) n = window;
    }
    if (this.cfg.limit > 0) {
      const left = this.cfg.limit - this.seq;
      if (left < n) n = left;
      if (left <= 0) this.checkFinished();
    }
    return n;
  }

  /**
   * Lays n messages into a pool buffer and writes it. Stamps are `stamp` plus k * step for the
   * k-th message (step 0: one send time for the whole batch, which is when it is written).
   */
  private fill(n: number, stamp: number, step: number): void {
    const pb = this.pool.pop()!;
    const buf = pb.buf;
    const templates = this.templates;
    const nt = templates.length;
    let pos = 0;
    let seq = this.seq;
    const idHi = this.idHi;
    for (let k = 0; k < n; k++) {
      const t = templates[this.tplIdx]!;
      const len = t.bytes.length;
      if (pos + len > this.cap) break;
      if (!this.single) {
        buf.set(t.bytes, pos);
        if (++this.tplIdx === nt) this.tplIdx = 0;
      }
      const so = t.stampOffset;
      if (so >= 0) {
        const o = pos + so;
        const ts = stamp + k * step;
        buf.writeUInt32LE(ts >>> 0, o);
        buf.writeUInt32LE(Math.floor(ts / TWO32), o + 4);
        buf.writeUInt32LE(seq >>> 0, o + 8);
        buf.writeUInt32LE((idHi | (Math.floor(seq / TWO32) & 0xff)) >>> 0, o + 12);
      }
      pos += len;
      seq++;
    }
    const sent = seq - this.seq;
    this.seq = seq;
    this.nextTag += sent;
    this.cfg.stats[this.cfg.base + S_SENT] = seq;
    this.conn.socket.write(pos === this.cap ? buf : buf.subarray(0, pos), pb.onWritten);
  }

  private release(pb: PoolBuffer): void {
    this.pool.push(pb);
    if (this.intervalNs > 0) this.unblock();
    else this.schedulePump();
  }

  // ---- rate-limited publishing (called by the worker's scheduler) ------------------------------

  /**
   * Sends every message whose scheduled time has come (stamped with its scheduled time, so a
   * producer that falls behind shows it as latency) and returns the next due time in ns, or
   * Infinity when it has nothing more to send. now: the current time.
   */
  sendDue(now: number): number {
    if (!this.running || this.finished) return Infinity;
    for (let guard = 0; guard < 64; guard++) {
      const due = this.sched0 + this.seq * this.intervalNs;
      if (due > now) return due;
      const behind = Math.floor((now - due) / this.intervalNs) + 1;
      const n = this.room(Math.min(behind, this.cap / this.stride));
      if (n <= 0) {
        if (this.cfg.limit > 0 && this.seq >= this.cfg.limit) return Infinity;
        this.blocked = true;
        return now + 1e6; // window or buffers full: look again in a millisecond (or when woken)
      }
      this.fill(n, due, this.intervalNs);
    }
    return now;
  }

  // ---- confirms ----------------------------------------------------------------------------------

  method(id: number, buf: Buffer, start: number): boolean {
    if (id !== M.basicAck && id !== M.basicNack) return false;
    const tag = buf.readUInt32BE(start + 4) * TWO32 + buf.readUInt32BE(start + 8);
    const multiple = (buf[start + 12]! & 1) !== 0;
    this.markConfirmed(tag, multiple, id === M.basicNack);
    return true;
  }

  private markConfirmed(tag: number, multiple: boolean, nack: boolean): void {
    if (this.cfg.confirm === 0) return;
    let from = multiple ? this.lowest : tag;
    if (from < this.lowest) from = this.lowest;
    const to = tag < this.nextTag ? tag : this.nextTag - 1;
    const ring = this.ring;
    const mask = this.mask;
    let n = 0;
    for (let t = from; t <= to; t++) {
      const i = t & mask;
      if (ring[i] === 0) {
        ring[i] = 1;
        n++;
      }
    }
    let low = this.lowest;
    while (low < this.nextTag && ring[low & mask] === 1) {
      ring[low & mask] = 0;
      low++;
    }
    this.lowest = low;
    this.confirmed += n;
    const s = this.cfg.stats;
    s[this.cfg.base + S_CONFIRMED] = this.confirmed;
    if (nack) {
      this.nacked += n;
      s[this.cfg.base + S_NACKED] = this.nacked;
    }
    if (this.cfg.limit > 0 && this.seq >= this.cfg.limit) this.checkFinished();
    else if (this.intervalNs > 0) this.unblock();
    else this.schedulePump();
  }

  private unblock(): void {
    if (!this.blocked) return;
    this.blocked = false;
    this.wake?.();
  }

  /** With -C: done when everything is sent (and, with confirms, confirmed). */
  private checkFinished(): void {
    if (this.finished || this.seq < this.cfg.limit) return;
    if (this.cfg.confirm > 0 && this.lowest < this.nextTag) return;
    this.finished = true;
    this.cfg.stats[this.cfg.base + S_DONE] = 1;
  }

  header(): void {}
  body(): void {}
  chunkDone(): void {}
}
