import type { Socket } from 'node:net';
import { AccessContext } from '../auth/users';
import type { VHost } from '../core/vhost';
import type { LimitStore } from '../core/limits';
import type { Queue } from '../core/queue/queue';
import type { Logger } from '../observability/logger';
import { AmqpError, erlangBinary, UnknownMethodError } from '../protocol/errors';
import { tableGet } from '../protocol/field-table';
import { FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, FrameReader, FrameSink } from '../protocol/frame-reader';
import { FrameWriter } from '../protocol/frame-writer';
import { decodeMethod, encodeMethodFrame, M, Method } from '../protocol/spec';
import type { BrokerContext } from './broker-context';
import { Channel } from './channel';
import { serverProperties } from './server-properties';
import { HeartbeatMonitor } from './heartbeat';
import { parseSaslResponse, SASL_MECHANISMS } from './sasl';
import { ReadGate, ReadPause } from './read-gate';

const PROTOCOL_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
/** Stop handing deliveries to a connection whose unsent output passes this; resume after flush. */
const OUTPUT_HIGH_WATER = 1024 * 1024;
/** How long we wait for close-ok after sending connection.close before dropping the socket. */
const CLOSE_OK_TIMEOUT_MS = 1000;
/** Bytes read from one connection before it yields the event loop to the others. */
const READ_SHARE = 256 * 1024;

type State = 'header' | 'start-ok' | 'tune-ok' | 'open' | 'opened' | 'closing' | 'closed';

/**
 * One client connection: the handshake (start → start-ok → tune → tune-ok → open), channel 0,
 * heartbeats, and the socket's batched output. Channel frames are dispatched flat by number.
 */
export class Connection implements FrameSink {
  readonly writer: FrameWriter;
  private readonly reader: FrameReader;
  private state: State = 'header';
  private headerBytes: Buffer | null = null;
  private readonly channels = new Map<number, Channel>();
  private channelMax = 2047;
  private handshakeTimer: NodeJS.Timeout | null;
  private closeTimer: NodeJS.Timeout | null = null;
  private flushScheduled = false;
  private socketBlocked = false;
  /** A consumer was refused for output reasons; wake queues when output drains. */
  outputStarved = false;
  /** A resource alarm is in force for this connection (it publishes and the broker is over a limit). */
  private alarmActive = false;
  private publishedOnce = false;
  private readSinceYield = 0;
  private readonly heartbeat: HeartbeatMonitor = new HeartbeatMonitor({
    sendHeartbeat: () => this.writer.heartbeat(),
    readingPaused: () => this.gate.has(ReadPause.Alarm) || this.gate.has(ReadPause.Flow),
    peerSilent: () => {
      this.log.info('missed heartbeats from client, closing connection');
      this.socket.destroy();
    },
  });
  vhost: VHost | null = null;
  access: AccessContext | null = null;
  clientProperties: Record<string, unknown> = {};
  readonly name: string;
  readonly log: Logger;
  readonly connectedAt = Date.now();
  private readonly onClosed: (c: Connection) => void;
  private readonly gate: ReadGate;

