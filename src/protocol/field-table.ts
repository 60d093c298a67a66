// AMQP field tables and arrays with the type octets RabbitMQ's rabbit_binary_parser accepts:
// t b B s u I i l L f d D S x A T F V. Note that RabbitMQ reads 's' as a signed 16-bit int
// (the QPid convention), not the spec's short string, and reads 'L' as a *signed* 64-bit int.
//
// Values are decoded into a tagged form that keeps the wire type, so a table decoded from a
// client and encoded again is byte-identical, with two exceptions: a bool octet other than 0/1
// re-encodes as 1 (RabbitMQ normalises it the same way), and a field name that is not valid
// UTF-8 comes back with U+FFFD replacements (names are JS strings for usability).
//
// Like RabbitMQ, whose Erlang float segments cannot hold them, NaN and ±Infinity in 'f'/'d'
// fields are rejected as malformed.

import { AmqpError } from './errors';

export type FieldValue =
  | { type: 't'; value: boolean }
  | { type: 'b' | 'B' | 's' | 'u' | 'I' | 'i'; value: number }
  | { type: 'l' | 'L'; value: bigint }
  /** Seconds since the epoch, unsigned 64-bit. */
  | { type: 'T'; value: bigint }
  /** Always finite: like RabbitMQ (Erlang floats), NaN and ±Infinity are refused on decode. */
  | { type: 'f' | 'd'; value: number }
  /** value × 10^-scale; value is unsigned 32-bit as RabbitMQ parses it. */
  | { type: 'D'; scale: number; value: number }
  /** Longstr kept as bytes: it is often binary and must survive untouched. */
  | { type: 'S'; value: Buffer }
  | { type: 'x'; value: Buffer }
  | { type: 'A'; value: FieldValue[] }
  | { type: 'F'; value: FieldTable }
  | { type: 'V' };

/**
 * Entries in wire order. Duplicate names are kept exactly as received (so re-encoding is
 * byte-exact, as in RabbitMQ); every lookup here returns the first, like rabbit_misc:table_lookup.
 * fromPlain never produces duplicates.
 */
export type FieldTable = Array<[name: string, value: FieldValue]>;

// Legitimate tables nest a handful of levels; the cap keeps a hostile frame of nested empty
// tables from exhausting the JS stack (which would surface as a RangeError, not an AmqpError).
const MAX_DEPTH = 1000;

// Read cursor shared by the recursive decoders; avoids allocating {value, end} pairs per field.
let pos = 0;

function fail(what: string): never {
  throw new AmqpError('SYNTAX_ERROR', what);
}

function need(n: number, end: number, what: string): void {
  if (end - pos < n) fail(`truncated ${what}`);
}

/** Decodes a length-prefixed table at `offset`; `end` is the offset just past it. */
export function decodeTable(buf: Buffer, offset: number): { table: FieldTable; end: number } {
  pos = offset;
  const end = readLengthPrefix(buf, buf.length, 'field table');
  const table = readEntries(buf, end, 0);
  return { table, end };
}

/** Decodes a length-prefixed field array at `offset`. */
export function decodeArray(buf: Buffer, offset: number): { array: FieldValue[]; end: number } {
  pos = offset;
  const end = readLengthPrefix(buf, buf.length, 'field array');
  const array = readItems(buf, end, 0);
  return { array, end };
}

/**
 * For codecs that already know the bounds (method arguments, content properties): decodes the
 * length-prefixed table at `offset` without reading past `limit`.
 */
export function decodeTableWithin(buf: Buffer, offset: number, limit: number): { table: FieldTable; end: number } {
  pos = offset;
  const end = readLengthPrefix(buf, limit, 'field table');
  const table = readEntries(buf, end, 0);
  return { table, end };
}

function readLengthPrefix(buf: Buffer, limit: number, what: string): number {
  if (pos < 0 || limit > buf.length) fail(`${what} outside buffer`);
  need(4, limit, `${what} length`);
  const len = buf.readUInt32BE(pos);
  pos += 4;
  need(len, limit, what);
  return pos + len;
}

