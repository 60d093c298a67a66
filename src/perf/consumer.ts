// One consumer: a connection with one channel consuming one queue. Deliveries are parsed in
// place in the socket's chunks (basic.deliver → delivery tag; content header → body size; body →
// the stamp in its first 8 bytes), latencies go into a shared log-linear histogram, and acks
// (multiple=true every N with -A N) are coalesced into one write per socket chunk.

import type { FastPath, PerfConnection } from './connection';
import { HIST_BUCKETS, bucketOf } from './histogram';
import { S_DONE, S_RECEIVED, nowNs } from './shared';
import { ACK_BITS_OFFSET, ACK_TAG_OFFSET, M, ackTemplate } from './wire';

const TWO32 = 4294967296;
/** Stamps further than this from now are not ours (or the clocks differ): no latency sample. */
const MAX_LATENCY_NS = 3600e9;

export interface ConsumerConfig {
  id: number;
  autoack: boolean;
  multiAck: number;
  /** Messages to consume; 0 = unlimited. */
  limit: number;
  /** msg/s; 0 = unlimited. */
  rate: number;
  /** The message size the producers use: only bodies of >= 16 bytes carry a stamp. */
  stats: Float64Array;
  base: number;
  /** Shared histogram: HIST_BUCKETS counts then the sum of latencies in ns. */
  hist: Float64Array;
}

export class Consumer implements FastPath {
  private received = 0;
  private unacked = 0;
  private tag = 0;
  private bodySize = 0;
  private bodyDone = 0;
  private inBody = false;
  /** Receive time of the current chunk, read once per chunk (0 = not read yet). */
  private rxNow = 0;
  private ackOut: Buffer = Buffer.allocUnsafe(16 * 1024);
  private ackLen = 0;
  private readonly ackTpl: Buffer;
  private readonly multiple: boolean;
  private finished = false;
  private cstart = 0;
  private readonly intervalNs: number;
  private resumeTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly conn: PerfConnection,
    private readonly cfg: ConsumerConfig,
  ) {
    this.ackTpl = ackTemplate(1);
    this.multiple = cfg.multiAck > 1;
    this.ackTpl[ACK_BITS_OFFSET] = this.multiple ? 1 : 0;
    this.intervalNs = cfg.rate > 0 ? 1e9 / cfg.rate : 0;
    conn.fast = this;
  }

  start(): void {
    this.cstart = nowNs();
    this.conn.socket.resume();
  }

  method(id: number, buf: Buffer, start: number): boolean {
    if (id !== M.basicDeliver) return false;
    // consumer-tag (shortstr), delivery-tag (longlong), ...
    const off = start + 5 + buf[start + 4]!;
    this.tag = buf.readUInt32BE(off) * TWO32 + buf.readUInt32BE(off + 4);
    return true;
  }

  header(buf: Buffer, start: number): void {
    // class (2), weight (2), body size (8)
    this.bodySize = buf.readUInt32BE(start + 4) * TWO32 + buf.readUInt32BE(start + 8);
    this.bodyDone = 0;
    this.inBody = true;
    if (this.bodySize === 0) this.complete();
  }

  body(buf: Buffer, start: number, len: number): void {
    if (!this.inBody) return;
    if (this.bodyDone === 0 && len >= 8 && this.bodySize >= 16) {
      const ts = buf.readUInt32LE(start) + buf.readUInt32LE(start + 4) * TWO32;
      let now = this.rxNow;
      if (now === 0) now = this.rxNow = nowNs();
      const lat = now - ts;
      if (ts > 0 && lat >= 0 && lat < MAX_LATENCY_NS) {
        const h = this.cfg.hist;
        h[bucketOf(lat)]!++;
        h[HIST_BUCKETS]! += lat;
      }
    }
    this.bodyDone += len;
    if (this.bodyDone >= this.bodySize) this.complete();
  }

  private complete(): void {
    this.inBody = false;
    if (this.finished) return;
    const n = ++this.received;
    if (!this.cfg.autoack && ++this.unacked >= this.cfg.multiAck) {
      this.appendAck(this.tag);
      this.unacked = 0;
    }
    if (this.cfg.limit > 0 && n >= this.cfg.limit) {
      this.finish();
      return;
    }
    if (this.intervalNs > 0) {
      const due = this.cstart + n * this.intervalNs;
      const now = nowNs();
      if (due > now) {
        this.conn.pause();
        this.chunkDone(); // send the acks so far while we wait
        this.resumeTimer = setTimeout(this.resume, Math.max(1, Math.round((due - now) / 1e6)));
      }
    }
  }

  private readonly resume = (): void => {
    this.resumeTimer = null;
    this.rxNow = 0;
    this.conn.resume();
  };

  private appendAck(tag: number): void {
    if (this.ackLen + 21 > this.ackOut.length) {
      const bigger = Buffer.allocUnsafe(this.ackOut.length * 2);
      this.ackOut.copy(bigger, 0, 0, this.ackLen);
      this.ackOut = bigger;
    }
    const tpl = this.ackTpl;
    tpl.writeUInt32BE(Math.floor(tag / TWO32), ACK_TAG_OFFSET);
    tpl.writeUInt32BE(tag >>> 0, ACK_TAG_OFFSET + 4);
    tpl.copy(this.ackOut, this.ackLen);
    this.ackLen += 21;
  }

  chunkDone(): void {
    this.rxNow = 0;
    this.cfg.stats[this.cfg.base + S_RECEIVED] = this.received;
    if (this.ackLen > 0) {
      this.conn.socket.write(Buffer.from(this.ackOut.subarray(0, this.ackLen)));
      this.ackLen = 0;
    }
  }

  /** -D reached: ack what is outstanding, report done, ignore further deliveries. */
  private finish(): void {
    if (this.finished) return;
    this.flushRemainingAck();
    this.finished = true;
    this.cfg.stats[this.cfg.base + S_RECEIVED] = this.received;
    this.cfg.stats[this.cfg.base + S_DONE] = 1;
  }

  private flushRemainingAck(): void {
    if (!this.cfg.autoack && this.unacked > 0 && this.tag > 0) {
      // One multiple=true ack covers everything delivered so far.
      const saved = this.ackTpl[ACK_BITS_OFFSET]!;
      this.ackTpl[ACK_BITS_OFFSET] = 1;
      this.appendAck(this.tag);
      this.ackTpl[ACK_BITS_OFFSET] = saved;
      this.unacked = 0;
    }
  }

  /** End of the run: ack the remainder (so the broker does not requeue it) and flush. */
  stop(): void {
    if (this.resumeTimer !== null) clearTimeout(this.resumeTimer);
    if (!this.finished) this.flushRemainingAck();
    this.finished = true;
    this.chunkDone();
  }
}
