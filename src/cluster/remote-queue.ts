import { Message } from '../core/message';
import { EnqueueOutcome, Queue, QueueObserver } from '../core/queue/queue';
import type { QueueSettings } from '../core/queue/settings';
import type { Consumer } from '../core/queue/consumer';
import { EntryState, QueueEntry } from '../core/queue/entry';
import type { RemoteQueueOps } from '../core/queue/remote';
import { AmqpError } from '../protocol/errors';
import { FieldTable, tableGet } from '../protocol/field-table';
import { M } from '../protocol/spec';
import type { LinkChannel, LinkDelivery } from './link-client';
import { LinkClosedError } from './link-client';

/** What a proxy needs from the cluster: links to the home node and its liveness. */
export interface QueueHomeLinks {
  /** A fresh channel on the link to `node` for `vhost` (one per consumer, for its prefetch). */
  openChannel(node: string, vhost: string): Promise<LinkChannel>;
  /** Forward a routed message to `node`; resolves on the home's confirm. */
  forward(node: string, vhost: string, msg: Message): void;
  /** Sends a held message to `node` once, however many proxies held it; resolves on its confirm. */
  forwardOnce(node: string, vhost: string, msg: Message): Promise<void>;
  /** Makes the publisher's confirm of the message being routed wait on `p`. */
  addPending(p: Promise<void>): void;
  isUp(node: string): boolean;
  /** Mirrored queues fail over: their consumers wait for the new leader instead of being cancelled. */
  isMirrored(vhost: string, queue: string): boolean;
}

/** How long a consumer of a mirrored queue waits for a new leader before it is cancelled. */
const FAILOVER_WAIT_MS = 30_000;
/** How long, and how many, publishes to a mirrored queue wait for its new leader before a nack. */
const HOLD_MS = 15_000;
const HOLD_MAX = 100_000;

interface HeldPublish {
  msg: Message;
  resolve(): void;
  reject(err: Error): void;
}

/** A delivery that came over a link: settling it goes back over the same link channel. */
interface RemoteEntry extends QueueEntry {
  readonly link: LinkChannel;
  readonly remoteTag: number;
}

/**
 * A queue whose messages live on another node (its home). It sits in the vhost like any
 * queue, so routing, bindings, permissions and equivalence checks work unchanged; what touches
 * messages is forwarded: publishes to the home node over the link (confirmed by the home),
 * consumers as link consumers with the same prefetch, gets and acks as link methods.
 */
export class RemoteQueue extends Queue {
  private cachedCounts = { messageCount: 0, consumerCount: 0 };
  private readonly consumersByLink = new Map<Consumer, LinkChannel>();
  /** What each consumer asked for, to subscribe it again at a new leader. */
  private readonly subscriptions = new Map<Consumer, { args: FieldTable; prefetch: number }>();
  /** Consumers of a mirrored queue whose leader is gone, waiting for the next one. */
  private readonly orphans = new Set<Consumer>();
  private orphanTimer: NodeJS.Timeout | null = null;
  private getChannel: Promise<LinkChannel> | null = null;
  private readonly ops: RemoteQueueOps;

  constructor(
    vhost: string,
    name: string,
    options: { durable: boolean; autoDelete: boolean; exclusiveOwner: object | null; arguments: FieldTable },
    observer: QueueObserver,
    settings: QueueSettings,
    home: string,
    private readonly links: QueueHomeLinks,
  ) {
    // The home node runs TTLs, limits and x-expires; the proxy must never act on them itself.
    super(vhost, name, { ...options, store: null, pager: null }, observer, { ...settings, expires: undefined });
    this.home = home;
    const self = this;
    this.ops = {
      get home() {
        return self.home;
      },
      get: (noAck) => self.remoteGet(noAck),
      consume: (consumer, args, prefetch) => self.remoteConsume(consumer, args, prefetch),
      cancel: (consumer) => self.remoteCancel(consumer),
      counts: () => self.remoteCounts(),
      purge: () => self.rpcCount({ key: M.QueuePurge, queue: name, noWait: false }),
      delete: (ifUnused, ifEmpty) => self.rpcCount({ key: M.QueueDelete, queue: name, ifUnused, ifEmpty, noWait: false }),
    };
  }

  /** The node that owns the messages: the home, or a mirrored queue's current leader. */
  home: string;

  override get remote(): RemoteQueueOps {
    return this.ops;
  }

  override get messageCount(): number {
    return this.cachedCounts.messageCount;
  }

  override get consumerCount(): number {
    return this.cachedCounts.consumerCount;
  }

  override applySettings(settings: QueueSettings): void {
    super.applySettings({ ...settings, expires: undefined });
  }