function readEntries(buf: Buffer, end: number, depth: number): FieldTable {
  if (depth > MAX_DEPTH) fail('field table nested too deeply');
  const table: FieldTable = [];
  while (pos < end) {
    const nameLen = buf[pos]!;
    pos += 1;
    need(nameLen, end, 'field name');
    const name = buf.toString('utf8', pos, pos + nameLen);
    pos += nameLen;
    table.push([name, readValue(buf, end, depth)]);
  }
  return table;
}

function readItems(buf: Buffer, end: number, depth: number): FieldValue[] {
  if (depth > MAX_DEPTH) fail('field array nested too deeply');
  const items: FieldValue[] = [];
  while (pos < end) items.push(readValue(buf, end, depth));
  return items;
}

function finite(x: number): number {
  if (x - x !== 0) fail('non-finite float in field value');
  return x;
}

function readBytes(buf: Buffer, end: number): Buffer {
  need(4, end, 'field value length');
  const len = buf.readUInt32BE(pos);
  pos += 4;
  need(len, end, 'field value');
  // Copied so a table outliving the frame does not pin (or see reuse of) the socket buffer.
  const out = Buffer.from(buf.subarray(pos, pos + len));
  pos += len;
  return out;
}

function readValue(buf: Buffer, end: number, depth: number): FieldValue {
  need(1, end, 'field type');
  const t = buf[pos]!;
  pos += 1;
  let v: FieldValue;
  switch (t) {
    case 0x53: // S
      return { type: 'S', value: readBytes(buf, end) };
    case 0x49: // I
      need(4, end, 'field value');
      v = { type: 'I', value: buf.readInt32BE(pos) };
      pos += 4;
      return v;
    case 0x54: // T
      need(8, end, 'field value');
      v = { type: 'T', value: buf.readBigUInt64BE(pos) };
      pos += 8;
      return v;
    case 0x6c: // l
    case 0x4c: // L
      need(8, end, 'field value');
      v = { type: t === 0x6c ? 'l' : 'L', value: buf.readBigInt64BE(pos) };
      pos += 8;
      return v;
    case 0x74: // t
      need(1, end, 'field value');
      v = { type: 't', value: buf[pos] !== 0 };
      pos += 1;
      return v;
    case 0x62: // b
      need(1, end, 'field value');
      v = { type: 'b', value: buf.readInt8(pos) };
      pos += 1;
      return v;
    case 0x42: // B
      need(1, end, 'field value');
      v = { type: 'B', value: buf[pos]! };
      pos += 1;
      return v;
    case 0x73: // s
      need(2, end, 'field value');
      v = { type: 's', value: buf.readInt16BE(pos) };
      pos += 2;
      return v;
    case 0x75: // u
      need(2, end, 'field value');
      v = { type: 'u', value: buf.readUInt16BE(pos) };
      pos += 2;
      return v;
    case 0x69: // i
      need(4, end, 'field value');
      v = { type: 'i', value: buf.readUInt32BE(pos) };
      pos += 4;
      return v;
    case 0x66: // f
      need(4, end, 'field value');
      v = { type: 'f', value: finite(buf.readFloatBE(pos)) };
      pos += 4;
      return v;
    case 0x64: // d
      need(8, end, 'field value');
      v = { type: 'd', value: finite(buf.readDoubleBE(pos)) };
      pos += 8;
      return v;
    case 0x44: // D
      need(5, end, 'field value');
      v = { type: 'D', scale: buf[pos]!, value: buf.readUInt32BE(pos + 1) };
      pos += 5;
      return v;
    case 0x78: // x
      return { type: 'x', value: readBytes(buf, end) };
    case 0x46: { // F
      need(4, end, 'nested table length');
      const len = buf.readUInt32BE(pos);
      pos += 4;
      need(len, end, 'nested table');
      return { type: 'F', value: readEntries(buf, pos + len, depth + 1) };
    }
    case 0x41: { // A
      need(4, end, 'nested array length');
      const len = buf.readUInt32BE(pos);
      pos += 4;
      need(len, end, 'nested array');
      return { type: 'A', value: readItems(buf, pos + len, depth + 1) };
    }
    case 0x56: // V
      return { type: 'V' };
    default:
      return fail(`unknown field type 0x${t.toString(16).padStart(2, '0')}`);
  }
}

