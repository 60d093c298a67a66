// Basic-class content properties (content header frames). Flag bits run from bit 15
// (content-type) down to bit 2 (cluster-id). Like RabbitMQ's generated decode_properties, bits 1
// and 0 (0 being the continuation flag) are ignored, but the property list must then end exactly
// where the payload does, so a header that really uses a second flag word is refused.
//
// Brokers forward property bytes untouched; the readers at the bottom pull single properties
// out of the raw bytes without building a BasicProperties.

import { AmqpError } from './errors';
import { decodeTableWithin, tableByteLength, writeTable, FieldTable } from './field-table';

export interface BasicProperties {
  contentType?: string;
  contentEncoding?: string;
  headers?: FieldTable;
  deliveryMode?: number;
  priority?: number;
  correlationId?: string;
  replyTo?: string;
  expiration?: string;
  messageId?: string;
  /**
   * Seconds since the epoch (unsigned 64-bit on the wire): a number, or a bigint only when the
   * value exceeds Number.MAX_SAFE_INTEGER, so that re-encoding stays byte-exact.
   */
  timestamp?: number | bigint;
  type?: string;
  userId?: string;
  appId?: string;
  clusterId?: string;
}

/** Property flag bits, most significant first in wire order. */
export const PropertyFlag = {
  ContentType: 0x8000,
  ContentEncoding: 0x4000,
  Headers: 0x2000,
  DeliveryMode: 0x1000,
  Priority: 0x0800,
  CorrelationId: 0x0400,
  ReplyTo: 0x0200,
  Expiration: 0x0100,
  MessageId: 0x0080,
  Timestamp: 0x0040,
  Type: 0x0020,
  UserId: 0x0010,
  AppId: 0x0008,
  ClusterId: 0x0004,
} as const;

function malformed(why: string): never {
  throw new AmqpError('SYNTAX_ERROR', `cannot decode content properties: ${why}`);
}

// Read cursor for decodeProperties' helpers; saves returning {value, next} pairs.
let pos = 0;

function shortstr(buf: Buffer, end: number): string {
  if (pos >= end) malformed('truncated');
  const n = buf[pos]!;
  const a = pos + 1;
  if (end - a < n) malformed('truncated');
  pos = a + n;
  return n === 0 ? '' : buf.toString('utf8', a, a + n);
}

function octet(buf: Buffer, end: number): number {
  if (pos >= end) malformed('truncated');
  return buf[pos++]!;
}

/** `start` is the offset of the 16-bit property flags; `end` is the end of the header payload. */
export function decodeProperties(buf: Buffer, start: number, end: number): BasicProperties {
  if (end - start < 2) malformed('no property flags');
  const f = buf.readUInt16BE(start);
  pos = start + 2;
  const p: BasicProperties = {};
  if (f & PropertyFlag.ContentType) p.contentType = shortstr(buf, end);
  if (f & PropertyFlag.ContentEncoding) p.contentEncoding = shortstr(buf, end);
  if (f & PropertyFlag.Headers) {
    const r = decodeTableWithin(buf, pos, end);
    p.headers = r.table;
    pos = r.end;
  }
  if (f & PropertyFlag.DeliveryMode) p.deliveryMode = octet(buf, end);
  if (f & PropertyFlag.Priority) p.priority = octet(buf, end);
  if (f & PropertyFlag.CorrelationId) p.correlationId = shortstr(buf, end);
  if (f & PropertyFlag.ReplyTo) p.replyTo = shortstr(buf, end);
  if (f & PropertyFlag.Expiration) p.expiration = shortstr(buf, end);
  if (f & PropertyFlag.MessageId) p.messageId = shortstr(buf, end);
  if (f & PropertyFlag.Timestamp) {
    if (end - pos < 8) malformed('truncated');
    const hi = buf.readUInt32BE(pos);
    p.timestamp = hi < 0x200000 ? hi * 0x1_0000_0000 + buf.readUInt32BE(pos + 4) : buf.readBigUInt64BE(pos);
    pos += 8;
  }
  if (f & PropertyFlag.Type) p.type = shortstr(buf, end);
  if (f & PropertyFlag.UserId) p.userId = shortstr(buf, end);
  if (f & PropertyFlag.AppId) p.appId = shortstr(buf, end);
  if (f & PropertyFlag.ClusterId) p.clusterId = shortstr(buf, end);
  if (pos !== end) malformed('trailing bytes after the property list');
  return p;
}

