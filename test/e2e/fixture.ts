// Shared helpers for the end-to-end suite.
//
// Every test file talks AMQP 0-9-1 to a broker over TCP, either to an embedded
// Warren (the default) or to whatever broker WARREN_TEST_URL points at, e.g. a
// real RabbitMQ used to pin the expected behaviour:
//
//   WARREN_TEST_URL=amqp://guest:guest@127.0.0.1:5672 node --test dist/test/e2e/
//
// Typical use:
//
//   const suite = e2eSuite();                 // starts/stops the broker for this file
//   it('does a thing', async (t) => {
//     const c = await suite.context(t);       // cleaned up automatically after the test
//     const ch = await c.channel();
//     const q = await c.queue();              // unique, deleted after the test
//     ...
//   });
//
// Names are unique per process, counter and random suffix so repeated or
// parallel runs against a shared RabbitMQ never collide, and everything a test
// declares through the context is deleted afterwards.

import { after, before } from 'node:test';
import type { TestContext as NodeTestContext } from 'node:test';
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage, GetMessage, Message, Options } from 'amqplib';

/** amqplib's promise-API connection. */
export type Connection = ChannelModel;

// ---------------------------------------------------------------------------
// Broker lifecycle

export interface TestBroker {
  /** amqp://user:pass@host:port (no vhost path). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** True when the broker is an external one (WARREN_TEST_URL), e.g. RabbitMQ. */
  readonly external: boolean;
  /** The embedded Warren's handle (undefined for an external broker). */
  readonly warren?: import('../../src/index').BrokerHandle;
  close(): Promise<void>;
}

/** Starts an embedded Warren, or returns the broker named by WARREN_TEST_URL. */
export async function startTestBroker(): Promise<TestBroker> {
  const external = process.env.WARREN_TEST_URL;
  if (external) {
    const u = new URL(external);
    return {
      url: external.replace(/\/+$/, ''),
      host: u.hostname,
      port: Number(u.port || 5672),
      external: true,
      close: async () => {},
    };
  }
  // Imported lazily so that pointing the suite at RabbitMQ never loads Warren.
  const { startBroker } = await import('../../src/index');
  const handle = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent' });
  return { url: handle.url, host: handle.host, port: handle.port, external: false, warren: handle, close: () => handle.close() };
}

export interface Suite {
  /** The running broker; only valid inside tests/hooks. */
  readonly broker: TestBroker;
  /** A per-test context whose resources are released after the test. */
  context(t: NodeTestContext): Promise<Ctx>;
}

/** Registers file-level before/after hooks that start and stop the broker. */
export function e2eSuite(): Suite {
  let broker: TestBroker | undefined;
  before(async () => {
    broker = await startTestBroker();
  });
  after(async () => {
    await broker?.close();
  });
  const suite: Suite = {
    get broker(): TestBroker {
      if (!broker) throw new Error('broker not started');
      return broker;
    },
    async context(t: NodeTestContext): Promise<Ctx> {
      const ctx = new Ctx(suite.broker);
      t.after(() => ctx.cleanup());
      return ctx;
    },
  };
  return suite;
}

// ---------------------------------------------------------------------------
// Names

let counter = 0;
/** A name that is unique across processes and runs: prefix.pid.counter.random */
export function uniq(prefix = 't'): string {
  counter += 1;
  return `e2e-${prefix}.${process.pid}.${counter}.${randomBytes(4).toString('hex')}`;
}

// ---------------------------------------------------------------------------
// Errors

/** A server-initiated channel.close / connection.close as amqplib reports it. */
export interface ServerClose {
  code: number;
  /** The reply text exactly as the server sent it, e.g. "NOT_FOUND - no queue 'q' in vhost '/'". */
  text: string;
  classId?: number;
  methodId?: number;
  message: string;
}

