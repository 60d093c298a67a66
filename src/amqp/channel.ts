import { randomBytes } from 'node:crypto';
import type { Exchange } from '../core/exchanges/exchange';
import { Message } from '../core/message';
import type { Queue, QueueEntry } from '../core/queue/queue';
import { AmqpError } from '../protocol/errors';
import { fieldInt, tableGet, tablePlain } from '../protocol/field-table';
import { FRAME_BODY, FRAME_HEADER, FRAME_METHOD } from '../protocol/frame-reader';
import { decodeProperties, encodeProperties, readExpiration } from '../protocol/properties';
import { decodeMethod, M, Method, MethodOf } from '../protocol/spec';
import type { SessionContext } from './broker-context';
import { ChannelConsumer } from './channel-consumer';
import type { Connection } from './connection';
import { ContentAssembler } from './content-assembler';
import { REPLY_TO, REPLY_TO_PREFIX } from './direct-reply';
import { handleTopologyMethod } from './topology';
import { MIRROR_EXCHANGE } from '../cluster/mirror-protocol';
import { Transaction } from './transaction';
import { ConfirmTracker } from './confirms';
import { validateConsumerPriority } from '../core/queue/arguments';
import { Delivery, requeueByQueue, UnackedDeliveries } from './unacked';
import { ConsumerTimeouts } from './consumer-timeout';
import { EXPIRATION_FLAG, INSPECTED_PROPERTIES, parseExpiration, routingKeysOf } from './publish-properties';


type State = 'open' | 'closing' | 'closed';

/**
 * An AMQP channel: method dispatch, publishing (with confirms and transactions), consumers,
 * and the delivery tags it owes acks for. Exchange and queue methods live in topology.ts.
 */
export class Channel {
  private state: State = 'open';
  private readonly assembler = new ContentAssembler();
  readonly consumers = new Map<string, ChannelConsumer>();
  private readonly unacked = new UnackedDeliveries();
  private readonly timeouts: ConsumerTimeouts;
  private nextDeliveryTag = 1;
  private prefetchCount = 0;
  private globalPrefetch = 0;
  private confirms: ConfirmTracker | null = null;
  private tx: Transaction<Delivery> | null = null;
  private replyQueue: Queue | null = null;
  readonly stats = { published: 0, delivered: 0, acked: 0 };
  /** For RabbitMQ's '' shortcut: methods naming queue '' mean the channel's last declared queue. */
  lastDeclaredQueue = '';

  constructor(
    readonly id: number,
    readonly conn: Connection,
    readonly session: SessionContext,
  ) {
    const channel = this;
    this.timeouts = new ConsumerTimeouts({
      id,
      get isOpen() {
        return channel.state === 'open';
      },
      unacked: this.unacked,
      defaultTimeout: conn.broker.config.consumerTimeout,
      action: conn.broker.config.consumerTimeoutAction,
      fail: (err) => this.fail(err),
      cancelTimedOut: (c) => {
        conn.log.info({ channel: id, consumer: c.tag, queue: c.queue.name }, 'consumer timed out, cancelling it');
        this.cancel(c.tag);
        conn.sendMethod(id, { key: M.BasicCancel, consumerTag: c.tag, noWait: true });
      },
    });
  }

  get prefetch(): number {
    return this.prefetchCount;
  }

  get unackedMessages(): number {
    return this.unacked.size;
  }

  get inConfirmMode(): boolean {
    return this.confirms !== null;
  }

  get transactional(): boolean {
    return this.tx !== null;
  }

