import { AmqpError } from '../protocol/errors';

/** Largest body RabbitMQ 3.x accepts by default (max_message_size). */
export const MAX_MESSAGE_SIZE = 128 * 1024 * 1024;

export interface PendingPublish {
  exchange: string;
  routingKey: string;
  mandatory: boolean;
}

/**
 * Collects one publish: the method, then exactly one content header, then body frames until
 * the declared size is reached (spec §4.2.6). The body is gathered into one buffer allocated
 * from the header's size, which was checked first, so no chunk list or concat is needed.
 */
export class ContentAssembler {
  publish: PendingPublish | null = null;
  properties: Buffer | null = null;
  body: Buffer | null = null;
  private received = 0;
  private expected = 0;

  get active(): boolean {
    return this.publish !== null;
  }

  start(p: PendingPublish): void {
    this.publish = p;
    this.properties = null;
    this.body = null;
  }

  /** Returns true when the message is complete (a zero-length body needs no body frame). */
  header(buf: Buffer, start: number, end: number): boolean {
    if (this.properties !== null) {
      throw new AmqpError('UNEXPECTED_FRAME', 'expected content body, got non content body frame instead', 60, 40);
    }
    if (end - start < 14) throw new AmqpError('FRAME_ERROR', 'content header frame too short');
    const classId = buf.readUInt16BE(start);
    if (classId !== 60) {
      throw new AmqpError('UNEXPECTED_FRAME', `expected content header for class 60, got one for class ${classId} instead`, 60, 40);
    }
    const high = buf.readUInt32BE(start + 4);
    const low = buf.readUInt32BE(start + 8);
    if (high !== 0 || low > MAX_MESSAGE_SIZE) {
      throw new AmqpError('PRECONDITION_FAILED', `message size ${high * 0x100000000 + low} is larger than configured max size ${MAX_MESSAGE_SIZE}`, 60, 40);
    }
    // Properties and body share one allocation: one buffer per message instead of two.
    const propsLen = end - start - 12;
    const slab = Buffer.allocUnsafe(propsLen + low);
    buf.copy(slab, 0, start + 12, end);
    this.properties = slab.subarray(0, propsLen);
    this.body = low === 0 ? EMPTY : slab.subarray(propsLen);
    this.expected = low;
    this.received = 0;
    return low === 0;
  }

  /** Returns true when the last body byte arrived. */
  bodyFrame(buf: Buffer, start: number, end: number): boolean {
    if (this.properties === null || this.body === null) {
      throw new AmqpError('UNEXPECTED_FRAME', 'expected content header for class 60, got non content header frame instead', 60, 40);
    }
    const n = end - start;
    if (this.received + n > this.expected) {
      throw new AmqpError('FRAME_ERROR', `content body is longer than the ${this.expected} bytes the header declared`);
    }
    buf.copy(this.body, this.received, start, end);
    this.received += n;
    return this.received === this.expected;
  }

  reset(): void {
    this.publish = null;
    this.properties = null;
    this.body = null;
  }
}

const EMPTY = Buffer.alloc(0);