  constructor(
    private readonly socket: Socket,
    readonly broker: BrokerContext,
    onClosed: (c: Connection) => void,
  ) {
    this.onClosed = onClosed;
    this.gate = new ReadGate(socket);
    this.name = `${socket.remoteAddress}:${socket.remotePort} -> ${socket.localAddress}:${socket.localPort}`;
    this.log = broker.logger.child({ conn: this.name });
    this.reader = new FrameReader(this);
    this.writer = new FrameWriter(() => this.scheduleFlush());
    this.writer.frameMax = broker.config.frameMax;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.onDrain());
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'socket error'));
    socket.on('close', () => this.teardown('socket closed'));
    this.handshakeTimer = setTimeout(() => {
      this.log.info('handshake timeout, closing connection');
      this.socket.destroy();
    }, broker.config.handshakeTimeoutMs);
  }

  get isOpen(): boolean {
    return this.state === 'opened';
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Read-only views for management and metrics (src/http, src/observability). */
  get channelList(): IterableIterator<Channel> {
    return this.channels.values();
  }

  get bytesReceived(): number {
    return this.socket.bytesRead;
  }

  get bytesSent(): number {
    return this.socket.bytesWritten;
  }

  get negotiatedChannelMax(): number {
    return this.channelMax;
  }

  /** TLS details when the client came in over AMQPS; null over plain TCP. */
  get tlsInfo(): { protocol: string | null; cipher: string; peerSubject: string | null } | null {
    const s = this.socket as Socket & Partial<import('node:tls').TLSSocket>;
    if (s.encrypted !== true || s.getCipher === undefined) return null;
    const peer = s.getPeerCertificate?.();
    const subject = peer !== undefined && peer.subject !== undefined ? Object.entries(peer.subject).map(([k, v]) => `${k}=${String(v)}`).join(',') : null;
    return { protocol: s.getProtocol?.() ?? null, cipher: s.getCipher().name, peerSubject: subject };
  }

  /** Deliveries may go out only while the socket keeps up. */
  canSend(): boolean {
    if (this.socketBlocked || this.writer.pendingBytes > OUTPUT_HIGH_WATER || this.state !== 'opened') {
      this.outputStarved = true;
      return false;
    }
    return true;
  }

  send(frame: Buffer): void {
    this.writer.raw(frame);
  }

  sendMethod(channel: number, m: Method): void {
    this.writer.raw(encodeMethodFrame(channel, m));
  }

  /** Server-initiated close (shutdown, management): connection.close with the given reason. */
  close(name: 'CONNECTION_FORCED' | 'INTERNAL_ERROR', text: string): void {
    this.failConnection(new AmqpError(name, text));
  }

  // ---- input -----------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.heartbeat.received = true;
    // Fairness: libuv may hand one busy socket megabytes in a single turn; yielding after each
    // share lets other connections' acks and deliveries in between (a slow, prefetch-limited
    // consumer is otherwise starved by a flooding publisher).
    this.readSinceYield += chunk.length;
    if (this.readSinceYield >= READ_SHARE && !this.gate.has(ReadPause.Yield)) this.yieldReading();
    try {
      if (this.state === 'header') {
        chunk = this.readProtocolHeader(chunk);
        if (chunk.length === 0) return;
      }
      this.reader.push(chunk);
    } catch (err) {
      if (err instanceof UnknownMethodError) {
        this.log.info({ text: err.replyText }, 'dropping connection');
        this.socket.destroy();
        return;
      }
      this.failConnection(asAmqpError(err));
    }
  }

  private readProtocolHeader(chunk: Buffer): Buffer {
    const have = this.headerBytes === null ? chunk : Buffer.concat([this.headerBytes, chunk]);
    if (have.length < 8) {
      this.headerBytes = have;
      return have.subarray(have.length);
    }
    this.headerBytes = null;
    if (!have.subarray(0, 8).equals(PROTOCOL_HEADER)) {
      // Spec §4.2.2: answer with the protocol we do speak, then close.
      this.state = 'closed';
      this.socket.end(PROTOCOL_HEADER);
      return have.subarray(have.length);
    }
    this.state = 'start-ok';
    this.sendMethod(0, {
      key: M.ConnectionStart,
      versionMajor: 0,
      versionMinor: 9,
      serverProperties: serverProperties(this.broker.version, this.broker.config.clusterName),
      mechanisms: Buffer.from(SASL_MECHANISMS),
      locales: Buffer.from('en_US'),
    });
    return have.subarray(8);
  }

  onFrame(type: number, channel: number, buf: Buffer, start: number, end: number): void {
    if (type === FRAME_HEARTBEAT) {
      if (end !== start) throw new AmqpError('FRAME_ERROR', `type 8, all octets = ${erlangBinary(buf.subarray(start, end))}: unknown_frame`);
      if (channel !== 0) throw new AmqpError('UNEXPECTED_FRAME', `type 8, all octets = ${erlangBinary(buf.subarray(start, end))}`);
      return;
    }
    if (this.state === 'closing') {
      // After sending connection.close, only close/close-ok matter (spec §2.2.4).
      if (type === FRAME_METHOD && channel === 0) {
        const m = decodeMethod(buf, start, end);
        if (m.key === M.ConnectionCloseOk || m.key === M.ConnectionClose) this.finishClose(m.key === M.ConnectionClose);
      }
      return;
    }
    if (type < FRAME_METHOD || type > FRAME_BODY) {
      throw new AmqpError('FRAME_ERROR', `type ${type}, all octets = ${erlangBinary(buf.subarray(start, end))}: unknown_frame`);
    }
    if (channel === 0) {
      if (type !== FRAME_METHOD) throw new AmqpError('UNEXPECTED_FRAME', `expected method frame on channel 0, got frame type ${type}`);
      this.onConnectionMethod(decodeMethod(buf, start, end));
      return;
    }
    if (this.state !== 'opened') {
      throw new AmqpError('UNEXPECTED_FRAME', `type ${type}, all octets = ${erlangBinary(buf.subarray(start, end))}`);
    }
    let ch = this.channels.get(channel);
    if (ch === undefined) {
      if (type !== FRAME_METHOD) throw new AmqpError('CHANNEL_ERROR', `expected 'channel.open'`);
      const m = decodeMethod(buf, start, end);
      if (m.key !== M.ChannelOpen) throw new AmqpError('CHANNEL_ERROR', `expected 'channel.open'`, m.key >>> 16, m.key & 0xffff);
      if (this.channels.size >= this.channelMax) {
        throw new AmqpError('NOT_ALLOWED', `number of channels opened (${this.channels.size}) has reached the negotiated channel_max (${this.channelMax})`, 20, 10);
      }
      if (!this.isClusterLink) this.limits?.checkChannelOpen(this.user!);
      ch = new Channel(channel, this, { vhost: this.vhost!, access: this.access! });
      this.channels.set(channel, ch);
      this.sendMethod(channel, { key: M.ChannelOpenOk });
      return;
    }
    ch.onFrame(type, buf, start, end);
  }

  /** The channel finished closing (close-ok exchanged); its number may be reused. */
  channelClosed(ch: Channel): void {
    if (this.channels.get(ch.id) === ch) this.channels.delete(ch.id);
  }

  private onConnectionMethod(m: Method): void {
    switch (m.key) {
      case M.ConnectionStartOk:
        this.expect('start-ok', m.key);
        this.authenticate(m.mechanism, m.response, m.clientProperties);
        return;
      case M.ConnectionTuneOk:
        this.expect('tune-ok', m.key);
        this.tune(m.channelMax, m.frameMax, m.heartbeat);
        return;
      case M.ConnectionOpen:
        this.expect('open', m.key);
        this.open(m.virtualHost);
        return;
      case M.ConnectionClose:
        this.sendMethod(0, { key: M.ConnectionCloseOk });
        this.flush();
        this.teardown('client closed');
        this.socket.end();
        return;
      case M.ConnectionCloseOk:
        this.finishClose(false);
        return;
      case M.ConnectionUpdateSecret:
        this.sendMethod(0, { key: M.ConnectionUpdateSecretOk });
        return;
      case M.ConnectionBlocked:
      case M.ConnectionUnblocked:
        return;
      default:
        throw new AmqpError('CHANNEL_ERROR', `unexpected method in connection state running`, m.key >>> 16, m.key & 0xffff);
    }
  }

  private expect(state: State, key: number): void {
    if (this.state !== state) {
      throw new AmqpError('COMMAND_INVALID', `unexpected method in connection state ${this.state}`, key >>> 16, key & 0xffff);
    }
  }

  private authenticate(mechanism: string, response: Buffer, clientProps: import('../protocol/field-table').FieldTable): void {
    this.clientProperties = Object.fromEntries(clientProps.map(([k, v]) => [k, v.type === 'S' ? v.value.toString() : v]));
    const caps = tableGet(clientProps, 'capabilities');
    if (caps?.type === 'F') {
      this.clientCapabilities = new Map(caps.value.map(([k, v]) => [k, v.type === 't' ? v.value : undefined]));
    }
    const { user, password: pass } = parseSaslResponse(mechanism, response);
    const link = this.broker.cluster?.authenticateLink(user, pass);
    if (link !== undefined) this.isClusterLink = true;
    else if (this.linkOnly) {
      throw new AmqpError('ACCESS_REFUSED', `Login was refused using authentication mechanism ${mechanism}. For details see the broker logfile.`, 10, 11);
    }
    const found = link ?? this.broker.users.authenticate(user, pass);
    if (found === undefined) {
      this.log.warn({ user, mechanism }, 'authentication failed');
      throw new AmqpError('ACCESS_REFUSED', `Login was refused using authentication mechanism ${mechanism}. For details see the broker logfile.`, 10, 11);
    }
    if (!this.isClusterLink && this.broker.config.loopbackUsers.includes(user) && !isLoopback(this.socket.remoteAddress)) {
      throw new AmqpError('ACCESS_REFUSED', `user '${user}' can only connect via localhost`, 10, 11);
    }
    this.user = found;
    this.state = 'tune-ok';
    this.sendMethod(0, {
      key: M.ConnectionTune,
      channelMax: this.broker.config.channelMax,
      frameMax: this.broker.config.frameMax,
      heartbeat: this.broker.config.heartbeat,
    });
  }

  private user: import('../auth/users').User | null = null;
  /** A node-to-node link (the cluster's internal user): publishes reach local queues only. */
  isClusterLink = false;
  /** Set on connections accepted by the cluster-port listener: only links may log in there. */
  linkOnly = false;

  private tune(channelMax: number, frameMax: number, heartbeat: number): void {
    const cfg = this.broker.config;
    negotiate('frame_max', frameMax, 4096, cfg.frameMax);
    negotiate('channel_max', channelMax, 1, cfg.channelMax);
    this.channelMax = channelMax;
    this.reader.frameMax = frameMax;
    this.writer.frameMax = frameMax;
    this.state = 'open';
    if (heartbeat > 0) this.heartbeat.start(heartbeat);
  }

  private open(vhostName: string): void {
    const vhost = this.broker.vhosts.get(vhostName);
    if (vhost === undefined) throw new AmqpError('NOT_ALLOWED', `vhost ${vhostName} not found`, 10, 40);
    // RabbitMQ checks the vhost's and the user's connection limits before the permission.
    if (!this.isClusterLink) this.limits?.checkConnectionOpen(vhost, this.user!);
    const perm = this.isClusterLink ? FULL_ACCESS : this.broker.users.permission(vhostName, this.user!.name);
    if (perm === undefined) {
      throw new AmqpError('NOT_ALLOWED', `access to vhost '${vhostName}' refused for user '${this.user!.name}'`, 10, 40);
    }
    this.vhost = vhost;
    this.access = new AccessContext(this.user!, vhostName, perm, this.broker.users);
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.state = 'opened';
    this.sendMethod(0, { key: M.ConnectionOpenOk });
    this.log.info({ user: this.user!.name, vhost: vhostName }, 'connection opened');
  }

  /** The broker's resource limits (src/broker.ts owns them; a bare BrokerContext has none). */
  private get limits(): LimitStore | undefined {
    return this.broker.limits;
  }

  get userName(): string {
    return this.user?.name ?? '';
  }

  // ---- resource alarms (flow control) ---------------------------------------------------

  /** Called by a channel for each publish; blocks the connection if an alarm is in force. */
  notePublish(): void {
    this.publishedOnce = true;
    if (this.alarmActive && !this.gate.has(ReadPause.Alarm)) this.blockReading();
  }

  alarmRaised(): void {
    this.alarmActive = true;
    if (this.publishedOnce && !this.gate.has(ReadPause.Alarm)) this.blockReading();
  }

  alarmCleared(): void {
    this.alarmActive = false;
    if (!this.gate.has(ReadPause.Alarm)) return;
    if (this.supportsBlocked()) this.sendMethod(0, { key: M.ConnectionUnblocked });
    this.gate.resume(ReadPause.Alarm);
  }

  private yieldReading(): void {
    this.gate.pause(ReadPause.Yield);
    setImmediate(() => {
      this.readSinceYield = 0;
      this.gate.resume(ReadPause.Yield);
    });
  }

  /** Channels holding too many frames while waiting on another node: stop reading meanwhile. */
  holdBackpressure(on: boolean): void {
    this.gate.hold(on);
  }

  /** Credit-flow style throttling: stop reading until the queue's consumers catch up. */
  throttleFor(queue: Queue): void {
    if (this.gate.has(ReadPause.Flow) || this.state !== 'opened') return;
    this.gate.pause(ReadPause.Flow);
    queue.addFlowWaiter(this);
  }

  resumeFlow(): void {
    if (this.gate.has(ReadPause.Flow)) this.gate.resume(ReadPause.Flow);
  }

  get isBlocked(): boolean {
    return this.gate.has(ReadPause.Alarm);
  }

  /** RabbitMQ: a publishing connection stops being read; consumers on it keep receiving. */
  private blockReading(): void {
    if (this.supportsBlocked()) this.sendMethod(0, { key: M.ConnectionBlocked, reason: 'low on memory or disk' });
    this.gate.pause(ReadPause.Alarm);
  }

  private supportsBlocked(): boolean {
    const caps = this.clientCapabilities;
    return caps !== null && caps.get('connection.blocked') === true;
  }

  private clientCapabilities: Map<string, unknown> | null = null;

  // ---- output ----------------------------------------------------------------------------

  /** Something (coalesced confirms) must go out this turn even if no frame was encoded yet. */
  requestFlush(): void {
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** One write per I/O turn: confirms are coalesced first, then everything goes out together. */
  flush(): void {
    this.flushScheduled = false;
    this.broker.persistMetadata();
    for (const ch of this.channels.values()) ch.flushConfirms();
    if (!this.writer.hasPending || this.socket.destroyed) {
      this.writer.discard();
      return;
    }
    this.heartbeat.sent = true;
    if (!this.writer.flushTo(this.socket)) {
      this.socketBlocked = true;
    } else if (this.outputStarved) {
      this.wakeConsumers();
    }
  }

  private onDrain(): void {
    this.socketBlocked = false;
    if (this.outputStarved) this.wakeConsumers();
  }

  private wakeConsumers(): void {
    this.outputStarved = false;
    for (const ch of this.channels.values()) ch.drainQueues();
  }

  // ---- errors and teardown ---------------------------------------------------------------

  /** Hard error: connection.close with the reply, then wait briefly for close-ok. */
  failConnection(err: AmqpError): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.reader.stopped = true;
    if (err.code >= 500 || err.replyName === 'ACCESS_REFUSED' || err.replyName === 'CONNECTION_FORCED') {
      this.log.info({ code: err.code, text: err.replyText }, 'closing connection');
    }
    const beforeOpen = this.state !== 'opened';
    this.state = 'closing';
    this.teardownChannels();
    this.sendMethod(0, {
      key: M.ConnectionClose,
      replyCode: err.code,
      replyText: err.replyText.slice(0, 255),
      classId: err.classId,
      methodId: err.methodId,
    });
    this.flush();
    if (beforeOpen && err.replyName !== 'ACCESS_REFUSED' && err.replyName !== 'NOT_ALLOWED') {
      this.socket.end();
    }
    this.closeTimer = setTimeout(() => this.socket.destroy(), CLOSE_OK_TIMEOUT_MS);
  }

  private finishClose(peerAlsoClosing: boolean): void {
    if (peerAlsoClosing) {
      this.sendMethod(0, { key: M.ConnectionCloseOk });
      this.flush();
    }
    this.socket.end();
  }

  private teardownChannels(): void {
    for (const ch of [...this.channels.values()]) ch.teardown();
    this.channels.clear();
    this.vhost?.deleteExclusiveQueues(this);
  }

  private teardown(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.reader.stopped = true;
    this.heartbeat.stop();
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.teardownChannels();
    if (this.vhost !== null) this.log.info({ user: this.userName, vhost: this.vhost.name, reason }, 'connection closed');
    else this.log.debug({ reason }, 'connection closed before it was opened');
    this.onClosed(this);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function negotiate(field: string, client: number, min: number, server: number): void {
  if (client !== 0 && client < min) {
    throw new AmqpError('NOT_ALLOWED', `negotiated ${field} = ${client} is lower than the minimum allowed value (${min})`, 10, 31);
  }
  if (server !== 0 && (client === 0 || client > server)) {
    const detail = client === 0 ? ' (no limit)' : '';
    throw new AmqpError('NOT_ALLOWED', `negotiated ${field} = ${client}${detail} is higher than the maximum allowed value (${server})`, 10, 31);
  }
}

function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}

const FULL_ACCESS = { configure: /.*/, write: /.*/, read: /.*/, patterns: { configure: '.*', write: '.*', read: '.*' } };

function asAmqpError(err: unknown): AmqpError {
  if (err instanceof AmqpError) return err;
  return new AmqpError('INTERNAL_ERROR', err instanceof Error ? err.message : String(err));
}