  expandQueueName(name: string): string {
    if (name !== '') return name;
    if (this.lastDeclaredQueue === '') throw new AmqpError('NOT_FOUND', 'no previously declared queue');
    return this.lastDeclaredQueue;
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    if (this.held !== null && this.state === 'open') {
      this.held.push([type, Buffer.from(buf.subarray(start, end))]);
      return;
    }
    if (this.state !== 'open') {
      // After channel.close only close-ok (or a crossing close) counts (spec §2.2.4).
      if (type === FRAME_METHOD) {
        const m = decodeMethod(buf, start, end);
        if (m.key === M.ChannelCloseOk) this.finish();
        else if (m.key === M.ChannelClose) this.conn.sendMethod(this.id, { key: M.ChannelCloseOk });
      }
      return;
    }
    try {
      if (type === FRAME_METHOD) {
        if (this.assembler.active) {
          throw new AmqpError(
            'UNEXPECTED_FRAME',
            this.assembler.properties === null
              ? 'expected content header for class 60, got non content header frame instead'
              : 'expected content body, got non content body frame instead',
            60,
            40,
          );
        }
        const m = decodeMethod(buf, start, end);
        try {
          this.onMethod(m);
        } catch (err) {
          if (err instanceof AmqpError) err.at(m.key >>> 16, m.key & 0xffff);
          throw err;
        }
      } else if (type === FRAME_HEADER) {
        if (!this.assembler.active) throw new AmqpError('UNEXPECTED_FRAME', `expected method frame, got non method frame instead`);
        if (this.assembler.header(buf, start, end)) this.completePublishAt();
      } else if (type === FRAME_BODY) {
        if (!this.assembler.active) throw new AmqpError('UNEXPECTED_FRAME', `expected method frame, got non method frame instead`);
        if (this.assembler.bodyFrame(buf, start, end)) this.completePublishAt();
      } else {
        throw new AmqpError('FRAME_ERROR', `unknown frame type ${type}`);
      }
    } catch (err) {
      if (err instanceof AmqpError && !err.isConnectionError) this.fail(err);
      else throw err;
    }
  }

  /** Frames that arrived while a cluster round trip was out; replayed in order after it. */
  private held: Array<[number, Buffer]> | null = null;

  /**
   * Holds this channel's later frames until `work` (a round trip to etcd or another node)
   * settles, so replies keep the order of the methods, as AMQP requires.
   */
  park(work: Promise<void>): void {
    this.held ??= [];
    work.then(
      () => this.unpark(),
      (err: unknown) => {
        this.fail(err instanceof AmqpError ? err : new AmqpError('INTERNAL_ERROR', err instanceof Error ? err.message : String(err)));
        this.unpark();
      },
    );
  }

  private unpark(): void {
    const frames = this.held ?? [];
    this.held = null;
    try {
      for (let i = 0; i < frames.length; i++) {
        if (this.held !== null) {
          // Parked again by a replayed method: the rest waits, still ahead of newer frames.
          (this.held as Array<[number, Buffer]>).push(...frames.slice(i));
          break;
        }
        const [type, frame] = frames[i]!;
        this.onFrame(type, frame, 0, frame.length);
      }
    } catch (err) {
      this.conn.failConnection(err instanceof AmqpError ? err : new AmqpError('INTERNAL_ERROR', String(err)));
    }
    this.conn.requestFlush();
  }

