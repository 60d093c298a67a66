// The bytes on disk. Both kinds of file start with a 16-byte header and then hold records:
//
//   file header   magic u32 ('WSEG' segment / 'WACK' ack file) · version u32 · firstId f64
//                 · lastNo u32 (segment files: the highest segment number merged into this one,
//                   its own number if none; see compaction.ts) · reserved u32
//   record        crc32 u32 · len u32 · type u8 · payload (len - 1 bytes)
//
// The CRC (zlib's CRC-32, native) covers len, type and payload, so a torn or bit-flipped
// length is caught like any other damage. All integers little-endian; ids are f64 because
// they outgrow 32 bits in a long-running broker and stay below 2^53.
//
//   PUBLISH    id f64 · publishedAt f64 · nq u16 · nq × (len u16 · queue utf8)
//              · exchange (len u8 · utf8) · routingKey (len u8 · utf8) · propsLen u32 · props · body
//   ACK        queue (len u16 · utf8) · count u32 · count × id f64
//   DELIVERED  same as ACK
//   DELETE     queue (len u16 · utf8) · upTo f64      (every id <= upTo leaves that queue)
//
// Publish records live in the segment (.seg); ack, delivered and delete records live in the
// ack file (.ack) of the segment holding the messages they name, so a segment and its ack
// file are deleted together and no record elsewhere can refer to a deleted message.
import { crc32 } from 'node:zlib';
import type { AppendFile } from './append-file';
import type { ReadMessage, StoredMessage } from './message-store';

export const SEGMENT_MAGIC = 0x47455357; // 'WSEG' read as u32 LE
export const ACK_MAGIC = 0x4b434157; // 'WACK'
export const FORMAT_VERSION = 1;
export const FILE_HEADER_SIZE = 24;
export const RECORD_HEADER_SIZE = 8;

export const enum RecordType {
  Publish = 1,
  Ack = 2,
  Delivered = 3,
  Delete = 4,
}

/** Larger than any AMQP message RabbitMQ accepts (max 512 MiB); a bigger length is damage. */
export const MAX_RECORD_SIZE = 0x3000_0000;

export function isRecordType(t: number): boolean {
  return t >= RecordType.Publish && t <= RecordType.Delete;
}

export interface FileHeader {
  readonly firstId: number;
  readonly lastNo: number;
}

export function writeFileHeader(file: AppendFile, magic: number, firstId: number, lastNo = 0): void {
  const at = file.reserve(FILE_HEADER_SIZE);
  const b = file.buf;
  b.writeUInt32LE(magic, at);
  b.writeUInt32LE(FORMAT_VERSION, at + 4);
  b.writeDoubleLE(firstId, at + 8);
  b.writeUInt32LE(lastNo, at + 16);
  b.writeUInt32LE(0, at + 20);
  file.used = at + FILE_HEADER_SIZE;
}

/** The header, or null when the file is too short or its magic or version is wrong. */
export function readFileHeader(buf: Buffer, size: number, magic: number): FileHeader | null {
  if (size < FILE_HEADER_SIZE || buf.readUInt32LE(0) !== magic || buf.readUInt32LE(4) !== FORMAT_VERSION) return null;
  return { firstId: buf.readDoubleLE(8), lastNo: buf.readUInt32LE(16) };
}

/** Seals a record written at `at` (header space included) whose bytes end at `end`. */
function seal(file: AppendFile, at: number, end: number): void {
  const b = file.buf;
  b.writeUInt32LE(end - at - RECORD_HEADER_SIZE, at + 4);
  b.writeUInt32LE(crc32(b.subarray(at + 4, end)), at);
  file.used = end;
}

/** UTF-8 bytes of queue keys, cached: the same few keys are written for every message. */
export class KeyCache {
  private readonly map = new Map<string, Buffer>();

  get(key: string): Buffer {
    let b = this.map.get(key);
    if (b === undefined) {
      b = Buffer.from(key, 'utf8');
      if (b.length > 0xffff) throw new RangeError('queue key longer than 65535 bytes');
      if (this.map.size >= 65536) this.map.clear();
      this.map.set(key, b);
    }
    return b;
  }
}