/** Parses an amqplib error produced by a server close (or handshake refusal). */
export function parseServerClose(err: unknown): ServerClose {
  // amqplib's basic.get rejects with the raw channel.close frame rather than an Error.
  const frame = err as { fields?: { replyCode?: number; replyText?: string; classId?: number; methodId?: number } };
  if (!(err instanceof Error) && typeof frame?.fields?.replyCode === 'number') {
    const { replyCode, replyText = '', classId, methodId } = frame.fields;
    return { code: replyCode, text: replyText, classId, methodId, message: `${replyCode} ${replyText}` };
  }
  if (!(err instanceof Error)) throw new Error(`expected an Error, got ${String(err)}`);
  const e = err as Error & { code?: unknown; classId?: number; methodId?: number };
  // amqplib: '... closed by server: 404 (NOT-FOUND) with message "NOT_FOUND - ..."'
  const m = /(\d{3}) \([A-Z-]+\) with message "([\s\S]*)"$/.exec(e.message);
  if (!m) throw new Error(`not a server close error: ${e.message}`);
  const code = typeof e.code === 'number' ? e.code : Number(m[1]);
  return { code, text: m[2] ?? '', classId: e.classId, methodId: e.methodId, message: e.message };
}

/** Awaits a promise that must reject because the server closed the channel/connection. */
export async function rejectsWithClose(p: Promise<unknown>): Promise<ServerClose> {
  try {
    await p;
  } catch (err) {
    return parseServerClose(err);
  }
  throw new Error('expected the operation to be refused by the server, but it succeeded');
}

export const DEFAULT_TIMEOUT_MS = 5000;

/** Rejects after ms unless p settles first. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

interface Watch {
  error: Error | undefined;
  isClosed: boolean;
  closed: Promise<Error | undefined>;
}
const watches = new WeakMap<object, Watch>();

/** Starts recording 'error' and 'close' on a channel or connection (idempotent). */
export function watch(emitter: Channel | Connection): Watch {
  let w = watches.get(emitter);
  if (w) return w;
  const rec: Watch = { error: undefined, isClosed: false, closed: Promise.resolve(undefined) };
  rec.closed = new Promise((resolve) => {
    emitter.on('error', (err: Error) => {
      rec.error ??= err;
    });
    emitter.once('close', (err?: Error) => {
      rec.isClosed = true;
      resolve(rec.error ?? err);
    });
  });
  watches.set(emitter, rec);
  w = rec;
  return w;
}

/** Waits until the server closes the channel/connection and returns the close reason. */
export async function serverClose(emitter: Channel | Connection, ms = DEFAULT_TIMEOUT_MS): Promise<ServerClose> {
  const err = await withTimeout(watch(emitter).closed, ms, 'the server to close');
  if (!err) throw new Error('closed without a server error');
  return parseServerClose(err);
}

/** True once a channel/connection has been closed (by either side). */
export function isClosed(emitter: Channel | Connection): boolean {
  return watch(emitter).isClosed;
}

// ---------------------------------------------------------------------------
// Connections

export interface ConnectOptions {
  vhost?: string;
  user?: string;
  password?: string;
  frameMax?: number;
  heartbeat?: number;
  channelMax?: number;
}

/** Builds an AMQP URL for the broker with optional credentials, vhost and tuning. */
export function brokerUrl(base: string, o: ConnectOptions = {}): string {
  const u = new URL(base);
  if (o.user !== undefined) u.username = encodeURIComponent(o.user);
  if (o.password !== undefined) u.password = encodeURIComponent(o.password);
  u.pathname = '/' + encodeURIComponent(o.vhost ?? '/');
  const q = new URLSearchParams();
  if (o.frameMax !== undefined) q.set('frameMax', String(o.frameMax));
  if (o.heartbeat !== undefined) q.set('heartbeat', String(o.heartbeat));
  if (o.channelMax !== undefined) q.set('channelMax', String(o.channelMax));
  u.search = q.toString();
  return u.toString();
}

/** amqplib's connect with error/close recording attached, so a server close never crashes the runner. */
export async function connect(url: string, o: ConnectOptions = {}): Promise<Connection> {
  const conn = await amqp.connect(brokerUrl(url, o));
  watch(conn);
  return conn;
}

/** Opens a channel with error/close recording attached. */
export async function openChannel(conn: Connection): Promise<Channel> {
  const ch = await conn.createChannel();
  watch(ch);
  return ch;
}

