import { randomBytes } from 'node:crypto';
import type { Message } from '../core/message';
import type { Queue, QueueEntry } from '../core/queue/queue';
import { AmqpError } from '../protocol/errors';
import { fieldInt, tableGet, tablePlain } from '../protocol/field-table';
import { FRAME_BODY, FRAME_HEADER, FRAME_METHOD } from '../protocol/frame-reader';
import { decodeMethod, M, Method, MethodOf } from '../protocol/spec';
import type { SessionContext } from './broker-context';
import { consumeRemote, getRemote, handleClusterTopologyMethod } from './channel-cluster';
import { ChannelConsumer } from './channel-consumer';
import { ChannelPublisher } from './channel-publish';
import type { Connection } from './connection';
import { ContentAssembler } from './content-assembler';
import { REPLY_TO } from './direct-reply';
import { FrameHold } from './frame-hold';
import { handleTopologyMethod } from './topology';
import { Transaction } from './transaction';
import { ConfirmTracker } from './confirms';
import { validateConsumerPriority } from '../core/queue/arguments';
import { Delivery, requeueByQueue, UnackedDeliveries } from './unacked';
import { ConsumerTimeouts } from './consumer-timeout';


type State = 'open' | 'closing' | 'closed';

/**
 * An AMQP channel: method dispatch and lifecycle, consumers, and the delivery tags it owes
 * acks for. Publishing lives in channel-publish.ts, cluster-only paths in channel-cluster.ts,
 * exchange and queue methods in topology.ts.
 */
export class Channel {
  private state: State = 'open';
  private readonly assembler = new ContentAssembler();
  private readonly publisher = new ChannelPublisher(this);
  /** Frames held while a cluster round trip is out (see park). */
  private readonly hold: FrameHold;
  readonly consumers = new Map<string, ChannelConsumer>();
  private readonly unacked = new UnackedDeliveries();
  private readonly timeouts: ConsumerTimeouts;
  private nextDeliveryTag = 1;
  private prefetchCount = 0;
  private globalPrefetch = 0;
  private tx: Transaction<Delivery> | null = null;
  private directReplyQueue: Queue | null = null;
  readonly stats = { published: 0, delivered: 0, acked: 0 };
  /** For RabbitMQ's '' shortcut: methods naming queue '' mean the channel's last declared queue. */
  lastDeclaredQueue = '';

  constructor(
    readonly id: number,
    readonly conn: Connection,
    readonly session: SessionContext,
  ) {
    this.hold = new FrameHold(conn);
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
    return this.publisher.confirms !== null;
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get transactional(): boolean {
    return this.tx !== null;
  }

  /** This channel's amq.rabbitmq.reply-to queue, once it consumes from one. */
  get replyQueue(): Queue | null {
    return this.directReplyQueue;
  }

  expandQueueName(name: string): string {
    if (name !== '') return name;
    if (this.lastDeclaredQueue === '') throw new AmqpError('NOT_FOUND', 'no previously declared queue');
    return this.lastDeclaredQueue;
  }

  onFrame(type: number, buf: Buffer, start: number, end: number): void {
    if (this.hold.holding && this.state === 'open') {
      this.hold.add(type, buf, start, end);
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
        if (this.assembler.header(buf, start, end)) this.completePublish();
      } else if (type === FRAME_BODY) {
        if (!this.assembler.active) throw new AmqpError('UNEXPECTED_FRAME', `expected method frame, got non method frame instead`);
        if (this.assembler.bodyFrame(buf, start, end)) this.completePublish();
      } else {
        throw new AmqpError('FRAME_ERROR', `unknown frame type ${type}`);
      }
    } catch (err) {
      if (err instanceof AmqpError && !err.isConnectionError) this.fail(err);
      else throw err;
    }
  }

  /**
   * Holds this channel's later frames until `work` (a round trip to etcd or another node)
   * settles, so replies keep the order of the methods, as AMQP requires.
   */
  park(work: Promise<void>): void {
    this.hold.start();
    work.then(
      () => this.unpark(),
      (err: unknown) => {
        this.fail(err instanceof AmqpError ? err : new AmqpError('INTERNAL_ERROR', err instanceof Error ? err.message : String(err)));
        this.unpark();
      },
    );
  }

  private unpark(): void {
    try {
      this.hold.release(this);
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
        this.publisher.confirms ??= new ConfirmTracker(this.id, () => this.conn.requestFlush());
        if (!m.noWait) this.conn.sendMethod(this.id, { key: M.ConfirmSelectOk });
        return;
      case M.TxSelect:
        if (this.publisher.confirms !== null) throw new AmqpError('PRECONDITION_FAILED', 'cannot switch from confirm to tx mode', 90, 10);
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
        const handled = cluster == null ? handleTopologyMethod(this, m) : handleClusterTopologyMethod(this, cluster, m);
        if (!handled) throw new AmqpError('COMMAND_INVALID', `unexpected method on channel ${this.id}`, m.key >>> 16, m.key & 0xffff);
        return;
      }
    }
  }
  // ---- publishing ------------------------------------------------------------------------

  private completePublish(): void {
    const a = this.assembler;
    const p = a.publish!;
    const properties = a.properties!;
    const body = a.body!;
    a.reset();
    try {
      this.publisher.publish(p, properties, body, this.tx);
    } catch (err) {
      if (err instanceof AmqpError) err.at(60, 40);
      throw err;
    }
  }

  /** A held mandatory message found no route when its delay ended (see DelayedExchange). */
  returnUnroutable(msg: Message): void {
    if (this.state !== 'open') return;
    this.conn.writer.basicReturn(this.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
  }

  flushConfirms(): void {
    this.publisher.flushConfirms();
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
      if (this.directReplyQueue !== null) throw new AmqpError('PRECONDITION_FAILED', 'reply consumer already set', 60, 20);
      queue = this.directReplyQueue = this.conn.broker.directReply.create(this.session.vhost.name, this.conn);
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
    if (queue.remote !== null) {
      consumeRemote(this, queue.remote, consumer, m.arguments, m.noWait);
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
    if (consumer.queue === this.directReplyQueue) {
      this.directReplyQueue = null;
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
      getRemote(this, queue, queue.remote, noAck);
      return;
    }
    const entry = queue.get(noAck);
    if (entry === undefined) {
      this.conn.sendMethod(this.id, { key: M.BasicGetEmpty });
      return;
    }
    this.sendGetOk(queue, entry, noAck, queue.messageCount);
  }

  /** basic.get-ok for an entry taken from `queue` (here or, in a cluster, on its home node). */
  sendGetOk(queue: Queue, entry: QueueEntry, noAck: boolean, messageCount: number): void {
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
    for (const p of publishes) this.publisher.route(p.exchange, p.msg, p.mandatory, p.extraKeys);
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
      if (c.queue === this.directReplyQueue) c.queue.delete('owner-closed');
      else if (c.queue.remote !== null) c.queue.remote.cancel(c);
      else c.queue.removeConsumer(c);
    }
    this.directReplyQueue = null;
  }

  private finish(): void {
    this.state = 'closed';
    this.conn.channelClosed(this);
  }
}

