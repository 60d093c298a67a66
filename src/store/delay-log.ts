import { closeSync, fsyncSync, ftruncateSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import type { AppendFile } from './append-file';
import type { StoreLogger } from './message-store';

// The delayed-message log on disk: its record and watermark formats, and the recovery scan of
// a segment. The schedule (delay-schedule.ts) decides what is written when; this module only
// knows bytes, so a format change stays in one place.
//
// Files:  <tag>-<segment>.log   header, then records     (tag: hash of the exchange's key)
//         <tag>-<n>-<bucket>.idx  index entries (scratch; n tells incarnations apart)
//         <tag>.wm              header, then watermarks
//   record     crc u32 · len u32 · due f64 · seq f64 · publishedAt f64 · exchange shortstr ·
//              routing key shortstr · properties (u32 length + bytes) · bcc count u8 +
//              shortstrs · body (the rest); crc covers everything after itself
//   idx entry  due f64 · seq f64 · offset f64 · segment u32 · length u32
//   watermark  crc u32 · due f64 · seq f64

export const LOG_MAGIC = 0x474c4457;
export const WM_MAGIC = 0x4d574457;
export const RECORD_FIXED = 32;
export const WM_RECORD = 20;
export const IDX_ENTRY = 32;
/** Reads of logs and .idx files go in pieces of this size, so memory stays bounded. */
export const CHUNK = 1024 * 1024;

/** One delayed message as stored and as handed back on release. */
export interface DelayedRecord {
  readonly exchange: string;
  readonly routingKey: string;
  readonly properties: Buffer;
  readonly body: Buffer;
  readonly bcc: readonly string[] | null;
  readonly publishedAt: number;
}

export interface Released extends DelayedRecord {
  readonly due: number;
  readonly seq: number;
}

/** One log segment file of a schedule. */
export interface Segment {
  readonly no: number;
  readonly path: string;
  file: AppendFile;
  /** Messages in it not yet released. */
  live: number;
}

/**
 * Recovery scan of one log segment: checks every record, cuts a torn or corrupt tail, and
 * hands each record's position to the schedule that owns the segment.
 */
export function scanSegment(
  path: string,
  logger: StoreLogger,
  owner: (key: string, no: number, end: number) => (due: number, seq: number, offset: number, length: number) => void,
): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(18);
    if (readSync(fd, head, 0, 18, 0) < 18 || head.readUInt32LE(0) !== LOG_MAGIC) {
      logger.warn({ file: path }, 'removing a delayed-message log without a header');
      unlinkSync(path);
      return;
    }
    const no = head.readDoubleLE(4);
    const kl = head.readUInt16LE(16);
    const kb = Buffer.alloc(kl);
    if (readSync(fd, kb, 0, kl, 18) < kl) {
      unlinkSync(path);
      return;
    }
    const key = kb.toString('utf8');
    const records: Array<[number, number, number, number]> = [];
    let pos = 18 + kl;
    let chunk = Buffer.allocUnsafe(CHUNK);
    let chunkStart = 0;
    let chunkLen = 0;
    const need = (at: number, n: number): boolean => {
      if (at + n > size) return false;
      if (at >= chunkStart && at + n <= chunkStart + chunkLen) return true;
      if (n > chunk.length) chunk = Buffer.allocUnsafe(n);
      chunkStart = at;
      chunkLen = readSync(fd, chunk, 0, Math.min(chunk.length, size - at), at);
      return at + n <= chunkStart + chunkLen;
    };
    while (pos < size) {
      if (!need(pos, RECORD_FIXED)) break;
      const len = chunk.readUInt32LE(pos - chunkStart + 4);
      if (len < RECORD_FIXED || !need(pos, len)) break;
      const o = pos - chunkStart;
      if (chunk.readUInt32LE(o) !== crc32(chunk.subarray(o + 4, o + len))) break;
      records.push([chunk.readDoubleLE(o + 8), chunk.readDoubleLE(o + 16), pos, len]);
      pos += len;
    }
    if (pos < size) {
      logger.warn({ file: path, at: pos, size }, 'cutting a torn or corrupt tail off a delayed-message log');
      ftruncateSync(fd, pos);
      fsyncSync(fd);
    }
    const visit = owner(key, no, pos);
    for (const [due, seq, offset, length] of records) visit(due, seq, offset, length);
  } finally {
    closeSync(fd);
  }
}

export function writeHeader(file: AppendFile, magic: number, key: string, no: number, width: number): void {
  const k = Buffer.from(key);
  const at = file.reserve(18 + k.length);
  const b = file.buf;
  b.writeUInt32LE(magic, at);
  b.writeDoubleLE(no, at + 4);
  b.writeUInt32LE(width, at + 12);
  b.writeUInt16LE(k.length, at + 16);
  k.copy(b, at + 18);
  file.used = at + 18 + k.length;
}