export async function openConfirmChannel(conn: Connection): Promise<ConfirmChannel> {
  const ch = await conn.createConfirmChannel();
  watch(ch);
  return ch;
}

/** Closes quietly: already-closed channels/connections are fine. */
export async function closeQuietly(x: Channel | Connection): Promise<void> {
  if (isClosed(x)) return;
  try {
    await withTimeout(x.close(), DEFAULT_TIMEOUT_MS, 'close');
  } catch {
    // already closing or closed by the server
  }
}

/** The server properties sent in connection.start. */
export function serverProperties(conn: Connection): Record<string, unknown> {
  return (conn as unknown as { connection: { serverProperties: Record<string, unknown> } }).connection.serverProperties;
}

/** The values amqplib settled on after connection.tune. */
export function tuned(conn: Connection): { frameMax: number; channelMax: number; heartbeat: number } {
  const c = (conn as unknown as { connection: { frameMax: number; channelMax: number; heartbeat: number } }).connection;
  return { frameMax: c.frameMax, channelMax: c.channelMax, heartbeat: c.heartbeat };
}

// ---------------------------------------------------------------------------
// Per-test context

/** Tracks the connections and entities of one test and releases them afterwards. */
export class Ctx {
  private readonly connections: Connection[] = [];
  private readonly queues = new Set<string>();
  private readonly exchanges = new Set<string>();
  private main: Connection | undefined;

  constructor(readonly broker: TestBroker) {}

  get url(): string {
    return this.broker.url;
  }

  /** A new tracked connection. */
  async connect(o: ConnectOptions = {}): Promise<Connection> {
    const conn = await connect(this.url, o);
    this.connections.push(conn);
    return conn;
  }

  /** The test's default connection (opened on first use). */
  async connection(): Promise<Connection> {
    this.main ??= await this.connect();
    return this.main;
  }

  async channel(conn?: Connection): Promise<Channel> {
    return openChannel(conn ?? (await this.connection()));
  }

  async confirmChannel(conn?: Connection): Promise<ConfirmChannel> {
    return openConfirmChannel(conn ?? (await this.connection()));
  }

  /** A fresh unique queue name that will be deleted after the test (not declared). */
  queueName(prefix = 'q'): string {
    const name = uniq(prefix);
    this.queues.add(name);
    return name;
  }

  /** A fresh unique exchange name that will be deleted after the test (not declared). */
  exchangeName(prefix = 'x'): string {
    const name = uniq(prefix);
    this.exchanges.add(name);
    return name;
  }

  /** Registers an existing (e.g. server-named) queue for deletion. */
  trackQueue(name: string): string {
    this.queues.add(name);
    return name;
  }

  trackExchange(name: string): string {
    this.exchanges.add(name);
    return name;
  }

  /** Declares a fresh non-durable queue on a throwaway channel and returns its name. */
  async queue(options: Options.AssertQueue = { durable: false }, prefix = 'q'): Promise<string> {
    const name = this.queueName(prefix);
    const ch = await this.channel();
    await ch.assertQueue(name, options);
    await ch.close();
    return name;
  }

  /** Declares a fresh exchange on a throwaway channel and returns its name. */
  async exchange(type: string, options: Options.AssertExchange = { durable: false }, prefix = 'x'): Promise<string> {
    const name = this.exchangeName(prefix);
    const ch = await this.channel();
    await ch.assertExchange(name, type, options);
    await ch.close();
    return name;
  }

  async cleanup(): Promise<void> {
    for (const conn of this.connections.reverse()) await closeQuietly(conn);
    if (this.queues.size === 0 && this.exchanges.size === 0) return;
    const conn = await connect(this.url);
    try {
      let ch = await openChannel(conn);
      const drop = async (fn: (c: Channel) => Promise<unknown>): Promise<void> => {
        try {
          await fn(ch);
        } catch {
          ch = await openChannel(conn);
        }
      };
      for (const q of this.queues) await drop((c) => c.deleteQueue(q));
      for (const x of this.exchanges) await drop((c) => c.deleteExchange(x));
    } finally {
      await closeQuietly(conn);
    }
  }
}

