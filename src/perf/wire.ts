// The bits of the AMQP 0-9-1 wire format that warren-perf needs: frame constants, an encoder
// for the few methods it sends during setup (speed does not matter there), field tables, and
// the pre-encoded templates of the hot path (basic.publish + content header + body, basic.ack).
// Deliberately separate from src/protocol: the load generator must not share code, and so
// bugs, with the broker it measures.

export const FRAME_METHOD = 1;
export const FRAME_HEADER = 2;
export const FRAME_BODY = 3;
export const FRAME_HEARTBEAT = 8;
export const FRAME_END = 0xce;
export const FRAME_HEADER_SIZE = 7;

/** class << 16 | method, for switch statements. */
export const M = {
  connectionStart: (10 << 16) | 10,
  connectionStartOk: (10 << 16) | 11,
  connectionTune: (10 << 16) | 30,
  connectionTuneOk: (10 << 16) | 31,
  connectionOpen: (10 << 16) | 40,
  connectionOpenOk: (10 << 16) | 41,
  connectionClose: (10 << 16) | 50,
  connectionCloseOk: (10 << 16) | 51,
  connectionBlocked: (10 << 16) | 60,
  connectionUnblocked: (10 << 16) | 61,
  channelOpen: (20 << 16) | 10,
  channelOpenOk: (20 << 16) | 11,
  channelClose: (20 << 16) | 40,
  channelCloseOk: (20 << 16) | 41,
  exchangeDeclare: (40 << 16) | 10,
  exchangeDeclareOk: (40 << 16) | 11,
  exchangeDelete: (40 << 16) | 20,
  exchangeDeleteOk: (40 << 16) | 21,
  queueDeclare: (50 << 16) | 10,
  queueDeclareOk: (50 << 16) | 11,
  queueBind: (50 << 16) | 20,
  queueBindOk: (50 << 16) | 21,
  queueDelete: (50 << 16) | 40,
  queueDeleteOk: (50 << 16) | 41,
  basicQos: (60 << 16) | 10,
  basicQosOk: (60 << 16) | 11,
  basicConsume: (60 << 16) | 20,
  basicConsumeOk: (60 << 16) | 21,
  basicCancel: (60 << 16) | 30,
  basicCancelOk: (60 << 16) | 31,
  basicPublish: (60 << 16) | 40,
  basicReturn: (60 << 16) | 50,
  basicDeliver: (60 << 16) | 60,
  basicAck: (60 << 16) | 80,
  basicNack: (60 << 16) | 120,
  confirmSelect: (85 << 16) | 10,
  confirmSelectOk: (85 << 16) | 11,
} as const;

export type FieldValue = string | number | boolean | null | FieldTable;
export interface FieldTable {
  [key: string]: FieldValue;
}

/** Growable encoder for the arguments of one method frame. */
export class MethodEncoder {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;
  private bitByte = -1;
  private bitCount = 0;

