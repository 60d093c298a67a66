// One channel of a cluster link (see link-client.ts). Synchronous methods are pipelined: each is
// written at once and its reply settles the oldest pending entry, which keeps them in order with
// the publishes and acks written around them (queueing sends until the previous reply, as
// amqplib does, would let a publish overtake an earlier declare).

import type { FieldTable } from '../protocol/field-table';
import { FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEADER_SIZE, FRAME_METHOD } from '../protocol/frame-reader';
import { M, Method, MethodOf, decodeMethod, encodeMethodFrame } from '../protocol/spec';

const CLASS_BASIC = 60;
/** Bodies up to this size are copied into the publish's single buffer; bigger ones are written as slices. */
const COPY_BODY_MAX = 64 * 1024;

/** The peer closed the channel or the connection (channel.close / connection.close). */
export class LinkClosedError extends Error {
  constructor(
    readonly code: number,
    readonly replyText: string,
    readonly classId: number,
    readonly methodId: number,
    readonly scope: 'channel' | 'connection',
  ) {
    super(`${scope} closed by peer: ${code} ${replyText}`);
    this.name = 'LinkClosedError';
  }
}

/** The peer broke the protocol; the connection cannot be trusted any further. */
export class LinkProtocolError extends Error {
  override name = 'LinkProtocolError';
}

export interface LinkDelivery {
  deliveryTag: number;
  redelivered: boolean;
  exchange: string;
  routingKey: string;
  /** Property flags and list, byte-for-byte as in the content header (Warren's msg.rawProperties). */
  properties: Buffer;
  body: Buffer;
  /** basic.get-ok only. */
  messageCount?: number;
}

export interface LinkReturn {
  replyCode: number;
  replyText: string;
  exchange: string;
  routingKey: string;
  properties: Buffer;
  body: Buffer;
}

/** What a channel needs from its connection. */
export interface LinkChannelHost {
  readonly frameMax: number;
  write(chunk: Buffer): void;
  channelGone(ch: LinkChannel): void;
}

