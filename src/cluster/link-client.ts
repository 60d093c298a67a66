// The cluster link: a small AMQP 0-9-1 client a Warren node uses to reach queues owned by
// another node, whose ordinary AMQP listener is the peer. Message properties travel as the raw
// bytes of the content header (Warren's msg.rawProperties), never decoded, so a forwarded
// message reaches the owner byte-for-byte as the publisher sent it.
//
// A misbehaving peer costs only this connection: every error raised while reading its frames
// destroys the connection and reaches the owner through onClose, never as an exception.

import * as net from 'node:net';
import type { FieldTable, FieldValue } from '../protocol/field-table';
import { FRAME_HEARTBEAT, FRAME_METHOD, FrameReader, FrameSink } from '../protocol/frame-reader';
import { M, Method, decodeMethod, encodeMethodFrame } from '../protocol/spec';
import { LinkChannel, LinkChannelHost, LinkClosedError, LinkProtocolError, safely } from './link-channel';

export { LinkChannel, LinkClosedError, LinkProtocolError } from './link-channel';
export type { LinkDelivery, LinkReturn } from './link-channel';

export interface LinkOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  vhost: string;
  connectionName?: string;
  /** Proposed in tune-ok; 0 disables heartbeats. Default 10. */
  heartbeatSeconds?: number;
  /** Covers TCP connect and the whole handshake. Default 3000. */
  connectTimeoutMs?: number;
}

/** The handshake method expected next. */
type Phase = 'start' | 'tune' | 'open-ok' | 'running';

const PROTOCOL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]);
const HEARTBEAT_FRAME = Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xce]);
/** Used when the server proposes 0 (no limit); the largest frame Warren proposes by default. */
const DEFAULT_FRAME_MAX = 131072;
const CLOSE_TIMEOUT_MS = 2000;
/** Silent half-intervals before the peer is declared dead: two missed heartbeats. */
const MISSED_TICKS_MAX = 4;

function bool(value: boolean): FieldValue {
  return { type: 't', value };
}

function str(value: string): FieldValue {
  return { type: 'S', value: Buffer.from(value) };
}

export class LinkConnection implements LinkChannelHost, FrameSink {
  /** Called once: null after close()/destroy(), otherwise why the connection died. */
  onClose: ((err: Error | null) => void) | null = null;
  /** connection.blocked / unblocked from the peer (its resource alarms). */
  onBlocked: ((blocked: boolean, reason: string) => void) | null = null;
  frameMax = 4096;
  channelMax = 0;
  heartbeatSeconds = 0;
  blocked = false;

  private readonly reader = new FrameReader(this);
  private readonly channels = new Map<number, LinkChannel>();
  private handshake: { resolve(): void; reject(err: Error): void } | null = null;
  /** A peer repeating a handshake method must not, e.g., start a second heartbeat timer. */
  private phase: Phase = 'start';
  private handshakeTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private received = true;
  private sent = false;
  private missedTicks = 0;
  private corked = false;
  private isClosed = false;
  private closing: Promise<void> | null = null;
  private closeOk: (() => void) | null = null;

  private constructor(
    private readonly socket: net.Socket,
    private readonly o: LinkOptions,
  ) {}

  get closed(): boolean {
    return this.isClosed;
  }

