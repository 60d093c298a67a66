import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_METHOD } from './frame-reader';

const BLOCK = 256 * 1024;
/** Body slices at least this big are handed to the socket as they are instead of copied. */
const ZERO_COPY_MIN = 16 * 1024;

/** Where encoded frames go; the transport flushes it with one corked write per I/O turn. */
export interface ByteSink {
  write(chunk: Buffer): boolean;
  cork(): void;
  uncork(): void;
}

/**
 * A connection's outgoing bytes. Frames are encoded straight into a large block; the part
 * written since the last flush goes to the socket as one chunk and the block keeps filling
 * after it, so steady traffic allocates nothing per message. Hot frames (deliver, get-ok,
 * confirms) have dedicated encoders here.
 */
export class FrameWriter {
  private block = Buffer.allocUnsafe(BLOCK);
  private start = 0;
  private pos = 0;
  private readonly queued: Buffer[] = [];
  /** Bytes encoded but not yet handed to the socket. */
  pendingBytes = 0;
  frameMax = 131072;

  /** Called when the first bytes of a turn arrive, so the owner can schedule one flush. */
  constructor(private readonly schedule: () => void) {}

  get hasPending(): boolean {
    return this.pendingBytes !== 0;
  }

  /** Hands everything queued to the sink; returns the sink's last write() verdict. */
  flushTo(sink: ByteSink): boolean {
    this.sealBlock();
    const chunks = this.queued;
    let ok = true;
    if (chunks.length === 1) {
      ok = sink.write(chunks[0]!);
    } else if (chunks.length > 1) {
      sink.cork();
      for (const c of chunks) ok = sink.write(c);
      sink.uncork();
    }
    chunks.length = 0;
    this.pendingBytes = 0;
    return ok;
  }

  /** Drop unsent bytes (the connection is gone). */
  discard(): void {
    this.queued.length = 0;
    this.start = this.pos;
    this.pendingBytes = 0;
  }

  raw(frame: Buffer): void {
    if (frame.length >= ZERO_COPY_MIN) {
      this.touch(0);
      this.sealBlock();
      this.queued.push(frame);
      this.pendingBytes += frame.length;
      return;
    }
    const at = this.reserve(frame.length);
    frame.copy(this.block, at);
  }

  heartbeat(): void {
    const b = this.block;
    const at = this.reserve(8);
    b[at] = 8;
    b.writeUInt16BE(0, at + 1);
    b.writeUInt32BE(0, at + 3);
    b[at + 7] = FRAME_END;
  }

  /** basic.deliver + content header + body frames for one message. */
  deliver(
    channel: number,
    consumerTag: Buffer,
    deliveryTag: number,
    redelivered: boolean,
    exchange: string,
    routingKey: string,
    properties: Buffer,
    body: Buffer,
  ): void {
    // 255 bytes is the shortstr limit, so the method can never exceed this bound.
    const at = this.reserve(7 + 4 + 1 + consumerTag.length + 8 + 1 + 2 * 256 + 1);
    const b = this.block;
    let p = at + 7;
    b.writeUInt32BE(0x003c003c, p); // class 60 basic, method 60 deliver
    p += 4;
    b[p++] = consumerTag.length;
    consumerTag.copy(b, p);
    p += consumerTag.length;
    p = writeLongLong(b, p, deliveryTag);
    b[p++] = redelivered ? 1 : 0;
    p = writeShortStr(b, p, exchange);
    p = writeShortStr(b, p, routingKey);
    this.closeFrame(at, FRAME_METHOD, channel, p);
    this.content(channel, properties, body);
  }

  /** basic.get-ok + content. */
  getOk(
    channel: number,
    deliveryTag: number,
    redelivered: boolean,
    exchange: string,
    routingKey: string,
    messageCount: number,
    properties: Buffer,
    body: Buffer,
  ): void {
    const at = this.reserve(7 + 4 + 8 + 1 + 2 * 256 + 4 + 1);
    const b = this.block;
    let p = at + 7;
    b.writeUInt32BE(0x003c0047, p); // basic.get-ok (60, 71)
    p += 4;
    p = writeLongLong(b, p, deliveryTag);
    b[p++] = redelivered ? 1 : 0;
    p = writeShortStr(b, p, exchange);
    p = writeShortStr(b, p, routingKey);
    b.writeUInt32BE(messageCount, p);
    p += 4;
    this.closeFrame(at, FRAME_METHOD, channel, p);
    this.content(channel, properties, body);
  }