// ---- encoding -----------------------------------------------------------------------------

function nameLength(name: string): number {
  const n = Buffer.byteLength(name, 'utf8');
  if (n > 255) throw new RangeError(`field name longer than 255 bytes: ${name.slice(0, 40)}…`);
  return n;
}

function valueByteLength(v: FieldValue): number {
  switch (v.type) {
    case 't': case 'b': case 'B': return 2;
    case 's': case 'u': return 3;
    case 'I': case 'i': case 'f': return 5;
    case 'l': case 'L': case 'T': case 'd': return 9;
    case 'D': return 6;
    case 'S': case 'x': return 5 + v.value.length;
    case 'A': return 1 + arrayByteLength(v.value);
    case 'F': return 1 + tableByteLength(v.value);
    case 'V': return 1;
  }
}

/** Encoded size including the 4-byte length prefix. */
export function tableByteLength(table: FieldTable): number {
  let n = 4;
  for (const [name, v] of table) n += 1 + nameLength(name) + valueByteLength(v);
  return n;
}

/** Encoded size including the 4-byte length prefix. */
export function arrayByteLength(items: readonly FieldValue[]): number {
  let n = 4;
  for (const v of items) n += valueByteLength(v);
  return n;
}

/** Writes the length-prefixed table at `offset`, returning the offset after it. The caller sizes `buf` with tableByteLength. */
export function writeTable(buf: Buffer, offset: number, table: FieldTable): number {
  let p = offset + 4;
  for (const [name, v] of table) {
    const n = buf.write(name, p + 1, 'utf8');
    if (n > 255) nameLength(name);
    buf[p] = n;
    p = writeValue(buf, p + 1 + n, v);
  }
  buf.writeUInt32BE(p - offset - 4, offset);
  return p;
}

/** Writes the length-prefixed array at `offset`, returning the offset after it. */
export function writeArray(buf: Buffer, offset: number, items: readonly FieldValue[]): number {
  let p = offset + 4;
  for (const v of items) p = writeValue(buf, p, v);
  buf.writeUInt32BE(p - offset - 4, offset);
  return p;
}

function writeValue(buf: Buffer, p: number, v: FieldValue): number {
  buf[p] = v.type.charCodeAt(0);
  p += 1;
  switch (v.type) {
    case 't': buf[p] = v.value ? 1 : 0; return p + 1;
    case 'b': return buf.writeInt8(v.value, p);
    case 'B': return buf.writeUInt8(v.value, p);
    case 's': return buf.writeInt16BE(v.value, p);
    case 'u': return buf.writeUInt16BE(v.value, p);
    case 'I': return buf.writeInt32BE(v.value, p);
    case 'i': return buf.writeUInt32BE(v.value, p);
    case 'l': case 'L': return buf.writeBigInt64BE(v.value, p);
    case 'T': return buf.writeBigUInt64BE(v.value, p);
    case 'f': return buf.writeFloatBE(v.value, p);
    case 'd': return buf.writeDoubleBE(v.value, p);
    case 'D': buf.writeUInt8(v.scale, p); return buf.writeUInt32BE(v.value, p + 1);
    case 'S': case 'x': p = buf.writeUInt32BE(v.value.length, p); return p + v.value.copy(buf, p);
    case 'A': return writeArray(buf, p, v.value);
    case 'F': return writeTable(buf, p, v.value);
    case 'V': return p;
  }
}

/** The table with its 4-byte length prefix, exactly as it appears inside a method or header. */
export function encodeTable(table: FieldTable): Buffer {
  const buf = Buffer.allocUnsafe(tableByteLength(table));
  writeTable(buf, 0, table);
  return buf;
}

export function encodeArray(items: readonly FieldValue[]): Buffer {
  const buf = Buffer.allocUnsafe(arrayByteLength(items));
  writeArray(buf, 0, items);
  return buf;
}

// ---- access and plain-JS conversion -------------------------------------------------------