/** Appends a publish record; returns its logical offset in the file. */
export function appendPublish(
  file: AppendFile,
  keys: KeyCache,
  id: number,
  publishedAt: number,
  msg: StoredMessage,
  queues: readonly string[],
): number {
  let qBytes = 0;
  for (let i = 0; i < queues.length; i++) qBytes += 2 + keys.get(queues[i]!).length;
  const ex = msg.exchange;
  const rk = msg.routingKey;
  const max =
    RECORD_HEADER_SIZE + 1 + 18 + qBytes + 2 + ex.length * 3 + rk.length * 3 + 4 + msg.properties.length + msg.body.length;
  const at = file.reserve(max);
  const b = file.buf;
  let p = at + RECORD_HEADER_SIZE;
  b[p++] = RecordType.Publish;
  b.writeDoubleLE(id, p);
  b.writeDoubleLE(publishedAt, p + 8);
  b.writeUInt16LE(queues.length, p + 16);
  p += 18;
  for (let i = 0; i < queues.length; i++) {
    const k = keys.get(queues[i]!);
    b.writeUInt16LE(k.length, p);
    k.copy(b, p + 2);
    p += 2 + k.length;
  }
  p = writeShortString(b, p, ex);
  p = writeShortString(b, p, rk);
  b.writeUInt32LE(msg.properties.length, p);
  p += 4;
  p += msg.properties.copy(b, p);
  p += msg.body.copy(b, p);
  seal(file, at, p);
  return file.offsetOf(at);
}

function writeShortString(b: Buffer, p: number, s: string): number {
  const n = s.length === 0 ? 0 : b.write(s, p + 1, 'utf8');
  if (n > 255) throw new RangeError(`exchange or routing key longer than 255 bytes: ${s.slice(0, 40)}…`);
  b[p] = n;
  return p + 1 + n;
}

/** Appends an ACK or DELIVERED record naming ids[from..to) of one queue. */
export function appendIdBatch(
  file: AppendFile,
  type: RecordType.Ack | RecordType.Delivered,
  key: Buffer,
  ids: readonly number[],
  from: number,
  to: number,
): void {
  const at = file.reserve(RECORD_HEADER_SIZE + 1 + 2 + key.length + 4 + (to - from) * 8);
  const b = file.buf;
  let p = at + RECORD_HEADER_SIZE;
  b[p++] = type;
  b.writeUInt16LE(key.length, p);
  p += 2 + key.copy(b, p + 2);
  b.writeUInt32LE(to - from, p);
  p += 4;
  for (let i = from; i < to; i++, p += 8) b.writeDoubleLE(ids[i]!, p);
  seal(file, at, p);
}

export function appendDelete(file: AppendFile, key: Buffer, upTo: number): void {
  const at = file.reserve(RECORD_HEADER_SIZE + 1 + 2 + key.length + 8);
  const b = file.buf;
  let p = at + RECORD_HEADER_SIZE;
  b[p++] = RecordType.Delete;
  b.writeUInt16LE(key.length, p);
  p += 2 + key.copy(b, p + 2);
  b.writeDoubleLE(upTo, p);
  seal(file, at, p + 8);
}

/** Copies a whole record (already sealed) into a file, e.g. during compaction. */
export function appendRaw(file: AppendFile, src: Buffer, start: number, end: number): number {
  const at = file.reserve(end - start);
  src.copy(file.buf, at, start, end);
  file.used = at + (end - start);
  return file.offsetOf(at);
}

// ---------------------------------------------------------------------------------------
// Decoding. `p` is the offset of the type byte; `end` the end of the record.

export function publishId(b: Buffer, p: number): number {
  return b.readDoubleLE(p + 1);
}