  private onMethod(m: Method): void {
    switch (m.key) {
      case M.BasicPublish:
        if (m.immediate) throw new AmqpError('NOT_IMPLEMENTED', 'immediate=true', 60, 40);
        this.assembler.start({ exchange: m.exchange, routingKey: m.routingKey, mandatory: m.mandatory });
        return;
      case M.BasicAck:
        this.settle(m.deliveryTag, m.multiple, 'ack', false, m.key);
        return;
      case M.BasicNack:
        this.settle(m.deliveryTag, m.multiple, 'reject', m.requeue, m.key);
        return;
      case M.BasicReject:
        this.settle(m.deliveryTag, false, 'reject', m.requeue, m.key);
        return;
      case M.BasicConsume:
        this.consume(m);
        return;
      case M.BasicCancel:
        this.cancel(m.consumerTag);
        if (!m.noWait) this.conn.sendMethod(this.id, { key: M.BasicCancelOk, consumerTag: m.consumerTag });
        return;
      case M.BasicGet:
        this.get(m.queue, m.noAck);
        return;
      case M.BasicQos:
        if (m.prefetchSize !== 0) throw new AmqpError('NOT_IMPLEMENTED', `prefetch_size!=0 (${m.prefetchSize})`, 60, 10);
        if (m.global) this.globalPrefetch = m.prefetchCount;
        else this.prefetchCount = m.prefetchCount;
        this.conn.sendMethod(this.id, { key: M.BasicQosOk });
        this.drainQueues();
        return;
      case M.BasicRecover:
      case M.BasicRecoverAsync:
        if (!m.requeue) throw new AmqpError('NOT_IMPLEMENTED', 'requeue=false', m.key >>> 16, m.key & 0xffff);
        this.requeueAll();
        if (m.key === M.BasicRecover) this.conn.sendMethod(this.id, { key: M.BasicRecoverOk });
        return;
      case M.ConfirmSelect:
        if (this.tx !== null) throw new AmqpError('PRECONDITION_FAILED', 'cannot switch from tx to confirm mode', 85, 10);
        this.confirms ??= new ConfirmTracker(this.id, () => this.conn.requestFlush());
        if (!m.noWait) this.conn.sendMethod(this.id, { key: M.ConfirmSelectOk });
        return;
      case M.TxSelect:
        if (this.confirms !== null) throw new AmqpError('PRECONDITION_FAILED', 'cannot switch from confirm to tx mode', 90, 10);
        this.tx ??= new Transaction<Delivery>();
        this.conn.sendMethod(this.id, { key: M.TxSelectOk });
        return;
      case M.TxCommit:
        this.commit();
        this.conn.sendMethod(this.id, { key: M.TxCommitOk });
        return;
      case M.TxRollback:
        this.rollback();
        this.conn.sendMethod(this.id, { key: M.TxRollbackOk });
        return;
      case M.ChannelFlow:
        if (!m.active) throw new AmqpError('NOT_IMPLEMENTED', 'active=false', 20, 20);
        this.conn.sendMethod(this.id, { key: M.ChannelFlowOk, active: true });
        return;
      case M.ChannelClose:
        this.teardown();
        this.conn.sendMethod(this.id, { key: M.ChannelCloseOk });
        this.finish();
        return;
      case M.ChannelCloseOk:
        throw new AmqpError('COMMAND_INVALID', 'unimplemented method', 20, 41);
      case M.ChannelOpen:
        throw new AmqpError('CHANNEL_ERROR', 'second \'channel.open\' seen', 20, 10);
      case M.AccessRequest:
        this.conn.sendMethod(this.id, { key: M.AccessRequestOk, ticket: 1 });
        return;
      default: {
        const cluster = this.conn.broker.cluster;
        if (cluster == null) {
          if (!handleTopologyMethod(this, m)) throw new AmqpError('COMMAND_INVALID', `unexpected method on channel ${this.id}`, m.key >>> 16, m.key & 0xffff);
          return;
        }
        // In a cluster the reply waits until etcd has the change (read-your-writes from any node).
        const replies: Method[] = [];
        const remote: Array<Promise<void>> = [];
        const out = { reply: (r: Method) => void replies.push(r), defer: (p: Promise<void>) => void remote.push(p) };
        if (!handleTopologyMethod(this, m, out)) {
          throw new AmqpError('COMMAND_INVALID', `unexpected method on channel ${this.id}`, m.key >>> 16, m.key & 0xffff);
        }
        const classMethod = (err: unknown): never => {
          throw err instanceof AmqpError ? err.at(m.key >>> 16, m.key & 0xffff) : err;
        };
        this.park(
          Promise.all(remote).catch(classMethod).then(() => cluster.commitTopology()).then(
            () => {
              for (const r of replies) this.conn.sendMethod(this.id, r);
            },
            (err: unknown) => {
              if (err instanceof AmqpError) throw err;
              this.conn.log.warn({ err: (err as Error).message }, 'cluster metadata store unavailable');
              throw new AmqpError('INTERNAL_ERROR', 'cluster metadata store (etcd) unavailable; try again', m.key >>> 16, m.key & 0xffff);
            },
          ),
        );
        return;
      }
    }
  }

  // ---- publishing ------------------------------------------------------------------------

  private completePublishAt(): void {
    try {
      this.completePublish();
    } catch (err) {
      if (err instanceof AmqpError) err.at(60, 40);
      throw err;
    }
  }