/** User callbacks run inside socket event handlers, where a throw would crash the process. */
export function safely(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    process.emitWarning(`cluster link callback threw: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  }
}

/** Replies the peer may send to synchronous requests; everything else it sends is asynchronous. */
const REPLY_TO: ReadonlyMap<number, number> = new Map<number, number>([
  [M.ExchangeDeclare, M.ExchangeDeclareOk],
  [M.ExchangeDelete, M.ExchangeDeleteOk],
  [M.ExchangeBind, M.ExchangeBindOk],
  [M.ExchangeUnbind, M.ExchangeUnbindOk],
  [M.QueueDeclare, M.QueueDeclareOk],
  [M.QueueBind, M.QueueBindOk],
  [M.QueuePurge, M.QueuePurgeOk],
  [M.QueueDelete, M.QueueDeleteOk],
  [M.QueueUnbind, M.QueueUnbindOk],
  [M.BasicQos, M.BasicQosOk],
  [M.BasicRecover, M.BasicRecoverOk],
  [M.ConfirmSelect, M.ConfirmSelectOk],
  [M.TxSelect, M.TxSelectOk],
  [M.TxCommit, M.TxCommitOk],
  [M.TxRollback, M.TxRollbackOk],
]);
const REPLIES = new Set<number>([
  ...REPLY_TO.values(),
  M.ChannelOpenOk, M.ChannelCloseOk, M.BasicConsumeOk, M.BasicCancelOk, M.BasicGetEmpty,
]);

interface Pending {
  expect: number;
  /** A second acceptable reply (basic.get-empty next to basic.get-ok), or -1. */
  alt: number;
  resolve(m: Method, d: LinkDelivery | null): void;
  reject(err: Error): void;
}

interface Consumer {
  onDelivery(d: LinkDelivery): void;
  onCancel(): void;
}

/** A content-bearing method whose header and body frames are still arriving. */
interface Incoming {
  m: MethodOf<'BasicDeliver'> | MethodOf<'BasicGetOk'> | MethodOf<'BasicReturn'>;
  size: number;
  props: Buffer | null;
  chunks: Buffer[];
  got: number;
}

const RESOLVED = Promise.resolve();

export class LinkChannel {
  onClose: ((err: LinkClosedError | Error) => void) | null = null;
  onReturn: ((r: LinkReturn) => void) | null = null;

  private pending: Pending[] = [];
  private readonly consumers = new Map<string, Consumer>();
  private incoming: Incoming | null = null;
  private confirming = false;
  private publishSeq = 0;
  /** Insertion order is seq order, which multiple-acks rely on. */
  private readonly unconfirmed = new Map<number, { resolve(): void; reject(err: Error): void }>();
  /** Set once the channel is unusable; later calls fail with it. */
  private closeErr: Error | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly host: LinkChannelHost,
    readonly id: number,
  ) {}

  get closed(): boolean {
    return this.closeErr !== null;
  }

  /** Sends channel.open; called once by LinkConnection.openChannel. */
  open(): Promise<void> {
    return this.call({ key: M.ChannelOpen }, M.ChannelOpenOk, -1, () => undefined);
  }

  confirmSelect(): Promise<void> {
    // Set at send time: the peer counts from the first publish written after confirm.select.
    const p = this.call({ key: M.ConfirmSelect, noWait: false }, M.ConfirmSelectOk, -1, () => undefined);
    this.confirming = true;
    return p;
  }

  publish(exchange: string, routingKey: string, mandatory: boolean, properties: Buffer, body: Buffer): Promise<void> {
    if (this.closeErr !== null) return Promise.reject(this.closeErr);
    if (this.closing !== null) return Promise.reject(new Error('channel is closing'));
    let frames: Buffer[];
    try {
      if (properties.length < 2) throw new RangeError('properties must hold at least the 16-bit property flags');
      frames = publishFrames(this.id, this.host.frameMax, exchange, routingKey, mandatory, properties, body);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    for (const f of frames) this.host.write(f);
    if (!this.confirming) return RESOLVED;
    const seq = ++this.publishSeq;
    return new Promise((resolve, reject) => this.unconfirmed.set(seq, { resolve, reject }));
  }

  qos(prefetchCount: number, global: boolean): Promise<void> {
    return this.call({ key: M.BasicQos, prefetchSize: 0, prefetchCount, global }, M.BasicQosOk, -1, () => undefined);
  }

  consume(
    queue: string,
    o: { consumerTag?: string; noAck: boolean; exclusive: boolean; arguments?: FieldTable },
    onDelivery: (d: LinkDelivery) => void,
    onCancel: () => void,
  ): Promise<string> {
    const m: Method = {
      key: M.BasicConsume, queue, consumerTag: o.consumerTag ?? '', noLocal: false, noAck: o.noAck,
      exclusive: o.exclusive, noWait: false, arguments: o.arguments ?? [],
    };
    // Registered when consume-ok is read, not when the promise settles: deliveries can follow
    // in the same socket chunk, before any continuation runs.
    return this.call(m, M.BasicConsumeOk, -1, (r) => {
      const tag = (r as MethodOf<'BasicConsumeOk'>).consumerTag;
      this.consumers.set(tag, { onDelivery, onCancel });
      return tag;
    });
  }

  /** Deliveries that arrive before cancel-ok still reach the consumer, so they can be settled. */
  cancel(consumerTag: string): Promise<void> {
    return this.call({ key: M.BasicCancel, consumerTag, noWait: false }, M.BasicCancelOk, -1, () => {
      this.consumers.delete(consumerTag);
    });
  }

  get(queue: string, noAck: boolean): Promise<LinkDelivery | null> {
    return this.call({ key: M.BasicGet, queue, noAck }, M.BasicGetOk, M.BasicGetEmpty, (_m, d) => d);
  }

  ack(deliveryTag: number, multiple: boolean): void {
    this.send({ key: M.BasicAck, deliveryTag, multiple });
  }

  nack(deliveryTag: number, multiple: boolean, requeue: boolean): void {
    this.send({ key: M.BasicNack, deliveryTag, multiple, requeue });
  }

  reject(deliveryTag: number, requeue: boolean): void {
    this.send({ key: M.BasicReject, deliveryTag, requeue });
  }

  recover(): Promise<void> {
    return this.call({ key: M.BasicRecover, requeue: true }, M.BasicRecoverOk, -1, () => undefined);
  }

  /** Any synchronous method from REPLY_TO (declare, bind, purge, delete, tx...) and its reply. */
  rpc(method: Method): Promise<Method> {
    const expect = REPLY_TO.get(method.key);
    if (expect === undefined) return Promise.reject(new TypeError(`rpc: ${method.key >>> 16}/${method.key & 0xffff} has no reply here; use the dedicated method`));
    if ('noWait' in method && method.noWait) return Promise.reject(new TypeError('rpc: noWait methods have no reply'));
    if (method.key === M.ConfirmSelect) this.confirming = true;
    return this.call(method, expect, -1, (r) => r);
  }

  /** Idempotent; resolves once the peer confirmed, or the channel died some other way. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    if (this.closeErr !== null) return RESOLVED;
    const m: Method = { key: M.ChannelClose, replyCode: 200, replyText: 'Goodbye', classId: 0, methodId: 0 };
    this.closing = this.call(m, M.ChannelCloseOk, -1, () => this.finish(new Error('channel closed'), false)).catch(() => undefined);
    return this.closing;
  }

  // ---- from the connection ---------------------------------------------------------------

  /** Throws LinkProtocolError (or the decoder's error) when the peer breaks the protocol. */
  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    if (type === FRAME_METHOD) this.onMethod(decodeMethod(buf, start, end));
    else if (type === FRAME_HEADER) this.onHeader(buf, start, end);
    else if (type === FRAME_BODY) this.onBody(buf, start, end);
    else throw new LinkProtocolError(`frame type ${type} on channel ${this.id}`);
  }

  /** The connection is gone: everything waiting on this channel fails with `err`. */
  connectionLost(err: Error): void {
    this.finish(err, true);
  }

  // ---- internals -------------------------------------------------------------------------

  private send(m: Method): void {
    if (this.closeErr === null && this.closing === null) this.host.write(encodeMethodFrame(this.id, m));
  }

  /** Writes a synchronous method; `done` runs synchronously when its reply is read. */
  private call<T>(m: Method, expect: number, alt: number, done: (r: Method, d: LinkDelivery | null) => T): Promise<T> {
    if (this.closeErr !== null) return Promise.reject(this.closeErr);
    // Nothing may queue behind channel.close: its reply must stay the last one pending.
    if (this.closing !== null) return Promise.reject(new Error('channel is closing'));
    return new Promise<T>((resolve, reject) => {
      const frame = encodeMethodFrame(this.id, m);
      this.pending.push({
        expect,
        alt,
        reject,
        resolve: (r, d) => {
          try {
            resolve(done(r, d));
          } catch (err) {
            reject(err as Error);
          }
        },
      });
      this.host.write(frame);
    });
  }

  private onMethod(m: Method): void {
    if (this.incoming !== null) throw new LinkProtocolError(`method ${m.key >>> 16}/${m.key & 0xffff} inside content on channel ${this.id}`);
    switch (m.key) {
      case M.BasicDeliver:
      case M.BasicReturn:
        this.incoming = { m, size: 0, props: null, chunks: [], got: 0 };
        return;
      case M.BasicGetOk:
        if (this.pending[0]?.expect !== M.BasicGetOk) throw new LinkProtocolError('unexpected basic.get-ok');
        this.incoming = { m, size: 0, props: null, chunks: [], got: 0 };
        return;
      case M.BasicAck:
        this.settle(m.deliveryTag, m.multiple, null);
        return;
      case M.BasicNack:
        this.settle(m.deliveryTag, m.multiple, new Error('nacked'));
        return;
      case M.BasicCancel: {
        const c = this.consumers.get(m.consumerTag);
        this.consumers.delete(m.consumerTag);
        if (!m.noWait) this.send({ key: M.BasicCancelOk, consumerTag: m.consumerTag });
        if (c !== undefined) safely(() => c.onCancel());
        return;
      }
      case M.ChannelFlow:
        // Warren never throttles this way; acknowledging keeps a peer that does from waiting.
        this.send({ key: M.ChannelFlowOk, active: m.active });
        return;
      case M.ChannelClose:
        this.onPeerClose(m);
        return;
    }
    if (!REPLIES.has(m.key)) throw new LinkProtocolError(`unexpected method ${m.key >>> 16}/${m.key & 0xffff} on channel ${this.id}`);
    this.reply(m, null);
  }

  private reply(m: Method, d: LinkDelivery | null): void {
    const head = this.pending.shift();
    if (head === undefined || (head.expect !== m.key && head.alt !== m.key)) {
      throw new LinkProtocolError(`reply ${m.key >>> 16}/${m.key & 0xffff} does not match the request on channel ${this.id}`);
    }
    head.resolve(m, d);
  }

  private onHeader(buf: Buffer, start: number, end: number): void {
    const inc = this.incoming;
    if (inc === null || inc.props !== null || end - start < 14) throw new LinkProtocolError(`unexpected content header on channel ${this.id}`);
    inc.size = buf.readUInt32BE(start + 4) * 0x1_0000_0000 + buf.readUInt32BE(start + 8);
    // The frame buffer is only valid during this call.
    inc.props = Buffer.from(buf.subarray(start + 12, end));
    if (inc.size === 0) this.complete(inc);
  }

  private onBody(buf: Buffer, start: number, end: number): void {
    const inc = this.incoming;
    if (inc === null || inc.props === null) throw new LinkProtocolError(`unexpected content body on channel ${this.id}`);
    inc.got += end - start;
    if (inc.got > inc.size) throw new LinkProtocolError(`content body longer than announced on channel ${this.id}`);
    inc.chunks.push(Buffer.from(buf.subarray(start, end)));
    if (inc.got === inc.size) this.complete(inc);
  }

  private complete(inc: Incoming): void {
    this.incoming = null;
    const properties = inc.props!;
    const body = inc.chunks.length === 1 ? inc.chunks[0]! : Buffer.concat(inc.chunks, inc.size);
    const m = inc.m;
    if (m.key === M.BasicReturn) {
      const r: LinkReturn = { replyCode: m.replyCode, replyText: m.replyText, exchange: m.exchange, routingKey: m.routingKey, properties, body };
      const cb = this.onReturn;
      if (cb !== null) safely(() => cb(r));
      return;
    }
    const d: LinkDelivery = { deliveryTag: m.deliveryTag, redelivered: m.redelivered, exchange: m.exchange, routingKey: m.routingKey, properties, body };
    if (m.key === M.BasicGetOk) {
      d.messageCount = m.messageCount;
      this.reply(m, d);
      return;
    }
    // A delivery for a consumer we no longer know (cannot happen with a conforming peer) is dropped.
    const c = this.consumers.get(m.consumerTag);
    if (c !== undefined) safely(() => c.onDelivery(d));
  }

  private settle(tag: number, multiple: boolean, err: Error | null): void {
    if (!multiple) {
      const w = this.unconfirmed.get(tag);
      if (w === undefined) return;
      this.unconfirmed.delete(tag);
      if (err === null) w.resolve();
      else w.reject(err);
      return;
    }
    for (const [seq, w] of this.unconfirmed) {
      if (seq > tag) break;
      this.unconfirmed.delete(seq);
      if (err === null) w.resolve();
      else w.reject(err);
    }
  }

  private onPeerClose(m: MethodOf<'ChannelClose'>): void {
    this.host.write(encodeMethodFrame(this.id, { key: M.ChannelCloseOk }));
    const err = new LinkClosedError(m.replyCode, m.replyText, m.classId, m.methodId, 'channel');
    if (this.closing === null) {
      this.finish(err, true);
      return;
    }
    // Both sides sent channel.close. Our close-ok is still owed by the peer, and the channel
    // number must stay taken until it arrives, or it would land on the number's next user.
    const ours = this.pending.pop()!;
    this.rejectAll(err);
    this.pending.push(ours);
  }

  private rejectAll(err: Error): void {
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) p.reject(err);
    const unconfirmed = [...this.unconfirmed.values()];
    this.unconfirmed.clear();
    for (const w of unconfirmed) w.reject(err);
  }

  private finish(err: Error, notify: boolean): void {
    if (this.closeErr !== null) return;
    this.closeErr = err;
    this.incoming = null;
    this.consumers.clear();
    this.rejectAll(err);
    this.host.channelGone(this);
    const cb = this.onClose;
    if (notify && cb !== null) safely(() => cb(err));
  }
}

/**
 * basic.publish, content header and body frames. Small messages become one buffer, so a
 * publish is one socket write; a large body is passed as slices between small frame
 * headers instead of being copied.
 */
function publishFrames(channel: number, frameMax: number, exchange: string, routingKey: string, mandatory: boolean, props: Buffer, body: Buffer): Buffer[] {
  const exLen = Buffer.byteLength(exchange);
  const rkLen = Buffer.byteLength(routingKey);
  if (exLen > 255 || rkLen > 255) throw new RangeError('exchange or routing key longer than 255 bytes');
  const methodSize = 4 + 2 + 1 + exLen + 1 + rkLen + 1;
  const headerSize = 12 + props.length;
  const maxPayload = frameMax - FRAME_HEADER_SIZE - 1;
  if (headerSize > maxPayload) throw new RangeError('content properties do not fit in one frame');
  const nBody = Math.ceil(body.length / maxPayload);
  const inline = body.length <= COPY_BODY_MAX;
  const prefix = FRAME_HEADER_SIZE + methodSize + 1 + FRAME_HEADER_SIZE + headerSize + 1;
  const buf = Buffer.allocUnsafe(prefix + (inline ? body.length + nBody * (FRAME_HEADER_SIZE + 1) : 0));
  let p = frameStart(buf, 0, FRAME_METHOD, channel, methodSize);
  p = buf.writeUInt16BE(CLASS_BASIC, p);
  p = buf.writeUInt16BE(40, p);
  p = buf.writeUInt16BE(0, p);
  buf[p] = exLen;
  p += 1 + buf.write(exchange, p + 1, 'utf8');
  buf[p] = rkLen;
  p += 1 + buf.write(routingKey, p + 1, 'utf8');
  buf[p++] = mandatory ? 1 : 0;
  buf[p++] = FRAME_END;
  p = frameStart(buf, p, FRAME_HEADER, channel, headerSize);
  p = buf.writeUInt16BE(CLASS_BASIC, p);
  p = buf.writeUInt16BE(0, p);
  p = buf.writeUInt32BE(Math.floor(body.length / 0x1_0000_0000), p);
  p = buf.writeUInt32BE(body.length >>> 0, p);
  p += props.copy(buf, p);
  buf[p++] = FRAME_END;
  if (inline) {
    for (let at = 0; at < body.length; at += maxPayload) {
      const n = Math.min(maxPayload, body.length - at);
      p = frameStart(buf, p, FRAME_BODY, channel, n);
      p += body.copy(buf, p, at, at + n);
      buf[p++] = FRAME_END;
    }
    return [buf];
  }
  const out: Buffer[] = [buf];
  for (let at = 0; at < body.length; at += maxPayload) {
    const n = Math.min(maxPayload, body.length - at);
    // The end octet of the previous frame travels with the next frame's header.
    const head = Buffer.allocUnsafe(at === 0 ? FRAME_HEADER_SIZE : FRAME_HEADER_SIZE + 1);
    let q = 0;
    if (at !== 0) head[q++] = FRAME_END;
    frameStart(head, q, FRAME_BODY, channel, n);
    out.push(head, body.subarray(at, at + n));
  }
  if (nBody > 0) out.push(Buffer.from([FRAME_END]));
  return out;
}

function frameStart(buf: Buffer, p: number, type: number, channel: number, size: number): number {
  buf[p] = type;
  buf.writeUInt16BE(channel, p + 1);
  buf.writeUInt32BE(size, p + 3);
  return p + FRAME_HEADER_SIZE;
}