  override enqueue(msg: Message): EnqueueOutcome {
    this.stats.published++;
    if (!this.links.isMirrored(this.vhost, this.name)) this.links.forward(this.home, this.vhost, msg);
    else if (!this.links.isUp(this.home)) this.hold(msg);
    else this.forwardOrHold(msg);
    return EnqueueOutcome.Accepted;
  }

  /**
   * A mirrored queue's leader may have died without etcd knowing yet (its lease still runs):
   * a publish the link could not deliver waits for the next leader instead of being nacked.
   * A nack from the leader itself (overflow, fenced) stays a nack.
   */
  private forwardOrHold(msg: Message): void {
    const home = this.home;
    const pending = new Promise<void>((resolve, reject) => {
      this.links.forwardOnce(home, this.vhost, msg).then(resolve, (err: Error) => {
        if (err.message === 'nacked' || this.deleted || !this.links.isMirrored(this.vhost, this.name)) reject(err);
        else if (this.home !== home) this.links.forwardOnce(this.home, this.vhost, msg).then(resolve, reject);
        else this.heldPublishes.push({ msg, resolve, reject }), this.armHoldTimer();
      });
    });
    pending.catch(() => undefined);
    this.links.addPending(pending);
  }

  private armHoldTimer(): void {
    this.holdTimer ??= setTimeout(() => {
      this.holdTimer = null;
      this.releaseHeld(null);
    }, HOLD_MS);
    this.holdTimer.unref();
  }

  private heldPublishes: HeldPublish[] = [];
  private holdTimer: NodeJS.Timeout | null = null;

  /**
   * The leader of a mirrored queue is gone and the next one not known yet: the publish waits
   * (its confirm with it) rather than being refused, for a bounded time and number.
   */
  private hold(msg: Message): void {
    if (this.heldPublishes.length >= HOLD_MAX) {
      const refused = Promise.reject(this.unavailable());
      refused.catch(() => undefined);
      this.links.addPending(refused);
      return;
    }
    const pending = new Promise<void>((resolve, reject) => this.heldPublishes.push({ msg, resolve, reject }));
    pending.catch(() => undefined);
    this.links.addPending(pending);
    this.armHoldTimer();
  }

  /** Held publishes go to the new leader (or are refused when none came in time). */
  private releaseHeld(node: string | null): void {
    const held = this.heldPublishes;
    this.heldPublishes = [];
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    for (const h of held) {
      if (node === null) h.reject(this.unavailable());
      else this.links.forwardOnce(node, this.vhost, h.msg).then(h.resolve, h.reject);
    }
  }

  override get(): QueueEntry | undefined {
    throw this.unavailable();
  }

  override ack(entry: QueueEntry): void {
    const e = entry as RemoteEntry;
    this.stats.acked++;
    if (!e.link.closed) e.link.ack(e.remoteTag, false);
    this.settled(e.link);
  }

  override discard(entry: QueueEntry): void {
    const e = entry as RemoteEntry;
    if (!e.link.closed) e.link.reject(e.remoteTag, false);
    this.settled(e.link);
  }

  override requeue(entries: QueueEntry[]): void {
    for (const entry of entries) {
      const e = entry as RemoteEntry;
      if (!e.link.closed) e.link.reject(e.remoteTag, true);
      this.settled(e.link);
    }
  }

  /** Unsettled deliveries per consumer link; a cancelled consumer's link closes when it reaches 0. */
  private readonly outstanding = new Map<LinkChannel, number>();
  private readonly closeWhenSettled = new Set<LinkChannel>();

  private settled(link: LinkChannel): void {
    const n = (this.outstanding.get(link) ?? 0) - 1;
    if (n > 0) {
      this.outstanding.set(link, n);
      return;
    }
    this.outstanding.delete(link);
    if (this.closeWhenSettled.delete(link)) void link.close().catch(() => undefined);
  }

  override purge(): number {
    return 0;
  }

  override delete(reason: Parameters<Queue['delete']>[0]): number {
    if (this.deleted) return 0;
    const links = [...this.consumersByLink.values()];
    this.consumersByLink.clear();
    this.subscriptions.clear();
    this.releaseHeld(null);
    if (this.orphanTimer !== null) clearTimeout(this.orphanTimer);
    const orphans = [...this.orphans];
    this.orphans.clear();
    for (const c of orphans) c.cancelledByQueue(this);
    for (const l of links) void l.close().catch(() => undefined);
    void this.getChannel?.then((c) => c.close()).catch(() => undefined);
    this.getChannel = null;
    return super.delete(reason);
  }

  /**
   * The home node is gone: its consumers here are cancelled (basic.cancel), as RabbitMQ does;
   * a mirrored queue's consumers wait for the new leader instead (see rehome).
   */
  homeLost(): void {
    for (const [consumer, link] of [...this.consumersByLink]) {
      this.consumersByLink.delete(consumer);
      void link.close().catch(() => undefined);
      this.lostConsumer(consumer);
    }
    this.getChannel = null;
  }

