import { AmqpError, erlangBinary } from './errors';

export const FRAME_METHOD = 1;
export const FRAME_HEADER = 2;
export const FRAME_BODY = 3;
export const FRAME_HEARTBEAT = 8;
export const FRAME_END = 0xce;
/** type(1) + channel(2) + size(4) */
export const FRAME_HEADER_SIZE = 7;

/** Receives each complete frame as a view into a buffer that is only valid during the call. */
export interface FrameSink {
  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void;
}

/**
 * Splits a byte stream into frames without copying: a frame that lies inside one socket
 * chunk is handed on as offsets into that chunk. Only a frame straddling chunks is copied,
 * into a buffer sized from its header, which was checked against frame_max first so a
 * hostile size never allocates.
 */
export class FrameReader {
  /** Negotiated limit; before tune-ok RabbitMQ allows frames up to the minimum frame size. */
  frameMax = 4096;
  private partial: Buffer | null = null;
  private partialLen = 0;
  private partialNeed = 0;
  private headerBuf = Buffer.allocUnsafe(FRAME_HEADER_SIZE);
  private headerLen = 0;
  /** Set by the sink to stop parsing (connection closing); remaining bytes are dropped. */
  stopped = false;

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    let pos = 0;
    const len = chunk.length;
    if (this.partial !== null || this.headerLen !== 0) {
      pos = this.continuePartial(chunk);
      if (pos < 0) return;
    }
    while (pos < len && !this.stopped) {
      if (len - pos < FRAME_HEADER_SIZE) {
        chunk.copy(this.headerBuf, 0, pos, len);
        this.headerLen = len - pos;
        return;
      }
      const size = chunk.readUInt32BE(pos + 3);
      this.checkSize(chunk[pos]!, size);
      const total = FRAME_HEADER_SIZE + size + 1;
      if (len - pos >= total) {
        this.deliver(chunk, pos, size);
        pos += total;
      } else {
        this.startPartial(total);
        chunk.copy(this.partial!, 0, pos, len);
        this.partialLen = len - pos;
        return;
      }
    }
  }

  /** Completes a buffered header or frame; returns where unbuffered parsing resumes, or -1. */
  private continuePartial(chunk: Buffer): number {
    let pos = 0;
    if (this.headerLen !== 0) {
      const take = Math.min(FRAME_HEADER_SIZE - this.headerLen, chunk.length);
      chunk.copy(this.headerBuf, this.headerLen, 0, take);
      this.headerLen += take;
      pos = take;
      if (this.headerLen < FRAME_HEADER_SIZE) return -1;
      const size = this.headerBuf.readUInt32BE(3);
      this.checkSize(this.headerBuf[0]!, size);
      this.startPartial(FRAME_HEADER_SIZE + size + 1);
      this.headerBuf.copy(this.partial!, 0, 0, FRAME_HEADER_SIZE);
      this.partialLen = FRAME_HEADER_SIZE;
      this.headerLen = 0;
    }
    const frame = this.partial!;
    const take = Math.min(this.partialNeed - this.partialLen, chunk.length - pos);
    chunk.copy(frame, this.partialLen, pos, pos + take);
    this.partialLen += take;
    pos += take;
    if (this.partialLen < this.partialNeed) return -1;
    this.partial = null;
    this.deliver(frame, 0, this.partialNeed - FRAME_HEADER_SIZE - 1);
    return pos;
  }

  private startPartial(total: number): void {
    this.partial = Buffer.allocUnsafe(total);
    this.partialNeed = total;
    this.partialLen = 0;
  }

  private checkSize(type: number, size: number): void {
    // frame_max counts the whole frame, header and end octet included (spec §4.2.3).
    if (size + FRAME_HEADER_SIZE + 1 > this.frameMax) {
      throw new AmqpError('FRAME_ERROR', `type ${type}, all octets = <<>>: {frame_too_large,${size},${this.frameMax - FRAME_HEADER_SIZE - 1}}`);
    }
  }

  private deliver(buf: Buffer, pos: number, size: number): void {
    const type = buf[pos]!;
    const end = pos + FRAME_HEADER_SIZE + size;
    if (buf[end] !== FRAME_END) {
      throw new AmqpError('FRAME_ERROR', `type ${type}, all octets = ${erlangBinary(buf.subarray(pos + FRAME_HEADER_SIZE, end))}: {invalid_frame_end_marker,${buf[end]}}`);
    }
    this.sink.onFrame(type, buf.readUInt16BE(pos + 1), buf, pos + FRAME_HEADER_SIZE, end);
  }
}