  private completePublish(): void {
    const a = this.assembler;
    const p = a.publish!;
    let properties = a.properties!;
    const body = a.body!;
    a.reset();
    const vhost = this.session.vhost;
    if (this.conn.isClusterLink && p.exchange === MIRROR_EXCHANGE) {
      this.mirrorOp(p.routingKey, properties, body);
      return;
    }
    const exchange = vhost.exchanges.get(p.exchange);
    if (exchange === undefined) throw vhost.noExchange(p.exchange).at(60, 40);
    const denied = this.session.access.check('write', 'exchange', p.exchange);
    if (denied !== undefined) throw new AmqpError('ACCESS_REFUSED', denied, 60, 40);
    if (exchange.type === 'topic') {
      const topicDenied = this.session.access.checkTopic('write', p.exchange, p.routingKey);
      if (topicDenied !== undefined) throw new AmqpError('ACCESS_REFUSED', topicDenied, 60, 40);
    }
    if (exchange.internal) {
      throw new AmqpError('ACCESS_REFUSED', `cannot publish to internal exchange '${p.exchange}' in vhost '${vhost.name}'`, 60, 40);
    }
    let extraKeys: string[] | null = null;
    let bcc: string[] | null = null;
    const flags = properties.length >= 2 ? properties.readUInt16BE(0) : 0;
    if ((flags & INSPECTED_PROPERTIES) !== 0) {
      const inspected = this.inspectProperties(properties);
      properties = inspected.raw;
      extraKeys = inspected.extraKeys;
      bcc = inspected.bcc;
    }
    this.conn.notePublish();
    const msg = new Message(p.exchange, p.routingKey, properties, body);
    msg.bcc = bcc;
    if ((flags & EXPIRATION_FLAG) !== 0) msg.ttl = parseExpiration(readExpiration(properties, 0, properties.length)!);
    this.stats.published++;
    if (this.tx !== null) {
      this.tx.publishes.push({ exchange, msg, mandatory: p.mandatory, extraKeys });
      return;
    }
    this.route(exchange, msg, p.mandatory, extraKeys);
  }

  /**
   * The few properties the broker acts on before routing: user-id must match the login
   * (RabbitMQ validates it), a reply-to of amq.rabbitmq.reply-to becomes this channel's
   * reply queue, and CC/BCC headers add routing keys (BCC is stripped before delivery).
   * The caller only gets here when one of those property flags is set.
   */
  private inspectProperties(raw: Buffer): { raw: Buffer; extraKeys: string[] | null; bcc: string[] | null } {
    const props = decodeProperties(raw, 0, raw.length);
    let changed = false;
    let extraKeys: string[] | null = null;
    let bcc: string[] | null = null;
    if (props.userId !== undefined && props.userId !== this.conn.userName) {
      throw new AmqpError('PRECONDITION_FAILED', `user_id property set to '${props.userId}' but authenticated user was '${this.conn.userName}'`, 60, 40);
    }
    if (props.replyTo === REPLY_TO) {
      if (this.replyQueue === null) {
        throw new AmqpError('PRECONDITION_FAILED', 'fast reply consumer does not exist', 60, 40);
      }
      props.replyTo = this.replyQueue.name;
      changed = true;
    }
    if (props.headers !== undefined) {
      const cc = routingKeysOf(tableGet(props.headers, 'CC'));
      const bccKeys = routingKeysOf(tableGet(props.headers, 'BCC'));
      if (cc.length !== 0 || bccKeys.length !== 0) extraKeys = [...cc, ...bccKeys];
      if (bccKeys.length !== 0) bcc = bccKeys;
      if (tableGet(props.headers, 'BCC') !== undefined) {
        props.headers = props.headers.filter(([k]) => k !== 'BCC');
        changed = true;
      }
    }
    return { raw: changed ? encodeProperties(props) : raw, extraKeys, bcc };
  }

