// Method frame codec. The catalogue lives in method-table.ts; this file compiles it into
// per-method field programs for a generic codec, plus hand-written decoders for the methods a
// broker receives in bulk (basic.publish, basic.ack, basic.nack, basic.reject).
//
// Errors, compared with RabbitMQ (rabbit_framing_amqp_0_9_1, rabbit_command_assembler):
//  - unknown class/method: RabbitMQ's lookup_method_name exits with {unknown_method_id, Id}, which
//    is not an amqp_error, so its reader process dies and the socket is dropped without a
//    connection.close. We raise COMMAND_INVALID (a hard error), the code RabbitMQ's channel uses
//    for a method it decodes but does not handle ("unimplemented method"), so the client at least
//    hears why.
//  - arguments that do not fill the payload exactly (short, or with trailing bytes): FRAME_ERROR
//    "cannot decode <<...>>" (the argument bytes in Erlang notation) naming the method, exactly as
//    RabbitMQ's decode_method_fields fallback. A malformed table argument gets the same answer;
//    RabbitMQ crashes the reader there (parse_table has no error clause), which helps nobody.
//  - invalid UTF-8 in a shortstr of a content-less method: FRAME_ERROR "Malformed UTF-8 in
//    shortstr" with class/method 0, as RabbitMQ's assert_utf8 raises it without a method.
//  - a payload too short to hold the ids: FRAME_ERROR in rabbit_reader's unknown_frame wording.

import { isUtf8 } from 'node:buffer';
import { AmqpError, UnknownMethodError } from './errors';
import { decodeTableWithin, tableByteLength, writeTable, FieldTable } from './field-table';
import { FieldKind, METHOD_DEFS, Method, MethodName, MethodOf } from './method-table';

export type { FieldKind, Method, MethodName, MethodOf, MethodByKey } from './method-table';

export function methodKey(classId: number, methodId: number): number {
  return ((classId << 16) | methodId) >>> 0;
}

export function classIdOf(key: number): number {
  return key >>> 16;
}

export function methodIdOf(key: number): number {
  return key & 0xffff;
}

type Defs = typeof METHOD_DEFS;

/** Method keys by name: M.BasicPublish === methodKey(60, 40). */
export const M = Object.freeze(
  Object.fromEntries(Object.entries(METHOD_DEFS).map(([n, d]) => [n, d.key])),
) as { readonly [N in MethodName]: Defs[N]['key'] };

interface Op {
  readonly name: string;
  readonly kind: FieldKind;
  /** Position inside the packed octet for 'bit' fields; a new octet starts at 0. */
  readonly bit: number;
}

interface Compiled {
  readonly key: number;
  readonly name: string;
  readonly ops: readonly Op[];
  readonly content: boolean;
}

const BY_KEY = new Map<number, Compiled>();
for (const d of Object.values(METHOD_DEFS) as Array<{ key: number; name: string; fields: readonly (readonly [string, FieldKind])[]; content?: true }>) {
  const ops: Op[] = [];
  let bit = -1;
  for (const [name, kind] of d.fields) {
    // Consecutive bits share an octet, eight at most, as the spec packs them.
    bit = kind === 'bit' ? (bit === -1 || bit === 7 ? 0 : bit + 1) : -1;
    ops.push({ name, kind, bit });
  }
  BY_KEY.set(d.key, { key: d.key, name: d.name, ops, content: d.content === true });
}

/** e.g. 'basic.publish'; unknown keys render as 'unknown 60/999'. */
export function methodName(key: number): string {
  return BY_KEY.get(key)?.name ?? `unknown ${classIdOf(key)}/${methodIdOf(key)}`;
}

/** True for methods followed by a content header (publish, return, deliver, get-ok). */
export function methodHasContent(key: number): boolean {
  return BY_KEY.get(key)?.content === true;
}

// ---- decoding -----------------------------------------------------------------------------

const K_PUBLISH = 0x003c_0028;
const K_ACK = 0x003c_0050;
const K_REJECT = 0x003c_005a;
const K_NACK = 0x003c_0078;

/** `start`..`end` are the argument bytes (after the ids), rendered as RabbitMQ's ~w does. */
function malformed(key: number, buf: Buffer, start: number, end: number): never {
  throw new AmqpError('FRAME_ERROR', `cannot decode ${erlangBinary(buf, start, end)}`, key >>> 16, key & 0xffff);
}

// A reply text is cut to 255 characters and every byte renders as at least two, so 128 bytes
// are enough to fill it; the rest would only cost time on a hostile, huge frame.
const RENDER_MAX = 128;

function erlangBinary(buf: Buffer, start: number, end: number): string {
  const stop = Math.min(end, start + RENDER_MAX);
  const parts: number[] = [];
  for (let i = start; i < stop; i++) parts.push(buf[i]!);
  return `<<${parts.join(',')}${stop < end ? ',...' : ''}>>`;
}