export function tableGet(table: FieldTable | undefined, name: string): FieldValue | undefined {
  if (table === undefined) return undefined;
  for (const entry of table) if (entry[0] === name) return entry[1];
  return undefined;
}

/** UTF-8 text of a longstr value; undefined for any other type. */
export function fieldString(v: FieldValue | undefined): string | undefined {
  return v !== undefined && v.type === 'S' ? v.value.toString('utf8') : undefined;
}

/**
 * The value of an integer-typed field (b B s u I i l L) as a number; undefined for other types
 * or for 64-bit values outside the safe-integer range. RabbitMQ validates arguments by type, so
 * a 'd' 5.0 is deliberately not an integer here.
 */
export function fieldInt(v: FieldValue | undefined): number | undefined {
  if (v === undefined) return undefined;
  switch (v.type) {
    case 'b': case 'B': case 's': case 'u': case 'I': case 'i': return v.value;
    case 'l': case 'L': return bigToSafe(v.value);
    default: return undefined;
  }
}

function bigToSafe(b: bigint): number | undefined {
  return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : undefined;
}

/**
 * Plain JS for consumers of arguments and headers: numbers; 64-bit ints (l, L) and timestamps (T,
 * seconds since the epoch) as numbers when safe, else bigint; S as a UTF-8 string; x as a Buffer;
 * D as the number value×10^-scale; V as null; nested tables/arrays converted recursively.
 */
export function toPlain(v: FieldValue): unknown {
  switch (v.type) {
    case 't': case 'b': case 'B': case 's': case 'u': case 'I': case 'i': case 'f': case 'd':
      return v.value;
    case 'l': case 'L': case 'T':
      return bigToSafe(v.value) ?? v.value;
    case 'D': return v.value / 10 ** v.scale;
    case 'S': return v.value.toString('utf8');
    case 'x': return v.value;
    case 'A': return v.value.map(toPlain);
    case 'F': return tablePlain(v.value);
    case 'V': return null;
  }
}

export function tablePlain(table: FieldTable): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, v] of table) {
    if (Object.prototype.hasOwnProperty.call(out, name)) continue; // first wins, as in lookups
    // A '__proto__' key must become an own property, not replace the prototype.
    if (name === '__proto__') Object.defineProperty(out, name, { value: toPlain(v), enumerable: true, writable: true, configurable: true });
    else out[name] = toPlain(v);
  }
  return out;
}

/**
 * Infers wire types: string→S, boolean→t, safe integer→l, other number→d, bigint→l,
 * Buffer/Uint8Array→x, Date→T (whole seconds), array→A, null/undefined→V, object→F.
 */
export function valueFromPlain(x: unknown): FieldValue {
  switch (typeof x) {
    case 'string': return { type: 'S', value: Buffer.from(x, 'utf8') };
    case 'boolean': return { type: 't', value: x };
    case 'number':
      if (Number.isSafeInteger(x)) return { type: 'l', value: BigInt(x) };
      if (!Number.isFinite(x)) throw new RangeError(`${x} cannot be sent: AMQP peers such as RabbitMQ reject non-finite floats`);
      return { type: 'd', value: x };
    case 'bigint':
      if (x < -(2n ** 63n) || x >= 2n ** 63n) throw new RangeError(`bigint ${x} does not fit a signed 64-bit field`);
      return { type: 'l', value: x };
    case 'undefined': return { type: 'V' };
    case 'object':
      if (x === null) return { type: 'V' };
      if (x instanceof Uint8Array) return { type: 'x', value: Buffer.from(x) };
      if (x instanceof Date) return { type: 'T', value: BigInt(Math.floor(x.getTime() / 1000)) };
      if (Array.isArray(x)) return { type: 'A', value: x.map(valueFromPlain) };
      return { type: 'F', value: fromPlain(x as Record<string, unknown>) };
    default:
      throw new TypeError(`cannot encode a ${typeof x} in a field table`);
  }
}

export function fromPlain(obj: Record<string, unknown>): FieldTable {
  const table: FieldTable = [];
  for (const name of Object.keys(obj)) table.push([name, valueFromPlain(obj[name])]);
  return table;
}
