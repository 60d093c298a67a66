// A minimal AMQP 0-9-1 client connection for warren-perf: TCP, the handshake (PLAIN), one frame
// parser that works on views into the socket's chunks (a copy only when a non-body frame
// straddles two chunks; body frames are handed over in pieces and never copied), and promise
// RPCs for the handful of setup methods. Producers and consumers install a FastPath that sees
// their hot frames (basic.ack/nack, basic.deliver + header + body) before the generic code does.

import * as net from 'node:net';
import {
  FRAME_BODY,
  FRAME_END,
  FRAME_HEADER,
  FRAME_HEADER_SIZE,
  FRAME_METHOD,
  M,
  MethodEncoder,
  decodeTable,
  readShortstr,
  type FieldTable,
} from './wire';

/** Size of each connection's reused read buffer. */
const READ_BUFFER = 128 * 1024;

export interface AmqpUrl {
  host: string;
  port: number;
  user: string;
  pass: string;
  vhost: string;
}

/** amqp://user:pass@host:port/vhost; an empty vhost means "/" (as amqpperf reads it). */
export function parseAmqpUrl(uri: string): AmqpUrl {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new Error(`cannot parse URI ${JSON.stringify(uri)}`);
  }
  if (u.protocol === 'amqps:') throw new Error('amqps is not supported');
  if (u.protocol !== 'amqp:') throw new Error(`unsupported URI scheme ${u.protocol} (expected amqp:)`);
  const path = u.pathname.replace(/^\//, '');
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    port: u.port ? Number(u.port) : 5672,
    user: u.username ? decodeURIComponent(u.username) : 'guest',
    pass: u.password ? decodeURIComponent(u.password) : 'guest',
    vhost: path === '' ? '/' : decodeURIComponent(path),
  };
}

/** Hot-path frame handlers; each returns quickly and keeps no reference to buf. */
export interface FastPath {
  /** A method frame: return true if handled, false to pass it to the generic code. */
  method(id: number, buf: Buffer, start: number, len: number): boolean;
  header(buf: Buffer, start: number, len: number): void;
  /** A piece of a body frame's payload (a frame may arrive in several pieces). */
  body(buf: Buffer, start: number, len: number): void;
  /** Called once after each socket chunk has been parsed (flush coalesced output here). */
  chunkDone(): void;
}

export class AmqpError extends Error {
  constructor(
    message: string,
    readonly code: number = 0,
  ) {
    super(message);
  }
}

interface Waiter {
  channel: number;
  expect: number;
  what: string;
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
}

export interface ServerInfo {
  product: string;
  version: string;
}

export class PerfConnection {
  readonly socket: net.Socket;
  frameMax = 131072;
  server: ServerInfo = { product: '', version: '' };
  /** Set once the connection is unusable; the first reason wins. */
  error: Error | null = null;
  closed = false;
  blocked = false;
  fast: FastPath | null = null;
  /** Called once when the connection fails or is closed by the broker. */
  onFailure: ((err: Error) => void) | null = null;
  /** Called on connection.blocked / unblocked (the broker's resource alarms). */
  onBlockedChange: ((blocked: boolean) => void) | null = null;

  private waiters: Waiter[] = [];
  private pend = Buffer.allocUnsafe(4096);
  private pendLen = 0;
  /** Payload bytes of a body frame still to come from later chunks, then its frame-end byte. */
  private skip = 0;
  private skipEnd = false;
  private paused = false;
  private savedChunk: Buffer | null = null;
  private savedPos = 0;
  private savedEnd = 0;
  private closing = false;