function readLongLong(buf: Buffer, p: number): number {
  return buf.readUInt32BE(p) * 0x1_0000_0000 + buf.readUInt32BE(p + 4);
}

/**
 * Decodes a method frame payload (from the class id to just before the frame-end octet).
 * shortstrs become UTF-8 strings; longstrs are copied into their own Buffers.
 */
export function decodeMethod(buf: Buffer, start: number, end: number): Method {
  if (start < 0 || end > buf.length || start > end) throw new RangeError(`bad method payload bounds ${start}..${end}`);
  if (end - start < 4) {
    throw new AmqpError('FRAME_ERROR', `type 1, all octets = ${erlangBinary(buf, start, end)}: unknown_frame`);
  }
  const key = buf.readUInt32BE(start);
  const p = start + 4;
  switch (key) {
    case K_PUBLISH: return decodePublish(buf, p, end);
    case K_ACK: return decodeAck(buf, p, end);
    case K_NACK: return decodeNack(buf, p, end);
    case K_REJECT: return decodeReject(buf, p, end);
  }
  const d = BY_KEY.get(key);
  if (d === undefined) {
    const classId = key >>> 16;
    const methodId = key & 0xffff;
    throw new UnknownMethodError('COMMAND_INVALID', `unknown method: class ${classId}, method ${methodId}`, classId, methodId);
  }
  return decodeGeneric(d, buf, p, end);
}

function decodePublish(buf: Buffer, start: number, end: number): MethodOf<'BasicPublish'> {
  // ticket(2) exchange(1+n) routing-key(1+n) bits(1)
  if (end - start < 5) malformed(K_PUBLISH, buf, start, end);
  const exLen = buf[start + 2]!;
  let p = start + 3;
  if (end - p < exLen + 2) malformed(K_PUBLISH, buf, start, end);
  const exchange = exLen === 0 ? '' : exchangeName(buf, p, exLen);
  p += exLen;
  const rkLen = buf[p]!;
  p += 1;
  if (end - p !== rkLen + 1) malformed(K_PUBLISH, buf, start, end);
  const routingKey = rkLen === 0 ? '' : buf.toString('utf8', p, p + rkLen);
  const bits = buf[p + rkLen]!;
  return { key: K_PUBLISH, exchange, routingKey, mandatory: (bits & 1) !== 0, immediate: (bits & 2) !== 0 };
}

// Publishers nearly always repeat the exchange, so the last name decoded is reused when the
// bytes match; that skips a string allocation per publish. Only ASCII bytes count as a match,
// so a hit always decodes to exactly the cached string.
let lastExchange = '';

function exchangeName(buf: Buffer, p: number, n: number): string {
  const prev = lastExchange;
  if (prev.length === n) {
    let i = 0;
    while (i < n) {
      const c = buf[p + i]!;
      if (c >= 0x80 || prev.charCodeAt(i) !== c) break;
      i++;
    }
    if (i === n) return prev;
  }
  return (lastExchange = buf.toString('utf8', p, p + n));
}

function decodeAck(buf: Buffer, p: number, end: number): MethodOf<'BasicAck'> {
  if (end - p !== 9) malformed(K_ACK, buf, p, end);
  return { key: K_ACK, deliveryTag: readLongLong(buf, p), multiple: (buf[p + 8]! & 1) !== 0 };
}

function decodeNack(buf: Buffer, p: number, end: number): MethodOf<'BasicNack'> {
  if (end - p !== 9) malformed(K_NACK, buf, p, end);
  const bits = buf[p + 8]!;
  return { key: K_NACK, deliveryTag: readLongLong(buf, p), multiple: (bits & 1) !== 0, requeue: (bits & 2) !== 0 };
}

function decodeReject(buf: Buffer, p: number, end: number): MethodOf<'BasicReject'> {
  if (end - p !== 9) malformed(K_REJECT, buf, p, end);
  return { key: K_REJECT, deliveryTag: readLongLong(buf, p), requeue: (buf[p + 8]! & 1) !== 0 };
}

