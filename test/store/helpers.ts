// Shared fixtures for the store tests: temporary directories, messages that check themselves,
// a logger that remembers its lines, and promise wrappers for the store's callbacks.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MessageStore, StoredMessage, StoreLogger } from '../../src/store/message-store';

export function tempDir(t: { after(fn: () => void): void }, label = 'store'): string {
  const dir = mkdtempSync(join(tmpdir(), `warren-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Property bytes of a content header with delivery-mode 2 (flags 0x1000, then the octet). */
export const PERSISTENT = Buffer.from([0x10, 0x00, 0x02]);

/**
 * A message whose body says how long it is and what it is filled with, so that any recovered
 * copy can be checked without remembering what was sent.
 */
export function message(n: number, size = 1024, routingKey = `rk.${n}`): StoredMessage {
  const body = Buffer.alloc(Math.max(size, 8), n % 251);
  body.writeUInt32LE(body.length, 0);
  body.writeUInt32LE(n, 4);
  return { exchange: 'amq.direct', routingKey, properties: PERSISTENT, body };
}

/** The n a `message(n)` body was made from; throws if the body is not intact. */
export function checkBody(body: Buffer): number {
  if (body.length < 8 || body.readUInt32LE(0) !== body.length) throw new Error(`body length mismatch (${body.length})`);
  const n = body.readUInt32LE(4);
  for (let i = 8; i < body.length; i++) if (body[i] !== n % 251) throw new Error(`body byte ${i} damaged`);
  return n;
}

export function synced(store: MessageStore): Promise<void> {
  return new Promise((resolve, reject) => store.afterSync((err) => (err === null ? resolve() : reject(err))));
}

export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface LogLine {
  readonly level: 'warn' | 'error';
  readonly obj: object;
  readonly msg: string;
}

export class CapturingLogger implements StoreLogger {
  readonly lines: LogLine[] = [];
  warn(obj: object, msg: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  error(obj: object, msg: string): void {
    this.lines.push({ level: 'error', obj, msg });
  }
  text(): string {
    return this.lines.map((l) => `${l.level}: ${l.msg}`).join('\n');
  }
}

/** Ids of one recovered queue as a plain array (empty when the queue is absent). */
export function recoveredIds(store: MessageStore, queue: string): number[] {
  const q = store.recover().get(queue);
  return q === undefined ? [] : Array.from(q.ids);
}

/** A small deterministic PRNG (mulberry32) so random tests can print and replay their seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