  /** A mirrored queue failed over to `node`: consumers here follow it, unaware. */
  rehome(node: string): void {
    this.home = node;
    this.getChannel = null;
    this.releaseHeld(node);
    const moving = [...this.orphans, ...this.consumersByLink.keys()];
    for (const [, link] of this.consumersByLink) void link.close().catch(() => undefined);
    this.consumersByLink.clear();
    this.orphans.clear();
    this.orphansSettled();
    for (const consumer of moving) {
      const sub = this.subscriptions.get(consumer);
      if (sub === undefined) continue;
      this.remoteConsume(consumer, sub.args, sub.prefetch).then(
        (accepted) => accepted.start(),
        () => this.lostConsumer(consumer),
      );
    }
  }

  /** Promotion here: the consumers move to the local queue that replaces this proxy. */
  /** Promotion here: publishes held for the new leader go to the local queue that replaces this proxy. */
  takeHeld(): HeldPublish[] {
    const held = this.heldPublishes;
    this.heldPublishes = [];
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    return held;
  }

  takeConsumers(): Consumer[] {
    const out = [...this.orphans, ...this.consumersByLink.keys()];
    for (const [, link] of this.consumersByLink) void link.close().catch(() => undefined);
    this.consumersByLink.clear();
    this.orphans.clear();
    this.subscriptions.clear();
    return out;
  }

  private retryTimer: NodeJS.Timeout | null = null;

  private resubscribeOrphans(): void {
    if (this.orphans.size === 0 || this.deleted) {
      if (this.retryTimer !== null) clearInterval(this.retryTimer);
      this.retryTimer = null;
      return;
    }
    if (!this.links.isUp(this.home)) return;
    for (const consumer of [...this.orphans]) {
      const sub = this.subscriptions.get(consumer);
      if (sub === undefined) {
        this.orphans.delete(consumer);
        continue;
      }
      this.orphans.delete(consumer);
      this.remoteConsume(consumer, sub.args, sub.prefetch).then(
        (accepted) => {
          accepted.start();
          this.orphansSettled();
        },
        () => this.orphans.add(consumer),
      );
    }
  }

  /** No consumer waits any more: the give-up timer goes. */
  private orphansSettled(): void {
    if (this.orphans.size !== 0 || this.orphanTimer === null) return;
    clearTimeout(this.orphanTimer);
    this.orphanTimer = null;
  }

  private lostConsumer(consumer: Consumer): void {
    const sub = this.subscriptions.get(consumer);
    // RabbitMQ's x-cancel-on-ha-failover: the client asked to hear about failovers.
    const flag = sub === undefined ? undefined : tableGet(sub.args, 'x-cancel-on-ha-failover');
    const cancelOnFailover = flag?.type === 't' && flag.value;
    if (this.deleted || cancelOnFailover || !this.links.isMirrored(this.vhost, this.name)) {
      this.subscriptions.delete(consumer);
      consumer.cancelledByQueue(this);
      return;
    }
    this.orphans.add(consumer);
    // The leader may just have fenced itself (etcd out of reach) and come back without a
    // failover: then nothing rehomes the queue, so try the same home again now and then.
    this.retryTimer ??= setInterval(() => this.resubscribeOrphans(), 1000);
    this.retryTimer.unref();
    this.orphanTimer ??= setTimeout(() => {
      this.orphanTimer = null;
      const waiting = [...this.orphans];
      this.orphans.clear();
      if (this.retryTimer !== null) clearInterval(this.retryTimer);
      this.retryTimer = null;
      for (const c of waiting) {
        this.subscriptions.delete(c);
        c.cancelledByQueue(this);
      }
    }, FAILOVER_WAIT_MS);
    this.orphanTimer.unref();
  }

  unavailable(): AmqpError {
    const kind = this.durable ? 'durable ' : '';
    return new AmqpError('NOT_FOUND', `home node '${this.home}' of ${kind}queue '${this.name}' in vhost '${this.vhost}' is down or inaccessible`);
  }

  // ---- forwarded operations --------------------------------------------------------------

  private async sharedChannel(): Promise<LinkChannel> {
    if (!this.links.isUp(this.home)) throw this.unavailable();
    let ch = this.getChannel;
    if (ch !== null) {
      const c = await ch.catch(() => null);
      if (c !== null && !c.closed) return c;
    }
    ch = this.links.openChannel(this.home, this.vhost).catch((err) => this.translate(err));
    this.getChannel = ch;
    ch.catch(() => {
      if (this.getChannel === ch) this.getChannel = null;
    });
    return ch;
  }