function decodeGeneric(d: Compiled, buf: Buffer, start: number, end: number): Method {
  let p = start;
  const out: Record<string, unknown> = { key: d.key };
  let bits = 0;
  for (const op of d.ops) {
    let v: unknown;
    switch (op.kind) {
      case 'octet':
        if (end - p < 1) malformed(d.key, buf, start, end);
        v = buf[p];
        p += 1;
        break;
      case 'short':
        if (end - p < 2) malformed(d.key, buf, start, end);
        v = buf.readUInt16BE(p);
        p += 2;
        break;
      case 'long':
        if (end - p < 4) malformed(d.key, buf, start, end);
        v = buf.readUInt32BE(p);
        p += 4;
        break;
      case 'longlong':
        if (end - p < 8) malformed(d.key, buf, start, end);
        v = readLongLong(buf, p);
        p += 8;
        break;
      case 'shortstr': {
        if (end - p < 1) malformed(d.key, buf, start, end);
        const n = buf[p]!;
        p += 1;
        if (end - p < n) malformed(d.key, buf, start, end);
        // RabbitMQ checks UTF-8 only where no content follows, to keep publish cheap.
        if (!d.content) assertUtf8(buf, p, p + n);
        v = buf.toString('utf8', p, p + n);
        p += n;
        break;
      }
      case 'longstr': {
        if (end - p < 4) malformed(d.key, buf, start, end);
        const n = buf.readUInt32BE(p);
        p += 4;
        if (end - p < n) malformed(d.key, buf, start, end);
        v = Buffer.from(buf.subarray(p, p + n));
        p += n;
        break;
      }
      case 'bit':
        if (op.bit === 0) {
          if (end - p < 1) malformed(d.key, buf, start, end);
          bits = buf[p]!;
          p += 1;
        }
        v = ((bits >> op.bit) & 1) === 1;
        break;
      case 'table': {
        let r: { table: FieldTable; end: number };
        try {
          r = decodeTableWithin(buf, p, end);
        } catch (e) {
          if (e instanceof AmqpError) malformed(d.key, buf, start, end);
          throw e;
        }
        v = r.table;
        p = r.end;
        break;
      }
    }
    if (op.name !== '') out[op.name] = v;
  }
  if (p !== end) malformed(d.key, buf, start, end);
  return out as unknown as Method;
}

function assertUtf8(buf: Buffer, a: number, b: number): void {
  for (let i = a; i < b; i++) {
    if (buf[i]! >= 0x80) {
      if (!isUtf8(buf.subarray(a, b))) throw new AmqpError('FRAME_ERROR', 'Malformed UTF-8 in shortstr');
      return;
    }
  }
}

// ---- encoding -----------------------------------------------------------------------------

function shortstrLength(s: string, what: string): number {
  const n = Buffer.byteLength(s, 'utf8');
  if (n > 255) throw new RangeError(`${what} is longer than 255 bytes`);
  return n;
}

/** A complete method frame: type 1, channel, size, class/method ids, arguments, frame-end. */
export function encodeMethodFrame(channel: number, m: Method): Buffer {
  const d = BY_KEY.get(m.key);
  if (d === undefined) throw new RangeError(`unknown method key ${m.key}`);
  const rec = m as unknown as Record<string, unknown>;
  let size = 4;
  for (const op of d.ops) {
    const v = rec[op.name];
    switch (op.kind) {
      case 'octet': size += 1; break;
      case 'short': size += 2; break;
      case 'long': size += 4; break;
      case 'longlong': size += 8; break;
      case 'shortstr': size += 1 + (op.name === '' ? 0 : shortstrLength(v as string, `${d.name} ${op.name}`)); break;
      case 'longstr': size += 4 + (op.name === '' ? 0 : (v as Buffer).length); break;
      case 'bit': if (op.bit === 0) size += 1; break;
      case 'table': size += tableByteLength(v as FieldTable); break;
    }
  }
  const buf = Buffer.allocUnsafe(7 + size + 1);
  buf[0] = 1;
  buf.writeUInt16BE(channel, 1);
  buf.writeUInt32BE(size, 3);
  buf.writeUInt32BE(d.key, 7);
  let p = 11;
  let bitAt = 0;
  for (const op of d.ops) {
    const reserved = op.name === '';
    const v = rec[op.name];
    switch (op.kind) {
      case 'octet': p = buf.writeUInt8(reserved ? 0 : (v as number), p); break;
      case 'short': p = buf.writeUInt16BE(reserved ? 0 : (v as number), p); break;
      case 'long': p = buf.writeUInt32BE(reserved ? 0 : (v as number), p); break;
      case 'longlong': {
        const n = v as number;
        if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER)) throw new RangeError(`${d.name} ${op.name} out of range: ${n}`);
        buf.writeUInt32BE(Math.floor(n / 0x1_0000_0000), p);
        buf.writeUInt32BE(n >>> 0, p + 4);
        p += 8;
        break;
      }
      case 'shortstr':
        if (reserved) buf[p++] = 0;
        else {
          const n = buf.write(v as string, p + 1, 'utf8');
          buf[p] = n;
          p += 1 + n;
        }
        break;
      case 'longstr':
        if (reserved) p = buf.writeUInt32BE(0, p);
        else {
          p = buf.writeUInt32BE((v as Buffer).length, p);
          p += (v as Buffer).copy(buf, p);
        }
        break;
      case 'bit':
        if (op.bit === 0) {
          bitAt = p;
          buf[p++] = 0;
        }
        if (!reserved && v === true) buf[bitAt]! |= 1 << op.bit;
        break;
      case 'table':
        p = writeTable(buf, p, v as FieldTable);
        break;
    }
  }
  buf[p] = 0xce;
  return buf;
}