  constructor(
    private readonly channel: number,
    id: number,
  ) {
    this.pos = FRAME_HEADER_SIZE;
    this.u16(id >>> 16);
    this.u16(id & 0xffff);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n + 64));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  private endBits(): void {
    this.bitByte = -1;
    this.bitCount = 0;
  }
  u8(v: number): this {
    this.endBits();
    this.ensure(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    this.endBits();
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
    return this;
  }
  u32(v: number): this {
    this.endBits();
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }
  u64(v: number): this {
    this.endBits();
    this.ensure(8);
    this.buf.writeUInt32BE(Math.floor(v / 4294967296) >>> 0, this.pos);
    this.buf.writeUInt32BE(v >>> 0, this.pos + 4);
    this.pos += 8;
    return this;
  }
  shortstr(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 255) throw new Error(`short string too long (${b.length} bytes): ${s.slice(0, 40)}...`);
    this.u8(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
  longstr(s: string | Buffer): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    this.u32(b.length);
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
  bit(v: boolean): this {
    if (this.bitByte < 0 || this.bitCount === 8) {
      this.endBits();
      this.ensure(1);
      this.bitByte = this.pos;
      this.buf[this.pos++] = 0;
    }
    if (v) this.buf[this.bitByte]! |= 1 << this.bitCount;
    this.bitCount++;
    return this;
  }
  table(t: FieldTable | undefined): this {
    const b = encodeTable(t ?? {});
    this.endBits();
    this.ensure(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
    return this;
  }
  /** The finished frame. */
  frame(): Buffer {
    this.ensure(1);
    this.buf[this.pos++] = FRAME_END;
    this.buf[0] = FRAME_METHOD;
    this.buf.writeUInt16BE(this.channel, 1);
    this.buf.writeUInt32BE(this.pos - FRAME_HEADER_SIZE - 1, 3);
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

export function encodeTable(t: FieldTable): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(t)) {
    const key = Buffer.from(k, 'utf8');
    parts.push(Buffer.from([key.length]), key, encodeValue(v));
  }
  const body = Buffer.concat(parts);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(body.length, 0);
  return Buffer.concat([len, body]);
}

function encodeValue(v: FieldValue): Buffer {
  if (v === null) return Buffer.from('V');
  if (typeof v === 'boolean') return Buffer.from([0x74, v ? 1 : 0]);
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= -2147483648 && v <= 2147483647) {
      const b = Buffer.allocUnsafe(5);
      b[0] = 0x49; // 'I'
      b.writeInt32BE(v, 1);
      return b;
    }
    if (Number.isInteger(v)) {
      const b = Buffer.allocUnsafe(9);
      b[0] = 0x6c; // 'l'
      b.writeBigInt64BE(BigInt(v), 1);
      return b;
    }
    const b = Buffer.allocUnsafe(9);
    b[0] = 0x64; // 'd'
    b.writeDoubleBE(v, 1);
    return b;
  }
  if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    const b = Buffer.allocUnsafe(5);
    b[0] = 0x53; // 'S'
    b.writeUInt32BE(s.length, 1);
    return Buffer.concat([b, s]);
  }
  return Buffer.concat([Buffer.from('F'), encodeTable(v)]);
}

/** Reads a field table at off; returns the table and the offset after it. */
export function decodeTable(buf: Buffer, off: number): [FieldTable, number] {
  const len = buf.readUInt32BE(off);
  let p = off + 4;
  const end = p + len;
  const out: FieldTable = {};
  while (p < end) {
    const klen = buf[p]!;
    const key = buf.toString('utf8', p + 1, p + 1 + klen);
    p += 1 + klen;
    const [v, next] = decodeValue(buf, p);
    out[key] = v;
    p = next;
  }
  return [out, end];
}

function decodeValue(buf: Buffer, p: number): [FieldValue, number] {
  const t = String.fromCharCode(buf[p]!);
  p++;
  switch (t) {
    case 't':
      return [buf[p] !== 0, p + 1];
    case 'b':
      return [buf.readInt8(p), p + 1];
    case 'B':
      return [buf[p]!, p + 1];
    case 's':
      return [buf.readInt16BE(p), p + 2];
    case 'u':
      return [buf.readUInt16BE(p), p + 2];
    case 'I':
      return [buf.readInt32BE(p), p + 4];
    case 'i':
      return [buf.readUInt32BE(p), p + 4];
    case 'l':
    case 'T':
      return [Number(buf.readBigInt64BE(p)), p + 8];
    case 'f':
      return [buf.readFloatBE(p), p + 4];
    case 'd':
      return [buf.readDoubleBE(p), p + 8];
    case 'D':
      return [buf.readUInt32BE(p + 1) / 10 ** buf[p]!, p + 5];
    case 'S':
    case 'x': {
      const n = buf.readUInt32BE(p);
      return [buf.toString('utf8', p + 4, p + 4 + n), p + 4 + n];
    }
    case 'F':
      return decodeTable(buf, p);
    case 'A': {
      const n = buf.readUInt32BE(p);
      return [null, p + 4 + n];
    }
    case 'V':
      return [null, p];
    default:
      throw new Error(`unknown field type '${t}'`);
  }
}