  private async remoteGet(noAck: boolean): Promise<{ entry: QueueEntry; messageCount: number } | null> {
    const link = await this.sharedChannel();
    const d = await link.get(this.name, noAck).catch((err) => this.translate(err));
    if (d === null) return null;
    this.stats.delivered++;
    return { entry: this.entryOf(link, d), messageCount: d.messageCount ?? 0 };
  }

  private async remoteConsume(consumer: Consumer, args: FieldTable, prefetch: number): Promise<{ start(): void }> {
    if (!this.links.isUp(this.home)) throw this.unavailable();
    const link = await this.links.openChannel(this.home, this.vhost).catch((err) => this.translate(err));
    // Deliveries may arrive in the same read as consume-ok: hold them until the client has
    // seen its own consume-ok.
    let held: LinkDelivery[] | null = [];
    try {
      if (prefetch !== 0) await link.qos(prefetch, false);
      await link.consume(
        this.name,
        { consumerTag: consumer.tag, noAck: consumer.noAck, exclusive: consumer.exclusive, arguments: args },
        (d) => {
          if (held !== null) held.push(d);
          else this.deliverRemote(consumer, link, d);
        },
        () => this.remoteCancelled(consumer, link),
      );
    } catch (err) {
      void link.close().catch(() => undefined);
      return this.translate(err);
    }
    link.onClose = () => this.remoteCancelled(consumer, link);
    this.consumersByLink.set(consumer, link);
    this.subscriptions.set(consumer, { args, prefetch });
    return {
      start: () => {
        const pending = held ?? [];
        held = null;
        for (const d of pending) this.deliverRemote(consumer, link, d);
      },
    };
  }

  private remoteCancel(consumer: Consumer): void {
    this.subscriptions.delete(consumer);
    this.orphans.delete(consumer);
    const link = this.consumersByLink.get(consumer);
    if (link === undefined) return;
    this.consumersByLink.delete(consumer);
    // The client may still settle deliveries it got before cancelling (AMQP allows it): the
    // link channel, whose tags they are, closes once they are all settled (or the client's
    // channel goes, which requeues them).
    link.onClose = null;
    void link.cancel(consumer.tag).then(
      () => {
        if (this.outstanding.has(link)) this.closeWhenSettled.add(link);
        else return link.close();
      },
      () => undefined,
    ).catch(() => undefined);
  }

  private remoteCancelled(consumer: Consumer, link: LinkChannel): void {
    if (this.consumersByLink.get(consumer) !== link) return;
    this.consumersByLink.delete(consumer);
    this.lostConsumer(consumer);
  }

  private deliverRemote(consumer: Consumer, link: LinkChannel, d: LinkDelivery): void {
    if (this.consumersByLink.get(consumer) !== link && this.deleted) return;
    this.stats.delivered++;
    if (!consumer.noAck) this.outstanding.set(link, (this.outstanding.get(link) ?? 0) + 1);
    consumer.deliver(this, this.entryOf(link, d));
  }

  private async remoteCounts(): Promise<{ messageCount: number; consumerCount: number }> {
    const link = await this.sharedChannel();
    const r = await link.rpc({ key: M.QueueDeclare, queue: this.name, passive: true, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: [] }).catch((err) => this.translate(err));
    if (r.key === M.QueueDeclareOk) this.cachedCounts = { messageCount: r.messageCount, consumerCount: r.consumerCount };
    return this.cachedCounts;
  }

  private async rpcCount(m: Parameters<LinkChannel['rpc']>[0]): Promise<number> {
    const link = await this.sharedChannel();
    const r = await link.rpc(m).catch((err) => this.translate(err));
    return r.key === M.QueuePurgeOk || r.key === M.QueueDeleteOk ? r.messageCount : 0;
  }

  private entryOf(link: LinkChannel, d: LinkDelivery): RemoteEntry {
    return {
      msg: new Message(d.exchange, d.routingKey, d.properties, d.body),
      seq: 0,
      redelivered: d.redelivered,
      state: EntryState.Unacked,
      expiresAt: 0,
      level: 0,
      inHeap: false,
      link,
      remoteTag: d.deliveryTag,
    };
  }

  /** The home's channel error becomes ours (same code and text); a lost link means unavailable. */
  private translate(err: unknown): never {
    if (err instanceof LinkClosedError) throw new AmqpError(codeName(err.code), err.replyText);
    throw this.unavailable();
  }
}

function codeName(code: number): ConstructorParameters<typeof AmqpError>[0] {
  switch (code) {
    case 403:
      return 'ACCESS_REFUSED';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'RESOURCE_LOCKED';
    case 406:
      return 'PRECONDITION_FAILED';
    default:
      return 'INTERNAL_ERROR';
  }
}