// ---- encoding -----------------------------------------------------------------------------

function strLen(s: string, name: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > 255) throw new RangeError(`property ${name} is longer than 255 bytes`);
  return n;
}

function writeStr(buf: Buffer, q: number, s: string): number {
  const n = buf.write(s, q + 1, 'utf8');
  buf[q] = n;
  return q + 1 + n;
}

/** Flags and property list, ready to follow the 12-byte class/weight/body-size prefix. */
export function encodeProperties(p: BasicProperties): Buffer {
  let size = 2;
  if (p.contentType !== undefined) size += 1 + strLen(p.contentType, 'content-type');
  if (p.contentEncoding !== undefined) size += 1 + strLen(p.contentEncoding, 'content-encoding');
  if (p.headers !== undefined) size += tableByteLength(p.headers);
  if (p.deliveryMode !== undefined) size += 1;
  if (p.priority !== undefined) size += 1;
  if (p.correlationId !== undefined) size += 1 + strLen(p.correlationId, 'correlation-id');
  if (p.replyTo !== undefined) size += 1 + strLen(p.replyTo, 'reply-to');
  if (p.expiration !== undefined) size += 1 + strLen(p.expiration, 'expiration');
  if (p.messageId !== undefined) size += 1 + strLen(p.messageId, 'message-id');
  if (p.timestamp !== undefined) size += 8;
  if (p.type !== undefined) size += 1 + strLen(p.type, 'type');
  if (p.userId !== undefined) size += 1 + strLen(p.userId, 'user-id');
  if (p.appId !== undefined) size += 1 + strLen(p.appId, 'app-id');
  if (p.clusterId !== undefined) size += 1 + strLen(p.clusterId, 'cluster-id');

  const buf = Buffer.allocUnsafe(size);
  let flags = 0;
  let q = 2;
  if (p.contentType !== undefined) { flags |= PropertyFlag.ContentType; q = writeStr(buf, q, p.contentType); }
  if (p.contentEncoding !== undefined) { flags |= PropertyFlag.ContentEncoding; q = writeStr(buf, q, p.contentEncoding); }
  if (p.headers !== undefined) { flags |= PropertyFlag.Headers; q = writeTable(buf, q, p.headers); }
  if (p.deliveryMode !== undefined) { flags |= PropertyFlag.DeliveryMode; q = buf.writeUInt8(p.deliveryMode, q); }
  if (p.priority !== undefined) { flags |= PropertyFlag.Priority; q = buf.writeUInt8(p.priority, q); }
  if (p.correlationId !== undefined) { flags |= PropertyFlag.CorrelationId; q = writeStr(buf, q, p.correlationId); }
  if (p.replyTo !== undefined) { flags |= PropertyFlag.ReplyTo; q = writeStr(buf, q, p.replyTo); }
  if (p.expiration !== undefined) { flags |= PropertyFlag.Expiration; q = writeStr(buf, q, p.expiration); }
  if (p.messageId !== undefined) { flags |= PropertyFlag.MessageId; q = writeStr(buf, q, p.messageId); }
  if (p.timestamp !== undefined) {
    flags |= PropertyFlag.Timestamp;
    const t = p.timestamp;
    if (typeof t === 'bigint') q = buf.writeBigUInt64BE(t, q);
    else {
      if (!(Number.isSafeInteger(t) && t >= 0)) throw new RangeError(`property timestamp out of range: ${t}`);
      buf.writeUInt32BE(Math.floor(t / 0x1_0000_0000), q);
      buf.writeUInt32BE(t >>> 0, q + 4);
      q += 8;
    }
  }
  if (p.type !== undefined) { flags |= PropertyFlag.Type; q = writeStr(buf, q, p.type); }
  if (p.userId !== undefined) { flags |= PropertyFlag.UserId; q = writeStr(buf, q, p.userId); }
  if (p.appId !== undefined) { flags |= PropertyFlag.AppId; q = writeStr(buf, q, p.appId); }
  if (p.clusterId !== undefined) { flags |= PropertyFlag.ClusterId; q = writeStr(buf, q, p.clusterId); }
  buf.writeUInt16BE(flags, 0);
  return buf;
}