  static connect(o: LinkOptions): Promise<LinkConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: o.host, port: o.port });
      const c = new LinkConnection(socket, o);
      c.handshake = { resolve: () => resolve(c), reject };
      const ms = o.connectTimeoutMs ?? 3000;
      c.handshakeTimer = setTimeout(() => c.fail(new Error(`cluster link to ${o.host}:${o.port}: no connection.open-ok within ${ms} ms`)), ms);
      c.handshakeTimer.unref();
      socket.setNoDelay(true);
      socket.once('connect', () => c.write(PROTOCOL_HEADER));
      socket.on('data', (chunk: Buffer) => c.onData(chunk));
      socket.on('error', (err) => c.fail(err));
      socket.on('close', () => c.fail(new Error(`cluster link to ${o.host}:${o.port}: connection closed by peer`)));
    });
  }

  async openChannel(): Promise<LinkChannel> {
    if (this.isClosed || this.closing !== null) throw new Error('connection is closed');
    let id = 1;
    while (this.channels.has(id)) id++;
    if (id > this.channelMax) throw new Error(`all ${this.channelMax} channels are in use`);
    const ch = new LinkChannel(this, id);
    this.channels.set(id, ch);
    await ch.open();
    return ch;
  }

  /** connection.close, then waits for close-ok (at most 2 s) before dropping the socket. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    if (this.isClosed) return Promise.resolve();
    this.closing = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      timer.unref();
      this.closeOk = () => {
        clearTimeout(timer);
        resolve();
      };
      this.sendMethod(0, { key: M.ConnectionClose, replyCode: 200, replyText: 'Goodbye', classId: 0, methodId: 0 });
    }).then(() => this.teardown(null, new Error('connection closed')));
    return this.closing;
  }

  destroy(): void {
    this.teardown(null, new Error('connection destroyed'));
  }

  // ---- LinkChannelHost ---------------------------------------------------------------------

  /** Frames written in one tick leave in one writev; socket backpressure just buffers in Node. */
  write(chunk: Buffer): void {
    if (this.isClosed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => this.uncork());
    }
    this.sent = true;
    this.socket.write(chunk);
  }

  /** Bytes accepted but not yet sent; a forwarder can hold back while this grows. */
  get writeBacklog(): number {
    return this.socket.writableLength;
  }

  channelGone(ch: LinkChannel): void {
    if (this.channels.get(ch.id) === ch) this.channels.delete(ch.id);
  }

  // ---- reading -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.received = true;
    try {
      this.reader.push(chunk);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void {
    if (this.isClosed) return;
    if (type === FRAME_HEARTBEAT) return;
    if (channel === 0) {
      if (type !== FRAME_METHOD) throw new LinkProtocolError(`frame type ${type} on channel 0`);
      this.onConnectionMethod(decodeMethod(buf, start, end));
      return;
    }
    if (this.phase !== 'running') throw new LinkProtocolError(`frame on channel ${channel} before connection.open-ok`);
    // Frames for a channel we already forgot (closed while they were in flight) are dropped.
    this.channels.get(channel)?.onFrame(type, buf, start, end);
  }

  private onConnectionMethod(m: Method): void {
    switch (m.key) {
      case M.ConnectionStart:
        this.advance('start', 'tune');
        if (!m.mechanisms.toString().split(' ').includes('PLAIN')) throw new LinkProtocolError(`peer does not offer PLAIN (${m.mechanisms.toString()})`);
        this.sendMethod(0, {
          key: M.ConnectionStartOk,
          clientProperties: this.clientProperties(),
          mechanism: 'PLAIN',
          response: Buffer.from(`\0${this.o.user}\0${this.o.password}`),
          locale: 'en_US',
        });
        return;
      case M.ConnectionTune:
        this.advance('tune', 'open-ok');
        this.tune(m.channelMax, m.frameMax);
        return;
      case M.ConnectionOpenOk: {
        this.advance('open-ok', 'running');
        if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        const h = this.handshake;
        this.handshake = null;
        h?.resolve();
        return;
      }
      case M.ConnectionClose: {
        this.sendMethod(0, { key: M.ConnectionCloseOk });
        const err = new LinkClosedError(m.replyCode, m.replyText, m.classId, m.methodId, 'connection');
        this.teardown(err, err);
        return;
      }
      case M.ConnectionCloseOk:
        this.closeOk?.();
        return;
      case M.ConnectionBlocked:
      case M.ConnectionUnblocked: {
        this.blocked = m.key === M.ConnectionBlocked;
        const reason = m.key === M.ConnectionBlocked ? m.reason : '';
        const cb = this.onBlocked;
        if (cb !== null) safely(() => cb(this.blocked, reason));
        return;
      }
      case M.ConnectionUpdateSecret:
        this.sendMethod(0, { key: M.ConnectionUpdateSecretOk });
        return;
      default:
        throw new LinkProtocolError(`unexpected method ${m.key >>> 16}/${m.key & 0xffff} on channel 0`);
    }
  }

  private advance(from: Phase, to: Phase): void {
    if (this.phase !== from) throw new LinkProtocolError(`handshake out of order: expected ${this.phase}`);
    this.phase = to;
  }

  private tune(channelMax: number, frameMax: number): void {
    // We accept whatever the server offers; 0 means "no limit" on its side.
    this.channelMax = channelMax === 0 ? 0xffff : channelMax;
    this.frameMax = frameMax === 0 ? DEFAULT_FRAME_MAX : frameMax;
    this.heartbeatSeconds = this.o.heartbeatSeconds ?? 10;
    this.reader.frameMax = this.frameMax;
    this.sendMethod(0, { key: M.ConnectionTuneOk, channelMax: this.channelMax, frameMax: this.frameMax, heartbeat: this.heartbeatSeconds });
    this.sendMethod(0, { key: M.ConnectionOpen, virtualHost: this.o.vhost });
    if (this.heartbeatSeconds > 0) {
      this.heartbeatTimer = setInterval(() => this.heartbeatTick(), (this.heartbeatSeconds * 1000) / 2);
      this.heartbeatTimer.unref();
    }
  }

  /** Half-interval ticks: a heartbeat goes out when nothing else did, like the server's monitor. */
  private heartbeatTick(): void {
    if (!this.sent) this.write(HEARTBEAT_FRAME);
    this.sent = false;
    if (this.received) this.missedTicks = 0;
    else if (++this.missedTicks >= MISSED_TICKS_MAX) {
      this.fail(new Error(`cluster link to ${this.o.host}:${this.o.port}: missed heartbeats from peer`));
      return;
    }
    this.received = false;
  }

  private clientProperties(): FieldTable {
    return [
      ['product', str('Warren cluster link')],
      ['platform', str(`Node.js ${process.version}`)],
      ['connection_name', str(this.o.connectionName ?? 'warren-cluster-link')],
      ['capabilities', {
        type: 'F',
        value: [
          ['publisher_confirms', bool(true)],
          ['consumer_cancel_notify', bool(true)],
          ['basic.nack', bool(true)],
          ['connection.blocked', bool(true)],
          ['authentication_failure_close', bool(true)],
        ],
      }],
    ];
  }

  // ---- writing and teardown ----------------------------------------------------------------

  private sendMethod(channel: number, m: Method): void {
    this.write(encodeMethodFrame(channel, m));
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    if (!this.socket.destroyed) this.socket.uncork();
  }

  /** The connection failed (socket, protocol, heartbeat, handshake timeout). */
  private fail(err: Error): void {
    this.teardown(err, err);
  }

  /**
   * The single way out. `notify` goes to onClose (null for a close we asked for); `reason`
   * rejects whatever still waits. Anything already written (a close-ok) is flushed first.
   */
  private teardown(notify: Error | null, reason: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.reader.stopped = true;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.handshakeTimer = this.heartbeatTimer = null;
    this.closeOk?.();
    this.uncork();
    // A close-ok still queued under backpressure gets a moment to reach the peer.
    if (this.socket.writableLength === 0) this.socket.destroy();
    else {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
    const channels = [...this.channels.values()];
    this.channels.clear();
    for (const ch of channels) ch.connectionLost(reason);
    const h = this.handshake;
    this.handshake = null;
    if (h !== null) {
      // Nobody holds the connection yet, so the handshake promise is the only one to tell.
      h.reject(reason);
      return;
    }
    const cb = this.onClose;
    if (cb !== null) safely(() => cb(notify));
  }
}