/** Decodes a whole publish record (from its type byte) into views of `b`. */
export function decodePublish(b: Buffer, p: number, end: number): ReadMessage {
  const publishedAt = b.readDoubleLE(p + 9);
  const nq = b.readUInt16LE(p + 17);
  let q = p + 19;
  for (let i = 0; i < nq; i++) q += 2 + b.readUInt16LE(q);
  const exLen = b[q]!;
  const exchange = b.toString('utf8', q + 1, q + 1 + exLen);
  q += 1 + exLen;
  const rkLen = b[q]!;
  const routingKey = b.toString('utf8', q + 1, q + 1 + rkLen);
  q += 1 + rkLen;
  const propsLen = b.readUInt32LE(q);
  q += 4;
  if (q + propsLen > end) throw new RangeError('properties overrun record');
  return {
    exchange,
    routingKey,
    properties: b.subarray(q, q + propsLen),
    body: b.subarray(q + propsLen, end),
    publishedAt,
  };
}

/** Queue key of an ACK / DELIVERED / DELETE record and where its remainder starts. */
export function recordQueue(b: Buffer, p: number): { queue: string; rest: number } {
  const len = b.readUInt16LE(p + 1);
  return { queue: b.toString('utf8', p + 3, p + 3 + len), rest: p + 3 + len };
}

// ---------------------------------------------------------------------------------------
// Scanning a file: checksums, torn tails and damage in the middle.

export interface ScanProblem {
  /** 'torn-tail': the file ends inside a record or in garbage; everything from `offset` is dropped.
   *  'corrupt': bytes [offset, resumeAt) are skipped and scanning resumes after them. */
  readonly kind: 'torn-tail' | 'corrupt';
  readonly offset: number;
  readonly resumeAt: number;
}

/** Header plausibility only (no CRC): used to pick candidates while resynchronising. */
function plausibleAt(b: Buffer, p: number, end: number): boolean {
  if (p + RECORD_HEADER_SIZE + 1 > end) return false;
  const len = b.readUInt32LE(p + 4);
  return len >= 1 && len <= MAX_RECORD_SIZE && p + RECORD_HEADER_SIZE + len <= end && isRecordType(b[p + 8]!);
}

function validAt(b: Buffer, p: number, end: number): boolean {
  if (!plausibleAt(b, p, end)) return false;
  const len = b.readUInt32LE(p + 4);
  return crc32(b.subarray(p + 4, p + RECORD_HEADER_SIZE + len)) === b.readUInt32LE(p);
}

/**
 * The next offset after `from` where an intact record starts, or -1. A candidate must have a
 * plausible header whose successor is also plausible (or is the end of the file) before its
 * CRC is computed, which keeps a resync over megabytes of garbage cheap.
 */
function resync(b: Buffer, from: number, end: number): number {
  for (let p = from; p + RECORD_HEADER_SIZE + 1 <= end; p++) {
    if (!plausibleAt(b, p, end)) continue;
    const next = p + RECORD_HEADER_SIZE + b.readUInt32LE(p + 4);
    if (next !== end && !plausibleAt(b, next, end)) continue;
    if (validAt(b, p, end)) return p;
  }
  return -1;
}

/**
 * Visits every intact record in b[start, end): visit(type, p, recordStart, recordEnd) with p at
 * the type byte. Damage is reported and skipped; returns the offset where the intact data ends
 * (the file should be truncated there if it is shorter than the file).
 */
export function scanRecords(
  b: Buffer,
  start: number,
  end: number,
  visit: (type: RecordType, p: number, recordStart: number, recordEnd: number) => void,
  problem: (p: ScanProblem) => void,
): number {
  let pos = start;
  while (pos < end) {
    if (validAt(b, pos, end)) {
      const recEnd = pos + RECORD_HEADER_SIZE + b.readUInt32LE(pos + 4);
      visit(b[pos + 8] as RecordType, pos + 8, pos, recEnd);
      pos = recEnd;
      continue;
    }
    // A damaged record whose length is intact: skip exactly it when an intact record follows,
    // so that a body which happens to contain record-like bytes is never mistaken for one.
    let next = -1;
    if (plausibleAt(b, pos, end)) {
      const after = pos + RECORD_HEADER_SIZE + b.readUInt32LE(pos + 4);
      if (validAt(b, after, end)) next = after;
    }
    if (next < 0) next = resync(b, pos + 1, end);
    if (next < 0) {
      problem({ kind: 'torn-tail', offset: pos, resumeAt: end });
      return pos;
    }
    problem({ kind: 'corrupt', offset: pos, resumeAt: next });
    pos = next;
  }
  return end;
}