/** A complete content header frame: type 2, channel, size, class, weight 0, body size, properties, frame-end. */
export function encodeContentHeaderFrame(channel: number, classId: number, bodySize: number, propsBytes: Buffer): Buffer {
  if (!(Number.isSafeInteger(bodySize) && bodySize >= 0)) throw new RangeError(`body size out of range: ${bodySize}`);
  const size = 12 + propsBytes.length;
  const buf = Buffer.allocUnsafe(7 + size + 1);
  buf[0] = 2;
  buf.writeUInt16BE(channel, 1);
  buf.writeUInt32BE(size, 3);
  buf.writeUInt16BE(classId, 7);
  buf.writeUInt16BE(0, 9);
  buf.writeUInt32BE(Math.floor(bodySize / 0x1_0000_0000), 11);
  buf.writeUInt32BE(bodySize >>> 0, 15);
  propsBytes.copy(buf, 19);
  buf[19 + propsBytes.length] = 0xce;
  return buf;
}

// ---- single-property readers for the hot path ---------------------------------------------

/**
 * Offset of the property with flag `flag`, or -1 when absent. Skips the properties before it
 * by their lengths only; throws on lengths running past `end`.
 */
function propertyOffset(buf: Buffer, start: number, end: number, flag: number): number {
  if (end - start < 2) malformed('no property flags');
  const flags = buf.readUInt16BE(start);
  if ((flags & flag) === 0) return -1;
  let p = start + 2;
  for (let bit = 0x8000; bit > flag; bit >>>= 1) {
    if ((flags & bit) === 0) continue;
    if (bit === PropertyFlag.Headers) {
      if (end - p < 4) malformed('truncated');
      p += 4 + buf.readUInt32BE(p);
    } else if (bit === PropertyFlag.DeliveryMode || bit === PropertyFlag.Priority) {
      p += 1;
    } else if (bit === PropertyFlag.Timestamp) {
      p += 8;
    } else {
      if (p >= end) malformed('truncated');
      p += 1 + buf[p]!;
    }
  }
  if (p >= end) malformed('truncated');
  return p;
}

/** delivery-mode, 0 when absent (2 means persistent). */
export function readDeliveryMode(buf: Buffer, start: number, end: number): number {
  const p = propertyOffset(buf, start, end, PropertyFlag.DeliveryMode);
  return p < 0 ? 0 : buf[p]!;
}

export function readPriority(buf: Buffer, start: number, end: number): number | undefined {
  const p = propertyOffset(buf, start, end, PropertyFlag.Priority);
  return p < 0 ? undefined : buf[p]!;
}

export function readExpiration(buf: Buffer, start: number, end: number): string | undefined {
  const p = propertyOffset(buf, start, end, PropertyFlag.Expiration);
  if (p < 0) return undefined;
  const n = buf[p]!;
  if (end - p - 1 < n) malformed('truncated');
  return buf.toString('utf8', p + 1, p + 1 + n);
}

export function readHeaders(buf: Buffer, start: number, end: number): FieldTable | undefined {
  const p = propertyOffset(buf, start, end, PropertyFlag.Headers);
  return p < 0 ? undefined : decodeTableWithin(buf, p, end).table;
}