/** A short string at off: [value, offset after it]. */
export function readShortstr(buf: Buffer, off: number): [string, number] {
  const n = buf[off]!;
  return [buf.toString('utf8', off + 1, off + 1 + n), off + 1 + n];
}

/** An unsigned 64-bit integer as a number (exact below 2^53). */
export function readU64(buf: Buffer, off: number): number {
  return buf.readUInt32BE(off) * 4294967296 + buf.readUInt32BE(off + 4);
}

// ---------------------------------------------------------------------------------------------
// Hot-path templates

/** Bytes 0-8 of each body: send time (CLOCK_MONOTONIC ns, little endian, as amqpperf writes it);
 * bytes 8-16: sequence number (low 32 bits) and producer id << 8 | sequence bits 32-39. */
export const STAMP_BYTES = 16;

export interface PublishTemplate {
  /** method + content header + body frames of one message. */
  bytes: Buffer;
  /** Offset of the body's first byte in bytes (where the stamp goes), or -1 if size < 16. */
  stampOffset: number;
}

/**
 * Encodes one complete message: basic.publish(exchange, routingKey) on the channel, a content
 * header carrying only delivery-mode, and the body split into frames of at most frameMax.
 */
export function publishTemplate(opts: {
  channel: number;
  exchange: string;
  routingKey: string;
  mandatory?: boolean;
  size: number;
  persistent: boolean;
  frameMax: number;
}): PublishTemplate {
  const method = new MethodEncoder(opts.channel, M.basicPublish)
    .u16(0)
    .shortstr(opts.exchange)
    .shortstr(opts.routingKey)
    .bit(opts.mandatory ?? false)
    .bit(false)
    .frame();
  const header = Buffer.alloc(FRAME_HEADER_SIZE + 15 + 1);
  header[0] = FRAME_HEADER;
  header.writeUInt16BE(opts.channel, 1);
  header.writeUInt32BE(15, 3);
  header.writeUInt16BE(60, 7); // class basic
  header.writeUInt16BE(0, 9); // weight
  header.writeUInt32BE(Math.floor(opts.size / 4294967296), 11);
  header.writeUInt32BE(opts.size >>> 0, 15);
  header.writeUInt16BE(0x1000, 19); // property flags: delivery-mode only
  header[21] = opts.persistent ? 2 : 1;
  header[22] = FRAME_END;
  const chunk = Math.max(1, opts.frameMax - 8);
  const nBody = Math.ceil(opts.size / chunk);
  const total = method.length + header.length + nBody * 8 + opts.size;
  const bytes = Buffer.alloc(total);
  let p = method.copy(bytes, 0);
  p += header.copy(bytes, p);
  const bodyStart = p + FRAME_HEADER_SIZE;
  for (let off = 0; off < opts.size; off += chunk) {
    const n = Math.min(chunk, opts.size - off);
    bytes[p] = FRAME_BODY;
    bytes.writeUInt16BE(opts.channel, p + 1);
    bytes.writeUInt32BE(n, p + 3);
    p += FRAME_HEADER_SIZE;
    for (let i = 0; i < n; i++) bytes[p + i] = 97 + ((off + i) % 26);
    p += n;
    bytes[p++] = FRAME_END;
  }
  return { bytes, stampOffset: opts.size >= STAMP_BYTES ? bodyStart : -1 };
}

/** basic.ack(deliveryTag, multiple) on a channel: 21 bytes, patched in place before each use. */
export function ackTemplate(channel: number): Buffer {
  return new MethodEncoder(channel, M.basicAck).u64(0).bit(false).frame();
}
/** Offset of the delivery tag inside ackTemplate()'s frame, and of the multiple bit. */
export const ACK_TAG_OFFSET = 11;
export const ACK_BITS_OFFSET = 19;