// ---------------------------------------------------------------------------
// Receiving messages without sleeping

/** Collects deliveries from a consumer and lets a test wait for N of them. */
export class Collector<M = ConsumeMessage> {
  readonly messages: M[] = [];
  cancelled = false;
  private waiters: Array<() => void> = [];

  /** Other collectors that also receive everything pushed here (e.g. one sink for several consumers). */
  readonly forwardTo: Collector<M>[] = [];

  push(m: M): void {
    this.messages.push(m);
    this.wake();
    for (const f of this.forwardTo) f.push(m);
  }

  markCancelled(): void {
    this.cancelled = true;
    this.wake();
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /** Resolves once cond() holds; fails the test after ms. */
  until(cond: () => boolean, ms = DEFAULT_TIMEOUT_MS, what = 'condition'): Promise<void> {
    if (cond()) return Promise.resolve();
    const p = new Promise<void>((resolve) => {
      const check = (): void => {
        if (cond()) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
    return withTimeout(p, ms, what);
  }

  /** Waits until at least n messages have arrived and returns the first n. */
  async waitFor(n: number, ms = DEFAULT_TIMEOUT_MS): Promise<M[]> {
    await this.until(() => this.messages.length >= n, ms, `${n} message(s), got ${this.messages.length}`);
    return this.messages.slice(0, n);
  }

  /** Waits for the server to cancel the consumer (basic.cancel). */
  async waitCancelled(ms = DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.until(() => this.cancelled, ms, 'server-sent basic.cancel');
  }
}

export interface Consumer extends Collector {
  consumerTag: string;
}

/** basic.consume into a Collector; deliveries are also pushed into `sink` when given. */
export async function consume(
  ch: Channel,
  queue: string,
  options: Options.Consume = {},
  sink?: Collector,
): Promise<Consumer> {
  const c = new Collector();
  if (sink) c.forwardTo.push(sink);
  const ok = await ch.consume(
    queue,
    (m) => {
      if (m === null) c.markCancelled();
      else c.push(m);
    },
    options,
  );
  return Object.assign(c, { consumerTag: ok.consumerTag });
}

/** A message bounced back with basic.return. */
export interface ReturnedMessage extends Message {
  fields: Message['fields'] & { replyCode: number; replyText: string };
}

/** Collects basic.return messages of a channel. */
export function collectReturns(ch: Channel): Collector<ReturnedMessage> {
  const c = new Collector<ReturnedMessage>();
  ch.on('return', (m: ReturnedMessage) => c.push(m));
  return c;
}

/** Drains a queue with basic.get (no-ack) and returns the bodies as strings. */
export async function drain(ch: Channel, queue: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const m = await ch.get(queue, { noAck: true });
    if (m === false) return out;
    out.push(m.content.toString());
  }
}

/** Publishes on a confirm channel and waits until the broker confirmed everything. */
export async function publishConfirmed(
  ch: ConfirmChannel,
  exchange: string,
  routingKey: string,
  body: string | Buffer,
  options: Options.Publish = {},
): Promise<void> {
  ch.publish(exchange, routingKey, typeof body === 'string' ? Buffer.from(body) : body, options);
  await withTimeout(ch.waitForConfirms(), DEFAULT_TIMEOUT_MS, 'publisher confirms');
}

/** Message count of a queue via passive declare. */
export async function messageCount(ch: Channel, queue: string): Promise<number> {
  return (await ch.checkQueue(queue)).messageCount;
}

export type { GetMessage };

// ---------------------------------------------------------------------------
// Raw AMQP 0-9-1 client for malformed-traffic tests

export const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
export const FRAME_END = 0xce;

export interface RawFrame {
  type: number;
  channel: number;
  payload: Buffer;
}

export interface RawMethod {
  classId: number;
  methodId: number;
  args: Buffer;
}

export interface RawHandshakeOptions {
  user?: string;
  password?: string;
  /** Sent in tune-ok; defaults to the server's proposal. */
  frameMax?: number;
  channelMax?: number;
  /** Sent in tune-ok; defaults to 0 (no heartbeats). */
  heartbeat?: number;
  vhost?: string;
  /** Client capabilities advertised in start-ok's client-properties. */
  capabilities?: Record<string, boolean>;
}

export interface RawClose {
  channel: number;
  classId: number;
  methodId: number;
  replyCode: number;
  replyText: string;
  failingClassId: number;
  failingMethodId: number;
}

export function shortstr(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

export function longstr(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

export function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export const EMPTY_TABLE = u32(0);

/** Wraps already-encoded field-table entries with their length prefix. */
export function table(entries: Buffer): Buffer {
  return Buffer.concat([u32(entries.length), entries]);
}

/** basic.publish + content header + body frames, split at frameMax. */
export function publishFrames(
  channel: number,
  o: { exchange?: string; routingKey?: string; mandatory?: boolean; immediate?: boolean; body?: Buffer; frameMax?: number },
): Buffer {
  const body = o.body ?? Buffer.alloc(0);
  const flags = (o.mandatory ? 1 : 0) | (o.immediate ? 2 : 0);
  const method = methodFrame(channel, 60, 40, u16(0), shortstr(o.exchange ?? ''), shortstr(o.routingKey ?? ''), Buffer.from([flags]));
  const size = Buffer.alloc(8);
  size.writeBigUInt64BE(BigInt(body.length));
  const header = encodeFrame(2, channel, Buffer.concat([u16(60), u16(0), size, u16(0)]));
  const max = (o.frameMax ?? 131072) - 8;
  const bodies: Buffer[] = [];
  for (let off = 0; off < body.length; off += max) bodies.push(encodeFrame(3, channel, body.subarray(off, off + max)));
  return Buffer.concat([method, header, ...bodies]);
}

export function encodeFrame(type: number, channel: number, payload: Buffer, end = FRAME_END): Buffer {
  const head = Buffer.alloc(7);
  head.writeUInt8(type, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([end])]);
}

export function methodFrame(channel: number, classId: number, methodId: number, ...args: Buffer[]): Buffer {
  return encodeFrame(1, channel, Buffer.concat([u16(classId), u16(methodId), ...args]));
}

/** A byte-level AMQP client: reads whole frames and lets a test send anything. */
export class RawClient {
  private buf = Buffer.alloc(0);
  private ended = false;
  private waiters: Array<() => void> = [];
  readonly endedPromise: Promise<void>;
  tune: { channelMax: number; frameMax: number; heartbeat: number } | undefined;
  start: { versionMajor: number; versionMinor: number; mechanisms: string; locales: string } | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.endedPromise = new Promise((resolve) => {
      const done = (): void => {
        this.ended = true;
        this.wake();
        resolve();
      };
      socket.once('end', done);
      socket.once('close', done);
    });
    socket.on('error', () => {
      /* reported through 'close' */
    });
  }

  static async connect(host: string, port: number): Promise<RawClient> {
    const socket = net.connect({ host, port });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      DEFAULT_TIMEOUT_MS,
      'tcp connect',
    );
    return new RawClient(socket);
  }

  /** Connects and completes the handshake up to connection.open-ok on vhost '/'. */
  static async open(broker: TestBroker, o: RawHandshakeOptions = {}): Promise<RawClient> {
    const c = await RawClient.connect(broker.host, broker.port);
    await c.handshake(o);
    return c;
  }

  private wake(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  private async until(cond: () => boolean, what: string, ms = DEFAULT_TIMEOUT_MS): Promise<void> {
    const p = new Promise<void>((resolve) => {
      const check = (): void => {
        if (cond()) resolve();
        else this.waiters.push(check);
      };
      check();
    });
    await withTimeout(p, ms, what);
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Reads exactly n raw bytes (or fewer if the socket ends first). */
  async readBytes(n: number): Promise<Buffer> {
    await this.until(() => this.buf.length >= n || this.ended, `${n} bytes`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(out.length);
    return Buffer.from(out);
  }

  /** Everything the server sends until it closes the socket. */
  async readUntilEnd(ms = DEFAULT_TIMEOUT_MS): Promise<Buffer> {
    await withTimeout(this.endedPromise, ms, 'the server to close the socket');
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }

  /** The next frame, or null if the socket ended. Heartbeats are returned too. */
  async readFrame(ms = DEFAULT_TIMEOUT_MS): Promise<RawFrame | null> {
    const complete = (): boolean => this.buf.length >= 7 && this.buf.length >= 8 + this.buf.readUInt32BE(3);
    await this.until(() => complete() || this.ended, 'a frame', ms);
    if (!complete()) return null;
    const size = this.buf.readUInt32BE(3);
    const frame: RawFrame = {
      type: this.buf.readUInt8(0),
      channel: this.buf.readUInt16BE(1),
      payload: Buffer.from(this.buf.subarray(7, 7 + size)),
    };
    if (this.buf[7 + size] !== FRAME_END) throw new Error('server sent a bad frame end');
    this.buf = this.buf.subarray(8 + size);
    return frame;
  }

  /** The next method frame (skipping heartbeats); throws if something else arrives. */
  async readMethod(ms = DEFAULT_TIMEOUT_MS): Promise<RawMethod & { channel: number }> {
    for (;;) {
      const f = await this.readFrame(ms);
      if (!f) throw new Error('socket closed while waiting for a method');
      if (f.type === 8) continue;
      if (f.type !== 1) throw new Error(`expected a method frame, got type ${f.type}`);
      return {
        channel: f.channel,
        classId: f.payload.readUInt16BE(0),
        methodId: f.payload.readUInt16BE(2),
        args: f.payload.subarray(4),
      };
    }
  }

  async expectMethod(classId: number, methodId: number): Promise<RawMethod & { channel: number }> {
    const m = await this.readMethod();
    if (m.classId !== classId || m.methodId !== methodId) {
      const close = m.classId === 10 && m.methodId === 50 ? ` (${parseClose(m.channel, m).replyText})` : '';
      throw new Error(`expected method ${classId}.${methodId}, got ${m.classId}.${m.methodId}${close}`);
    }
    return m;
  }

  /** Sends the protocol header and reads connection.start. */
  async greet(): Promise<void> {
    this.write(PROTOCOL_HEADER);
    const start = await this.expectMethod(10, 10);
    let off = 0;
    const a = start.args;
    const versionMajor = a.readUInt8(off++);
    const versionMinor = a.readUInt8(off++);
    off += 4 + a.readUInt32BE(off); // server-properties table
    const mechLen = a.readUInt32BE(off);
    const mechanisms = a.subarray(off + 4, off + 4 + mechLen).toString();
    off += 4 + mechLen;
    const locLen = a.readUInt32BE(off);
    const locales = a.subarray(off + 4, off + 4 + locLen).toString();
    this.start = { versionMajor, versionMinor, mechanisms, locales };
  }

  /** Sends connection.start-ok with PLAIN credentials. */
  sendStartOk(o: RawHandshakeOptions = {}): void {
    const user = o.user ?? 'guest';
    const password = o.password ?? 'guest';
    const caps = Object.entries(o.capabilities ?? {}).map(([k, v]) =>
      Buffer.concat([shortstr(k), Buffer.from([0x74, v ? 1 : 0])]),
    );
    const props = caps.length === 0 ? EMPTY_TABLE : table(Buffer.concat([shortstr('capabilities'), Buffer.from([0x46]), table(Buffer.concat(caps))]));
    this.write(
      methodFrame(0, 10, 11, props, shortstr('PLAIN'), longstr(`\u0000${user}\u0000${password}`), shortstr('en_US')),
    );
  }

  /** start-ok (PLAIN), reads tune, sends tune-ok with the given (or the server's) values. */
  async login(o: RawHandshakeOptions = {}): Promise<void> {
    this.sendStartOk(o);
    const tune = await this.expectMethod(10, 30);
    this.tune = {
      channelMax: tune.args.readUInt16BE(0),
      frameMax: tune.args.readUInt32BE(2),
      heartbeat: tune.args.readUInt16BE(6),
    };
    const frameMax = o.frameMax ?? this.tune.frameMax;
    const channelMax = o.channelMax ?? this.tune.channelMax;
    this.write(methodFrame(0, 10, 31, u16(channelMax), u32(frameMax), u16(o.heartbeat ?? 0)));
  }

  /** Sends connection.open for a vhost (no wait). */
  sendOpen(vhost = '/'): void {
    this.write(methodFrame(0, 10, 40, shortstr(vhost), shortstr(''), Buffer.from([0])));
  }

  /** The whole handshake up to connection.open-ok. */
  async handshake(o: RawHandshakeOptions = {}): Promise<void> {
    await this.greet();
    await this.login(o);
    this.sendOpen(o.vhost ?? '/');
    await this.expectMethod(10, 41);
  }

  /** Opens channel n (channel.open / open-ok). */
  async openChannel(n: number): Promise<void> {
    this.write(methodFrame(n, 20, 10, shortstr('')));
    const m = await this.expectMethod(20, 11);
    if (m.channel !== n) throw new Error(`open-ok on channel ${m.channel}`);
  }

  /** Reads until a connection.close or channel.close arrives and returns it. */
  async expectClose(ms = DEFAULT_TIMEOUT_MS): Promise<RawClose> {
    for (;;) {
      const m = await this.readMethod(ms);
      if ((m.classId === 10 && m.methodId === 50) || (m.classId === 20 && m.methodId === 40)) {
        return parseClose(m.channel, m);
      }
    }
  }

  /** Answers a server connection.close. */
  sendCloseOk(): void {
    this.write(methodFrame(0, 10, 51));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function parseClose(channel: number, m: RawMethod): RawClose {
  const a = m.args;
  const replyCode = a.readUInt16BE(0);
  const textLen = a.readUInt8(2);
  const replyText = a.subarray(3, 3 + textLen).toString('utf8');
  return {
    channel,
    classId: m.classId,
    methodId: m.methodId,
    replyCode,
    replyText,
    failingClassId: a.readUInt16BE(3 + textLen),
    failingMethodId: a.readUInt16BE(5 + textLen),
  };
}

// ---------------------------------------------------------------------------
// Warren-only behaviour, time and policies

/** True when the suite runs against the embedded Warren (no WARREN_TEST_URL). */
export function isWarren(): boolean {
  return process.env.WARREN_TEST_URL === undefined;
}

/**
 * Skips the test unless it runs against Warren, with the reason RabbitMQ differs.
 * Returns true when the test should go on.
 */
export function warrenOnly(t: NodeTestContext, reason: string): boolean {
  if (isWarren()) return true;
  t.skip(reason);
  return false;
}

/**
 * Waits a fixed time. Only for time-based behaviour (TTL, expiry, delays) where
 * no event exists to wait for; never as a stand-in for synchronisation.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A policy as RabbitMQ's set_policy takes it. */
export interface PolicySpec {
  name: string;
  pattern: string;
  definition: Record<string, unknown>;
  applyTo?: 'queues' | 'exchanges' | 'all';
  priority?: number;
  vhost?: string;
}

/** Policies set through setPolicy and not cleared yet (vhost NUL name), so clearing twice is free. */
const activePolicies = new Set<string>();

function rabbitmqctl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', args, { timeout: 30_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${err.message} ${stderr}`));
      else resolve();
    });
  });
}

/**
 * Sets a policy: through the embedded Warren's policy store, or with rabbitmqctl
 * for an external broker (which must then be a local RabbitMQ).
 */
export async function setPolicy(broker: TestBroker, p: PolicySpec): Promise<void> {
  const vhost = p.vhost ?? '/';
  activePolicies.add(`${vhost}\u0000${p.name}`);
  const applyTo = p.applyTo ?? 'queues';
  const priority = p.priority ?? 0;
  if (broker.warren) {
    broker.warren.broker.policies.set('policy', { vhost, name: p.name, pattern: p.pattern, applyTo, priority, definition: p.definition });
    return;
  }
  await rabbitmqctl(['set_policy', '-p', vhost, p.name, p.pattern, JSON.stringify(p.definition), '--apply-to', applyTo, '--priority', String(priority)]);
}

/** Clears a policy set with setPolicy; clearing one that is not set (or already cleared) does nothing. */
export async function clearPolicy(broker: TestBroker, name: string, vhost = '/'): Promise<void> {
  if (!activePolicies.delete(`${vhost}\u0000${name}`)) return;
  if (broker.warren) {
    broker.warren.broker.policies.delete('policy', vhost, name);
    return;
  }
  try {
    await rabbitmqctl(['clear_policy', '-p', vhost, name]);
  } catch {
    // already gone
  }
}

/** Sets a policy and clears it after the test. */
export async function withPolicy(t: NodeTestContext, broker: TestBroker, p: PolicySpec): Promise<void> {
  t.after(() => clearPolicy(broker, p.name, p.vhost));
  await setPolicy(broker, p);
}

/** Polls cond() until it holds, for state the broker changes without telling the client (e.g. policy re-application). */
export async function eventually(cond: () => Promise<boolean>, ms = DEFAULT_TIMEOUT_MS, what = 'condition', every = 20): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------------------
// Dead-lettering

/** A fanout dead-letter exchange with one queue bound and consumed (no-ack) into a Collector. */
export interface DeadLetterSink {
  exchange: string;
  queue: string;
  received: Consumer;
}

/** Declares a fanout exchange + queue and consumes it, so dead-lettered messages can be awaited. */
export async function deadLetterSink(c: Ctx, type = 'fanout', bindingKey = ''): Promise<DeadLetterSink> {
  const exchange = await c.exchange(type);
  const queue = await c.queue();
  const ch = await c.channel();
  await ch.bindQueue(queue, exchange, bindingKey);
  const received = await consume(ch, queue, { noAck: true });
  return { exchange, queue, received };
}

/** The x-death header of a message as amqplib decodes it (an array of tables). */
export function xDeath(m: Message): Array<Record<string, unknown>> {
  const h = m.properties.headers?.['x-death'];
  if (!Array.isArray(h)) throw new Error(`no x-death header in ${JSON.stringify(m.properties.headers)}`);
  return h as unknown as Array<Record<string, unknown>>;
}

/** Key order of an x-death entry written by a message's first death (RabbitMQ 3.10). */
export const FIRST_DEATH_KEYS = ['count', 'reason', 'queue', 'time', 'exchange', 'routing-keys'];

/** Seconds since the epoch, for checking AMQP timestamps against a test's time window. */
export function epochSeconds(ms = Date.now()): number {
  return Math.floor(ms / 1000);
}

/**
 * Checks an x-death 'time' (amqplib decodes an AMQP timestamp as {'!': 'timestamp', value: seconds})
 * lies within [fromMs, now] with a second of slack either side.
 */
export function assertDeathTime(time: unknown, fromMs: number): void {
  const t = time as { '!'?: string; value?: number };
  if (t?.['!'] !== 'timestamp' || typeof t.value !== 'number') throw new Error(`x-death time is not a timestamp: ${JSON.stringify(time)}`);
  const lo = epochSeconds(fromMs) - 1;
  const hi = epochSeconds() + 1;
  if (t.value < lo || t.value > hi) throw new Error(`x-death time ${t.value} outside [${lo}, ${hi}]`);
}

/** An x-death entry with its time replaced by a marker (after checking it), for deepEqual. */
export function deathWithoutTime(entry: Record<string, unknown>, fromMs: number): Record<string, unknown> {
  assertDeathTime(entry.time, fromMs);
  return { ...entry, time: '<checked>' };
}

/**
 * Starts an extra embedded Warren with its own configuration (e.g. consumerTimeoutAction),
 * for Warren-only tests; stopped after the test.
 */
export async function startExtraWarren(t: NodeTestContext, config: Partial<import('../../src/index').Config>): Promise<TestBroker> {
  const { startBroker } = await import('../../src/index');
  const handle = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', ...config });
  t.after(() => handle.close());
  return { url: handle.url, host: handle.host, port: handle.port, external: false, warren: handle, close: () => handle.close() };
}