function shortstrLength(s: string): number {
  return 1 + Buffer.byteLength(s);
}

export function encodeRecord(file: AppendFile, rec: DelayedRecord, due: number, seq: number): number {
  let len = RECORD_FIXED + shortstrLength(rec.exchange) + shortstrLength(rec.routingKey) + 4 + rec.properties.length + 1 + rec.body.length;
  const bcc = rec.bcc ?? [];
  for (const k of bcc) len += shortstrLength(k);
  const at = file.reserve(len);
  const b = file.buf;
  b.writeUInt32LE(len, at + 4);
  b.writeDoubleLE(due, at + 8);
  b.writeDoubleLE(seq, at + 16);
  b.writeDoubleLE(rec.publishedAt, at + 24);
  let p = at + RECORD_FIXED;
  p = writeShortstr(b, p, rec.exchange);
  p = writeShortstr(b, p, rec.routingKey);
  b.writeUInt32LE(rec.properties.length, p);
  p += 4;
  p += rec.properties.copy(b, p);
  b[p++] = Math.min(255, bcc.length);
  for (let i = 0; i < Math.min(255, bcc.length); i++) p = writeShortstr(b, p, bcc[i]!);
  p += rec.body.copy(b, p);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + len)), at);
  const offset = file.offsetOf(at);
  file.used = at + len;
  return offset;
}

function writeShortstr(b: Buffer, p: number, s: string): number {
  const n = b.write(s, p + 1, 'utf8');
  b[p] = n;
  return p + 1 + n;
}

export function decodeRecord(b: Buffer): Released {
  const due = b.readDoubleLE(8);
  const seq = b.readDoubleLE(16);
  const publishedAt = b.readDoubleLE(24);
  let p = RECORD_FIXED;
  const exLen = b[p]!;
  const exchange = b.toString('utf8', p + 1, p + 1 + exLen);
  p += 1 + exLen;
  const rkLen = b[p]!;
  const routingKey = b.toString('utf8', p + 1, p + 1 + rkLen);
  p += 1 + rkLen;
  const propsLen = b.readUInt32LE(p);
  p += 4;
  const properties = b.subarray(p, p + propsLen);
  p += propsLen;
  const nBcc = b[p++]!;
  let bcc: string[] | null = null;
  for (let i = 0; i < nBcc; i++) {
    const n = b[p]!;
    (bcc ??= []).push(b.toString('utf8', p + 1, p + 1 + n));
    p += 1 + n;
  }
  return { exchange, routingKey, properties, body: b.subarray(p), bcc, publishedAt, due, seq };
}

export function appendWatermark(file: AppendFile, due: number, seq: number): void {
  const at = file.reserve(WM_RECORD);
  const b = file.buf;
  b.writeDoubleLE(due, at + 4);
  b.writeDoubleLE(seq, at + 12);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + WM_RECORD)), at);
  file.used = at + WM_RECORD;
}

/** Replaces a watermark file by one holding a single record (tmp file, fsync, rename). */
export function writeWatermarkFile(dir: string, path: string, key: string, due: number, seq: number, sync: boolean): void {
  const k = Buffer.from(key);
  const b = Buffer.alloc(18 + k.length + WM_RECORD);
  b.writeUInt32LE(WM_MAGIC, 0);
  b.writeUInt16LE(k.length, 16);
  k.copy(b, 18);
  const at = 18 + k.length;
  b.writeDoubleLE(due, at + 4);
  b.writeDoubleLE(seq, at + 12);
  b.writeUInt32LE(crc32(b.subarray(at + 4, at + WM_RECORD)), at);
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, b);
    if (sync) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  if (sync) {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  }
}

export function readWatermarkFile(path: string): { key: string; due: number; seq: number } | null {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got < 18 || buf.readUInt32LE(0) !== WM_MAGIC) return null;
    const kl = buf.readUInt16LE(16);
    if (18 + kl > got) return null;
    const key = buf.toString('utf8', 18, 18 + kl);
    let due = -Infinity;
    let seq = -1;
    for (let p = 18 + kl; p + WM_RECORD <= got; p += WM_RECORD) {
      if (buf.readUInt32LE(p) !== crc32(buf.subarray(p + 4, p + WM_RECORD))) break;
      due = buf.readDoubleLE(p + 4);
      seq = buf.readDoubleLE(p + 12);
    }
    return { key, due, seq };
  } finally {
    closeSync(fd);
  }
}