  /** basic.return + content (mandatory publish that routed nowhere). */
  basicReturn(
    channel: number,
    replyCode: number,
    replyText: string,
    exchange: string,
    routingKey: string,
    properties: Buffer,
    body: Buffer,
  ): void {
    const at = this.reserve(7 + 4 + 2 + 3 * 256 + 1);
    const b = this.block;
    let p = at + 7;
    b.writeUInt32BE(0x003c0032, p); // basic.return (60, 50)
    p += 4;
    b.writeUInt16BE(replyCode, p);
    p += 2;
    p = writeShortStr(b, p, replyText);
    p = writeShortStr(b, p, exchange);
    p = writeShortStr(b, p, routingKey);
    this.closeFrame(at, FRAME_METHOD, channel, p);
    this.content(channel, properties, body);
  }

  /** basic.ack (60,80) or basic.nack (60,120) for publisher confirms. */
  confirm(channel: number, deliveryTag: number, multiple: boolean, ack: boolean): void {
    const at = this.reserve(7 + 4 + 8 + 1 + 1);
    const b = this.block;
    let p = at + 7;
    b.writeUInt32BE(ack ? 0x003c0050 : 0x003c0078, p);
    p += 4;
    p = writeLongLong(b, p, deliveryTag);
    b[p++] = multiple ? 1 : 0; // nack: multiple bit, requeue bit clear
    this.closeFrame(at, FRAME_METHOD, channel, p);
  }

  private content(channel: number, properties: Buffer, body: Buffer): void {
    const at = this.reserve(7 + 12 + properties.length + 1);
    const b = this.block;
    let p = at + 7;
    b.writeUInt32BE(0x003c0000, p); // class 60, weight 0
    p += 4;
    p = writeLongLong(b, p, body.length);
    properties.copy(b, p);
    p += properties.length;
    this.closeFrame(at, FRAME_HEADER, channel, p);

    const maxPayload = this.frameMax - 8;
    for (let off = 0; off < body.length; off += maxPayload) {
      const end = Math.min(off + maxPayload, body.length);
      const size = end - off;
      if (size >= ZERO_COPY_MIN) {
        const h = this.reserve(7);
        this.block[h] = FRAME_BODY;
        this.block.writeUInt16BE(channel, h + 1);
        this.block.writeUInt32BE(size, h + 3);
        this.sealBlock();
        this.queued.push(body.subarray(off, end));
        this.pendingBytes += size;
        const e = this.reserve(1);
        this.block[e] = FRAME_END;
      } else {
        const f = this.reserve(8 + size);
        const fb = this.block;
        fb[f] = FRAME_BODY;
        fb.writeUInt16BE(channel, f + 1);
        fb.writeUInt32BE(size, f + 3);
        body.copy(fb, f + 7, off, end);
        fb[f + 7 + size] = FRAME_END;
      }
    }
  }

  /** Writes the frame header for a frame whose payload ends at `payloadEnd`, and its end octet. */
  private closeFrame(at: number, type: number, channel: number, payloadEnd: number): void {
    const b = this.block;
    b[at] = type;
    b.writeUInt16BE(channel, at + 1);
    b.writeUInt32BE(payloadEnd - at - 7, at + 3);
    b[payloadEnd] = FRAME_END;
    // reserve() claimed an upper bound; give back what the frame did not use.
    const used = payloadEnd + 1;
    this.pendingBytes -= this.pos - used;
    this.pos = used;
  }

  /** Claims `n` bytes at the end of the block, starting a new block if they do not fit. */
  private reserve(n: number): number {
    if (this.pos + n > this.block.length) {
      this.sealBlock();
      this.block = Buffer.allocUnsafe(Math.max(BLOCK, n));
      this.start = 0;
      this.pos = 0;
    }
    const at = this.pos;
    this.touch(n);
    this.pos += n;
    return at;
  }

  private touch(n: number): void {
    if (this.pendingBytes === 0) this.schedule();
    this.pendingBytes += n;
  }

  /** Moves the bytes written since the last seal onto the outgoing list. */
  private sealBlock(): void {
    if (this.pos > this.start) {
      this.queued.push(this.block.subarray(this.start, this.pos));
      this.start = this.pos;
    }
  }
}

function writeShortStr(b: Buffer, p: number, s: string): number {
  const n = b.write(s, p + 1, 255, 'utf8');
  b[p] = n;
  return p + 1 + n;
}

function writeLongLong(b: Buffer, p: number, v: number): number {
  b.writeUInt32BE(Math.floor(v / 0x100000000), p);
  b.writeUInt32BE(v >>> 0, p + 4);
  return p + 8;
}