  private constructor(
    socket: net.Socket,
    readonly rpcTimeoutMs: number,
  ) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', (err) => this.fail(new AmqpError(`socket error: ${err.message}`)));
    socket.on('close', () => {
      this.closed = true;
      this.fail(new AmqpError(this.closing ? 'connection closed' : 'connection closed by peer'));
    });
  }

  /** Connects and performs the handshake; rejects after timeoutMs. */
  static async open(url: AmqpUrl, opts: { timeoutMs?: number; name?: string } = {}): Promise<PerfConnection> {
    const timeoutMs = opts.timeoutMs ?? 15000;
    let setConn: (c: PerfConnection) => void = () => {};
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      // Reads land in one reused buffer (no allocation per read) and are parsed synchronously;
      // only a frame that straddles two reads is copied (to pend).
      const readBuf = Buffer.allocUnsafe(READ_BUFFER);
      let conn: PerfConnection | null = null;
      const s = net.connect({
        host: url.host,
        port: url.port,
        onread: {
          buffer: readBuf,
          callback: (n: number, buf: Uint8Array) => {
            conn?.onData(buf as Buffer, n);
            return true;
          },
        },
      });
      setConn = (c) => (conn = c);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new AmqpError(`timeout connecting to ${url.host}:${url.port}`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new AmqpError(`cannot connect to ${url.host}:${url.port}: ${err.message}`));
      });
    });
    const c = new PerfConnection(socket, timeoutMs);
    setConn(c);
    try {
      await c.handshake(url, opts.name ?? 'warren-perf');
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return c;
  }

  private async handshake(url: AmqpUrl, name: string): Promise<void> {
    const start = this.expect(0, M.connectionStart, 'connection.start');
    this.socket.write(Buffer.from([65, 77, 81, 80, 0, 0, 9, 1]));
    const s = await start;
    // version-major, version-minor, server-properties
    try {
      const [props] = decodeTable(s, 6);
      this.server = { product: String(props.product ?? ''), version: String(props.version ?? '') };
    } catch {
      // informational only
    }
    const tune = this.expect(0, M.connectionTune, 'connection.tune');
    const clientProps: FieldTable = {
      product: 'warren-perf',
      connection_name: name,
      platform: `Node.js ${process.version}`,
      capabilities: {
        publisher_confirms: true,
        'basic.nack': true,
        consumer_cancel_notify: true,
        'connection.blocked': true,
        authentication_failure_close: true,
      },
    };
    this.write(
      new MethodEncoder(0, M.connectionStartOk)
        .table(clientProps)
        .shortstr('PLAIN')
        .longstr(Buffer.from(`\0${url.user}\0${url.pass}`, 'utf8'))
        .shortstr('en_US')
        .frame(),
    );
    const t = await tune;
    const serverChannelMax = t.readUInt16BE(4);
    const serverFrameMax = t.readUInt32BE(6);
    this.frameMax = serverFrameMax === 0 ? 131072 : Math.min(serverFrameMax, 131072);
    this.write(
      new MethodEncoder(0, M.connectionTuneOk)
        .u16(serverChannelMax === 0 ? 2047 : Math.min(serverChannelMax, 2047))
        .u32(this.frameMax)
        .u16(0) // no heartbeats: the run is short and both ends are busy
        .frame(),
    );
    const open = this.expect(0, M.connectionOpenOk, 'connection.open-ok');
    this.write(new MethodEncoder(0, M.connectionOpen).shortstr(url.vhost).shortstr('').bit(false).frame());
    await open;
  }

  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  /** Waits for a method on a channel (FIFO per connection, as setup is sequential). */
  expect(channel: number, id: number, what: string): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise<Buffer>((resolve, reject) => {
      const w: Waiter = { channel, expect: id, what, resolve, reject, timer: null };
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new AmqpError(`timeout after ${this.rpcTimeoutMs} ms waiting for ${what}`));
      }, this.rpcTimeoutMs);
      this.waiters.push(w);
    });
  }

  /** Sends a method frame and waits for the reply. */
  rpc(frame: Buffer, channel: number, replyId: number, what: string): Promise<Buffer> {
    const p = this.expect(channel, replyId, what);
    this.write(frame);
    return p;
  }

  // ---- setup methods (channel numbers chosen by the caller) ---------------------------------

  async openChannel(ch: number): Promise<void> {
    await this.rpc(new MethodEncoder(ch, M.channelOpen).shortstr('').frame(), ch, M.channelOpenOk, 'channel.open-ok');
  }
  async confirmSelect(ch: number): Promise<void> {
    await this.rpc(new MethodEncoder(ch, M.confirmSelect).bit(false).frame(), ch, M.confirmSelectOk, 'confirm.select-ok');
  }
  async qos(ch: number, prefetch: number): Promise<void> {
    await this.rpc(new MethodEncoder(ch, M.basicQos).u32(0).u16(prefetch).bit(false).frame(), ch, M.basicQosOk, 'basic.qos-ok');
  }
  async consume(ch: number, queue: string, noAck: boolean, tag = ''): Promise<string> {
    const ok = await this.rpc(
      new MethodEncoder(ch, M.basicConsume)
        .u16(0)
        .shortstr(queue)
        .shortstr(tag)
        .bit(false) // no-local
        .bit(noAck)
        .bit(false) // exclusive
        .bit(false) // no-wait
        .table({})
        .frame(),
      ch,
      M.basicConsumeOk,
      `basic.consume-ok (${queue})`,
    );
    return readShortstr(ok, 4)[0];
  }
  async exchangeDeclare(ch: number, name: string, type: string, durable: boolean): Promise<void> {
    await this.rpc(
      new MethodEncoder(ch, M.exchangeDeclare)
        .u16(0)
        .shortstr(name)
        .shortstr(type)
        .bit(false) // passive
        .bit(durable)
        .bit(false) // auto-delete
        .bit(false) // internal
        .bit(false) // no-wait
        .table({})
        .frame(),
      ch,
      M.exchangeDeclareOk,
      `exchange.declare-ok (${name})`,
    );
  }
  async exchangeDelete(ch: number, name: string): Promise<void> {
    await this.rpc(
      new MethodEncoder(ch, M.exchangeDelete).u16(0).shortstr(name).bit(false).bit(false).frame(),
      ch,
      M.exchangeDeleteOk,
      `exchange.delete-ok (${name})`,
    );
  }
  /** Declares (or with passive, checks) a queue; resolves with its message count. */
  async queueDeclare(ch: number, name: string, o: { durable?: boolean; passive?: boolean; args?: FieldTable } = {}): Promise<number> {
    const ok = await this.rpc(
      new MethodEncoder(ch, M.queueDeclare)
        .u16(0)
        .shortstr(name)
        .bit(o.passive ?? false)
        .bit(o.durable ?? false)
        .bit(false) // exclusive
        .bit(false) // auto-delete
        .bit(false) // no-wait
        .table(o.args)
        .frame(),
      ch,
      M.queueDeclareOk,
      `queue.declare-ok (${name})`,
    );
    const [, p] = readShortstr(ok, 4);
    return ok.readUInt32BE(p);
  }
  async queueBind(ch: number, queue: string, exchange: string, key: string): Promise<void> {
    await this.rpc(
      new MethodEncoder(ch, M.queueBind).u16(0).shortstr(queue).shortstr(exchange).shortstr(key).bit(false).table({}).frame(),
      ch,
      M.queueBindOk,
      `queue.bind-ok (${queue} <- ${exchange} '${key}')`,
    );
  }
  async queueDelete(ch: number, name: string): Promise<void> {
    await this.rpc(
      new MethodEncoder(ch, M.queueDelete).u16(0).shortstr(name).bit(false).bit(false).bit(false).frame(),
      ch,
      M.queueDeleteOk,
      `queue.delete-ok (${name})`,
    );
  }

  /** connection.close and wait (bounded) for close-ok, then drop the socket. Never rejects. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed || this.closing) {
      this.socket.destroy();
      return;
    }
    this.closing = true;
    if (!this.error) {
      const done = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.socket.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        const w: Waiter = {
          channel: 0,
          expect: M.connectionCloseOk,
          what: 'connection.close-ok',
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
          reject: () => {
            clearTimeout(timer);
            resolve();
          },
          timer: null,
        };
        this.waiters.push(w);
      });
      this.write(new MethodEncoder(0, M.connectionClose).u16(200).shortstr('bye').u16(0).u16(0).frame());
      await done;
    }
    this.socket.destroy();
  }

  /** Stops parsing after the current frame (rate-limited consumers); resume() continues. */
  pause(): void {
    this.paused = true;
    this.socket.pause();
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const chunk = this.savedChunk;
    this.savedChunk = null;
    if (chunk !== null) this.parse(chunk, this.savedPos, this.savedEnd);
    if (!this.paused) {
      this.fast?.chunkDone();
      this.socket.resume();
    }
  }

  // ---- frame parsing ---------------------------------------------------------------------------

  private onData(chunk: Buffer, n: number): void {
    this.parse(chunk, 0, n);
    if (!this.paused) this.fast?.chunkDone();
  }

  private parse(buf: Buffer, pos: number, end: number): void {
    for (;;) {
      // A body frame whose payload continues from an earlier chunk.
      if (this.skip > 0) {
        if (pos >= end) return;
        const n = this.skip < end - pos ? this.skip : end - pos;
        this.fast?.body(buf, pos, n);
        this.skip -= n;
        pos += n;
        if (this.skip > 0) return;
        this.skipEnd = true;
      }
      if (this.skipEnd) {
        if (pos >= end) return;
        if (buf[pos] !== FRAME_END) return this.protocolError('bad frame end after a body frame');
        pos++;
        this.skipEnd = false;
      }
      // A frame (or its header) that straddles chunks.
      if (this.pendLen > 0) {
        if (this.pendLen < FRAME_HEADER_SIZE) {
          const n = Math.min(FRAME_HEADER_SIZE - this.pendLen, end - pos);
          buf.copy(this.pend, this.pendLen, pos, pos + n);
          this.pendLen += n;
          pos += n;
          if (this.pendLen < FRAME_HEADER_SIZE) return;
        }
        const p = this.pend;
        const size = ((p[3]! << 24) | (p[4]! << 16) | (p[5]! << 8) | p[6]!) >>> 0;
        if (p[0] === FRAME_BODY) {
          // Hand over what we have, then stream the rest of the payload from the chunks.
          const have = this.pendLen - FRAME_HEADER_SIZE;
          if (have > 0) this.fast?.body(p, FRAME_HEADER_SIZE, have);
          this.pendLen = 0;
          this.skip = size - have;
          this.skipEnd = this.skip === 0;
          continue;
        }
        const total = size + 8;
        if (total > this.pend.length) {
          if (size > this.frameMax + 1024 && size > 1 << 20) return this.protocolError(`frame of ${size} bytes`);
          const bigger = Buffer.allocUnsafe(total);
          this.pend.copy(bigger, 0, 0, this.pendLen);
          this.pend = bigger;
        }
        const n = Math.min(total - this.pendLen, end - pos);
        buf.copy(this.pend, this.pendLen, pos, pos + n);
        this.pendLen += n;
        pos += n;
        if (this.pendLen < total) return;
        this.pendLen = 0;
        if (this.pend[total - 1] !== FRAME_END) return this.protocolError('bad frame end');
        this.dispatch(this.pend, 0, size);
        if (this.error) return;
      }
      // Whole frames, in place.
      for (;;) {
        if (this.paused) {
          this.savedChunk = buf;
          this.savedPos = pos;
          this.savedEnd = end;
          return;
        }
        const avail = end - pos;
        if (avail < FRAME_HEADER_SIZE) break;
        const size = ((buf[pos + 3]! << 24) | (buf[pos + 4]! << 16) | (buf[pos + 5]! << 8) | buf[pos + 6]!) >>> 0;
        const total = size + 8;
        if (avail < total) {
          if (buf[pos] === FRAME_BODY) {
            const have = avail - FRAME_HEADER_SIZE;
            if (have > 0) this.fast?.body(buf, pos + FRAME_HEADER_SIZE, have);
            this.skip = size - have;
            this.skipEnd = this.skip === 0;
            return;
          }
          break;
        }
        if (buf[pos + total - 1] !== FRAME_END) return this.protocolError('bad frame end');
        this.dispatch(buf, pos, size);
        if (this.error) return;
        pos += total;
      }
      if (pos < end) {
        const n = end - pos;
        if (n > this.pend.length) this.pend = Buffer.allocUnsafe(Math.max(n, this.pend.length * 2));
        buf.copy(this.pend, 0, pos, end);
        this.pendLen = n;
      }
      return;
    }
  }

  /** One complete frame at buf[pos..pos+7+size+1). */
  private dispatch(buf: Buffer, pos: number, size: number): void {
    const type = buf[pos]!;
    const start = pos + FRAME_HEADER_SIZE;
    const fast = this.fast;
    if (type === FRAME_METHOD) {
      const id = ((buf[start]! << 24) | (buf[start + 1]! << 16) | (buf[start + 2]! << 8) | buf[start + 3]!) >>> 0;
      if (fast !== null && fast.method(id, buf, start, size)) return;
      const channel = (buf[pos + 1]! << 8) | buf[pos + 2]!;
      this.genericMethod(channel, id, buf, start, size);
    } else if (type === FRAME_HEADER) {
      fast?.header(buf, start, size);
    } else if (type === FRAME_BODY) {
      fast?.body(buf, start, size);
    }
    // heartbeats: we asked for none; ignore any
  }

  private genericMethod(channel: number, id: number, buf: Buffer, start: number, size: number): void {
    if (id === M.connectionClose || id === M.channelClose) {
      const code = buf.readUInt16BE(start + 4);
      const [text] = readShortstr(buf, start + 6);
      if (id === M.connectionClose) {
        this.write(new MethodEncoder(0, M.connectionCloseOk).frame());
        this.fail(new AmqpError(`connection closed by broker: ${code} ${text}`, code));
        this.socket.end();
      } else {
        this.write(new MethodEncoder(channel, M.channelCloseOk).frame());
        const err = new AmqpError(`channel ${channel} closed by broker: ${code} ${text}`, code);
        if (this.fast !== null) {
          this.fail(err); // a producer's or consumer's only channel: the client is done
        } else {
          // setup connection: fail what waits on that channel; the caller may reopen it
          for (const w of this.waiters.filter((x) => x.channel === channel)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            if (w.timer) clearTimeout(w.timer);
            w.reject(err);
          }
        }
      }
      return;
    }
    if (id === M.connectionBlocked) {
      this.blocked = true;
      this.onBlockedChange?.(true);
      return;
    }
    if (id === M.connectionUnblocked) {
      this.blocked = false;
      this.onBlockedChange?.(false);
      return;
    }
    if (id === M.basicCancel) {
      this.fail(new AmqpError('consumer cancelled by broker (queue deleted?)'));
      return;
    }
    const i = this.waiters.findIndex((w) => w.channel === channel);
    if (i < 0) return; // unsolicited (e.g. a late ack); nothing waits for it
    const w = this.waiters[i]!;
    this.waiters.splice(i, 1);
    if (w.timer) clearTimeout(w.timer);
    if (w.expect !== id) {
      w.reject(new AmqpError(`expected ${w.what}, got method ${id >>> 16}.${id & 0xffff}`));
      return;
    }
    w.resolve(Buffer.from(buf.subarray(start, start + size)));
  }

  private protocolError(what: string): void {
    this.fail(new AmqpError(`protocol error from broker: ${what}`));
    this.socket.destroy();
  }

  private fail(err: Error): void {
    if (this.error === null) {
      this.error = err;
      if (!this.closing) this.onFailure?.(err);
    }
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      if (w.timer) clearTimeout(w.timer);
      if (w.expect === M.connectionCloseOk) w.resolve(Buffer.alloc(0));
      else w.reject(err);
    }
  }
}