  private route(exchange: Exchange, msg: Message, mandatory: boolean, extraKeys: string[] | null): void {
    const vhost = this.session.vhost;
    const cluster = this.conn.broker.cluster;
    let routed: number;
    if (cluster == null) routed = vhost.publish(exchange, msg, extraKeys);
    else {
      // A publish forwarded over a link was routed by the sending node: only local queues here.
      cluster.localOnly = this.conn.isClusterLink;
      cluster.takeForwards(); // anything left by a publish not made on a channel (dead letters)
      try {
        routed = vhost.publish(exchange, msg, extraKeys);
      } finally {
        cluster.localOnly = false;
      }
      const forwards = cluster.takeForwards();
      if (forwards !== null) {
        this.routeRemote(msg, mandatory, routed, vhost.lastPublishRejected, forwards);
        return;
      }
    }
    if (routed === 0 && exchange.name === '' && msg.routingKey.startsWith(REPLY_TO_PREFIX)) {
      const replyQueue = this.conn.broker.directReply.lookup(msg.routingKey);
      if (replyQueue !== undefined) {
        replyQueue.enqueue(msg);
        routed = 1;
      }
    }
    const rejected = vhost.lastPublishRejected;
    // A mandatory message held by a delayed exchange is judged when its delay ends.
    if (mandatory && vhost.lastPublishHeld) vhost.returnHeldTo(this);
    if (vhost.backloggedQueue !== null) {
      this.conn.throttleFor(vhost.backloggedQueue);
      vhost.backloggedQueue = null;
    }
    if (routed === 0 && mandatory && !rejected) {
      this.conn.writer.basicReturn(this.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
    }
    const confirms = this.confirms;
    if (confirms !== null) {
      const seq = confirms.next();
      if (rejected) confirms.rejected(seq);
      else if (msg.storeId !== 0 || msg.delayDurable) {
        if (msg.delayDurable) this.delayedSyncs = true;
        this.awaitSync(confirms, seq);
      }
      else confirms.confirmed(seq);
    }
  }

  /** Replication from a mirrored queue's leader: applied, then confirmed after our own fsync. */
  private mirrorOp(queue: string, properties: Buffer, body: Buffer): void {
    const stored = this.conn.broker.cluster!.mirrorOp(this.session.vhost.name, queue, properties, body);
    const confirms = this.confirms;
    if (confirms === null) return;
    const seq = confirms.next();
    if (stored) this.awaitSync(confirms, seq);
    else confirms.confirmed(seq);
  }

  /** Some queues were on other nodes: the confirm waits for their home nodes (and local disk). */
  private routeRemote(msg: Message, mandatory: boolean, routed: number, rejected: boolean, forwards: Array<Promise<void>>): void {
    if (routed === 0 && mandatory) {
      this.conn.writer.basicReturn(this.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
    }
    const confirms = this.confirms;
    if (confirms === null) {
      for (const f of forwards) f.catch(() => undefined);
      return;
    }
    const seq = confirms.next();
    if (rejected) {
      confirms.rejected(seq);
      for (const f of forwards) f.catch(() => undefined);
      return;
    }
    const store = this.conn.broker.store;
    if (msg.storeId !== 0 && store !== null) {
      forwards.push(new Promise<void>((resolve, reject) => store.afterSync((err) => (err === null ? resolve() : reject(err)))));
    }
    confirms.awaitExternal(seq);
    Promise.all(forwards).then(
      () => {
        if (this.confirms === confirms) confirms.external(seq, true);
      },
      () => {
        if (this.confirms === confirms) confirms.external(seq, false);
      },
    );
  }

  /**
   * A persistent message reached a durable queue: its confirm waits for the group commit.
   * Registration with the store happens once per channel per I/O turn, in flushConfirms,
   * after the turn's publishes were appended, so one sync callback covers all of them.
   */
  private awaitSync(confirms: ConfirmTracker, seq: number): void {
    confirms.awaitSync(seq);
    if (this.unregisteredSyncs++ === 0) this.conn.requestFlush();
  }

  private unregisteredSyncs = 0;
  /** Some of them wait for the delayed-message store's fsync too. */
  private delayedSyncs = false;

  /** A held mandatory message found no route when its delay ended (see DelayedExchange). */
  returnUnroutable(msg: Message): void {
    if (this.state !== 'open') return;
    this.conn.writer.basicReturn(this.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
  }

  flushConfirms(): void {
    const confirms = this.confirms;
    if (confirms === null) return;
    if (this.unregisteredSyncs !== 0) {
      const n = this.unregisteredSyncs;
      this.unregisteredSyncs = 0;
      const delayed = this.delayedSyncs;
      this.delayedSyncs = false;
      this.conn.broker.afterSync(delayed, (err) => {
        if (this.confirms !== confirms) return;
        if (err !== null) this.conn.log.error({ err: err.message }, 'message store sync failed; nacking publishes');
        confirms.syncedOldest(n, err === null);
      });
    }
    confirms.flush(this.conn.writer);
  }

  // ---- consuming -------------------------------------------------------------------------

  private consume(m: MethodOf<'BasicConsume'>): void {
    let tag = m.consumerTag;
    if (tag === '') tag = `amq.ctag-${randomBytes(16).toString('base64url')}`;
    else if (this.consumers.has(tag)) {
      throw new AmqpError('NOT_ALLOWED', `attempt to reuse consumer tag '${tag}'`, 60, 20);
    }
    let queue: Queue;
    if (m.queue === REPLY_TO) {
      if (!m.noAck) throw new AmqpError('PRECONDITION_FAILED', 'reply consumer cannot acknowledge', 60, 20);
      if (this.replyQueue !== null) throw new AmqpError('PRECONDITION_FAILED', 'reply consumer already set', 60, 20);
      queue = this.replyQueue = this.conn.broker.directReply.create(this.session.vhost.name, this.conn);
    } else {
      queue = this.session.vhost.queue(this.expandQueueName(m.queue), this.conn);
      const denied = this.session.access.check('read', 'queue', queue.name);
      if (denied !== undefined) throw new AmqpError('ACCESS_REFUSED', denied, 60, 20);
    }
    const args = tablePlain(m.arguments);
    validateConsumerPriority(queue.name, queue.vhost, tableGet(m.arguments, 'x-priority'));
    const priority = fieldInt(tableGet(m.arguments, 'x-priority')) ?? 0;
    try {
      queue.assertConsumable(m.exclusive);
    } catch (err) {
      throw err instanceof AmqpError ? err.at(60, 20) : err;
    }
    const consumer = new ChannelConsumer(this, queue, tag, m.noAck, m.exclusive, priority, this.prefetchCount, this.conn, args);
    const remote = queue.remote;
    if (remote !== null) {
      this.park(
        remote.consume(consumer, m.arguments, this.prefetchCount).then(
          (accepted) => {
            if (this.state !== 'open') {
              remote.cancel(consumer);
              return;
            }
            if (!m.noWait) this.conn.sendMethod(this.id, { key: M.BasicConsumeOk, consumerTag: tag });
            this.consumers.set(tag, consumer);
            accepted.start();
          },
          (err: unknown) => {
            throw err instanceof AmqpError ? err.at(60, 20) : err;
          },
        ),
      );
      return;
    }
    // consume-ok must precede the first delivery, and addConsumer delivers synchronously.
    if (!m.noWait) this.conn.sendMethod(this.id, { key: M.BasicConsumeOk, consumerTag: tag });
    this.consumers.set(tag, consumer);
    queue.addConsumer(consumer);
  }

  private cancel(tag: string): void {
    const consumer = this.consumers.get(tag);
    if (consumer === undefined) return;
    this.consumers.delete(tag);
    if (consumer.queue === this.replyQueue) {
      this.replyQueue = null;
      consumer.queue.delete('deleted');
      return;
    }
    if (consumer.queue.remote !== null) consumer.queue.remote.cancel(consumer);
    else consumer.queue.removeConsumer(consumer);
  }

  /** The queue was deleted under the consumer: tell the client (consumer_cancel_notify). */
  consumerCancelledByServer(consumer: ChannelConsumer): void {
    if (this.consumers.get(consumer.tag) !== consumer) return;
    this.consumers.delete(consumer.tag);
    if (this.state === 'open') {
      this.conn.sendMethod(this.id, { key: M.BasicCancel, consumerTag: consumer.tag, noWait: true });
    }
  }

  canDeliver(noAck: boolean): boolean {
    if (this.state !== 'open') return false;
    if (!noAck && this.globalPrefetch !== 0 && this.unacked.size >= this.globalPrefetch) return false;
    return this.conn.canSend();
  }

  deliver(consumer: ChannelConsumer, queue: Queue, entry: QueueEntry): void {
    const tag = this.nextDeliveryTag++;
    if (!consumer.noAck) this.track({ tag, queue, entry, consumer, deliveredAt: Date.now() });
    this.stats.delivered++;
    const msg = entry.msg;
    this.conn.writer.deliver(this.id, consumer.tagBytes, tag, entry.redelivered, msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
  }

  private get(queueName: string, noAck: boolean): void {
    const queue = this.session.vhost.queue(this.expandQueueName(queueName), this.conn);
    const denied = this.session.access.check('read', 'queue', queue.name);
    if (denied !== undefined) throw new AmqpError('ACCESS_REFUSED', denied, 60, 70);
    if (queue.remote !== null) {
      this.park(
        queue.remote.get(noAck).then(
          (got) => {
            if (got === null) this.conn.sendMethod(this.id, { key: M.BasicGetEmpty });
            else this.sendGetOk(queue, got.entry, noAck, got.messageCount);
          },
          (err: unknown) => {
            throw err instanceof AmqpError ? err.at(60, 70) : err;
          },
        ),
      );
      return;
    }
    const entry = queue.get(noAck);
    if (entry === undefined) {
      this.conn.sendMethod(this.id, { key: M.BasicGetEmpty });
      return;
    }
    this.sendGetOk(queue, entry, noAck, queue.messageCount);
  }

  private sendGetOk(queue: Queue, entry: QueueEntry, noAck: boolean, messageCount: number): void {
    const tag = this.nextDeliveryTag++;
    if (!noAck) this.track({ tag, queue, entry, consumer: null, deliveredAt: Date.now() });
    this.stats.delivered++;
    const msg = entry.msg;
    this.conn.writer.getOk(this.id, tag, entry.redelivered, msg.exchange, msg.routingKey, messageCount, msg.rawProperties, msg.body);
  }

  /** Let every queue this channel consumes from try again (capacity came back). */
  drainQueues(): void {
    for (const c of this.consumers.values()) c.queue.drain();
  }

  // ---- acknowledgements ------------------------------------------------------------------

  private track(d: Delivery): void {
    this.unacked.add(d);
    this.timeouts.track(d);
  }

  /** basic.ack / nack / reject: settled now, or at commit inside a transaction. */
  private settle(deliveryTag: number, multiple: boolean, kind: 'ack' | 'reject', requeue: boolean, key: number): void {
    const taken = this.unacked.take(deliveryTag, multiple, key);
    if (this.tx !== null) {
      this.tx.settlements.push({ deliveries: taken, kind, requeue });
      return;
    }
    this.apply(taken, kind, requeue);
  }

  private apply(deliveries: Delivery[], kind: 'ack' | 'reject', requeue: boolean): void {
    if (kind === 'ack') {
      for (const d of deliveries) d.queue.ack(d.entry);
      this.stats.acked += deliveries.length;
    } else if (requeue) {
      requeueByQueue(deliveries);
    } else {
      for (const d of deliveries) d.queue.discard(d.entry);
    }
    this.drainQueues();
  }

  private requeueAll(): void {
    requeueByQueue(this.unacked.takeAll());
    this.drainQueues();
  }

  // ---- transactions ----------------------------------------------------------------------

  private commit(): void {
    const tx = this.tx;
    if (tx === null) throw new AmqpError('PRECONDITION_FAILED', 'channel is not transactional', 90, 20);
    const { publishes, settlements } = tx.take();
    for (const p of publishes) this.route(p.exchange, p.msg, p.mandatory, p.extraKeys);
    for (const s of settlements) this.apply(s.deliveries, s.kind, s.requeue);
  }

  private rollback(): void {
    const tx = this.tx;
    if (tx === null) throw new AmqpError('PRECONDITION_FAILED', 'channel is not transactional', 90, 30);
    const { settlements } = tx.take();
    // Settled-in-transaction deliveries become unacked again under their own tags, as
    // RabbitMQ's rollback does; the map is rebuilt in tag order because multiple-acks rely on it.
    if (settlements.length === 0) return;
    this.unacked.restore(settlements.flatMap((x) => x.deliveries));
  }

  // ---- errors and teardown ---------------------------------------------------------------

  /** Soft error: channel.close with the reply; the connection carries on. */
  fail(err: AmqpError): void {
    if (this.state !== 'open') return;
    this.conn.log.debug({ channel: this.id, code: err.code, text: err.replyText }, 'channel error');
    this.teardown();
    this.state = 'closing';
    this.conn.sendMethod(this.id, {
      key: M.ChannelClose,
      replyCode: err.code,
      replyText: err.replyText.slice(0, 255),
      classId: err.classId,
      methodId: err.methodId,
    });
  }

  /**
   * The one teardown path (client close, channel error, connection loss): cancel consumers,
   * requeue everything unacked, drop a half-assembled publish and any open transaction.
   * Idempotent.
   */
  teardown(): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.state = 'closing';
    this.assembler.reset();
    this.tx = null;
    this.timeouts.stop();
    // Requeue before the consumers go: this channel no longer accepts deliveries, so the
    // messages return to their places first and the next consumer (e.g. the next single
    // active consumer) receives them in order.
    requeueByQueue(this.unacked.takeAll());
    const consumers = [...this.consumers.values()];
    this.consumers.clear();
    for (const c of consumers) {
      if (c.queue === this.replyQueue) c.queue.delete('owner-closed');
      else if (c.queue.remote !== null) c.queue.remote.cancel(c);
      else c.queue.removeConsumer(c);
    }
    this.replyQueue = null;
  }

  private finish(): void {
    this.state = 'closed';
    this.conn.channelClosed(this);
  }
}

