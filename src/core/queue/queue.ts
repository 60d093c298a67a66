import type { FieldTable } from '../../protocol/field-table';
import { Message } from '../message';
import type { Consumer } from './consumer';
import { EntryState, QueueEntry } from './entry';
import { ExpiryTimer } from './expiry-timer';
import { ReadyList } from './ready-list';
import { ColdTail } from './cold-tail';
import { ConsumerList } from './consumer-list';
import { IdleExpiry } from './idle-expiry';
import type { TransientPager } from '../paging';
import type { QueueSettings } from './settings';
import type { MessageStore } from '../../store/message-store';
import type { QueueMirrorHook, RemoteQueueOps } from './remote';

export type { QueueEntry } from './entry';

export interface QueueOptions {
  durable: boolean;
  /** Pages transient messages of long queues to disk under memory pressure. */
  pager?: TransientPager | null;
  /** Where persistent messages of a durable queue are recorded; null keeps them in memory only. */
  store?: MessageStore | null;
  exclusiveOwner: object | null;
  autoDelete: boolean;
  arguments: FieldTable;
}

/** Why a queue went away. */
export type QueueDeletedReason = 'deleted' | 'auto-delete' | 'owner-closed' | 'expired';

/** Why a message left a queue without being acknowledged (the x-death reasons). */
export type DeadLetterReason = 'rejected' | 'expired' | 'maxlen';

/** Outcome of offering a message to a queue. */
export const enum EnqueueOutcome {
  Accepted = 0,
  /** x-overflow reject-publish(-dlx) refused it: the publisher's confirm becomes a nack. */
  Rejected = 1,
}

/**
 * Internal flow control: a publisher that feeds a queue whose consumers are falling behind is
 * paused (its socket is not read) until the backlog halves, which keeps latency bounded the
 * way RabbitMQ's credit flow does. A queue without consumers is not a reason to throttle.
 */
export const FLOW_HIGH_WATER = 20_000;
/** The same in bytes, so a backlog of large messages is throttled before it fills memory. */
const FLOW_HIGH_BYTES = 64 * 1024 * 1024;
/** Ready messages per durable queue kept with their bytes in memory; beyond this they are paged out. */
const PAGE_OUT_AFTER = 2000;
/** Ready messages per durable queue kept as objects at all; beyond this only store ids (ColdTail). */
const COLD_AFTER = 10_000;
/** Messages read back from the store at a time when the in-memory part runs dry. */
const REFILL_BATCH = 500;
const FLOW_LOW_WATER = FLOW_HIGH_WATER / 2;

export interface FlowWaiter {
  resumeFlow(): void;
}

export interface QueueObserver {
  queueDeleted(queue: Queue, reason: QueueDeletedReason): void;
  /** Called for every message that leaves without an ack, DLX configured or not. */
  deadLetter(queue: Queue, msg: Message, reason: DeadLetterReason): void;
}

/**
 * Ready messages plus the consumers that drain them, with RabbitMQ's lifecycle rules: TTL
 * (per queue and per message, expired on time by an expiry heap with one timer), length
 * limits with overflow behaviours, priorities, single active consumer and queue expiry.
 * Dispatch is synchronous: enqueue hands a message straight to a consumer when one can take
 * it, so the common path has no timers or promises.
 */
export class Queue {
  private ready: ReadyList;
  private readonly cold = new ColdTail();
  private readonly expiry = new ExpiryTimer(
    (e) => {
      this.removeReady(e);
      this.expire(e);
    },
    () => !this.deleted,
  );
  private readonly idleExpiry = new IdleExpiry(
    () => !this.deleted && this.consumers.length === 0,
    () => this.delete('expired'),
  );
  private readonly consumers = new ConsumerList();
  private nextSeq = 1;
  private draining = false;
  private hadConsumer = false;
  private readyCount = 0;
  private flowWaiters: Set<FlowWaiter> | null = null;
  /** The entry enqueue() is dispatching right now: it is never too old for its own delivery. */
  private enqueuing: QueueEntry | null = null;
  private readyBytes = 0;
  /** Deliveries handed to acking consumers and not yet settled. */
  unackedCount = 0;
  deleted = false;
  /** Marks this queue as already chosen during one routing pass (see VHost.route). */
  routeEpoch = 0;
  /** Counters for management and metrics. */
  readonly stats = { published: 0, delivered: 0, acked: 0, redelivered: 0, expired: 0, dropped: 0 };

  readonly durable: boolean;
  readonly exclusiveOwner: object | null;
  readonly autoDelete: boolean;
  readonly arguments: FieldTable;
  /** The store and this queue's key in it, for durable queues when persistence is on. */
  private readonly store: MessageStore | null;
  private readonly pager: TransientPager | null;
  readonly storeKey: string;

  constructor(
    readonly vhost: string,
    readonly name: string,
    options: QueueOptions,
    private readonly observer: QueueObserver,
    private settingsInForce: QueueSettings,
  ) {
    this.durable = options.durable;
    this.exclusiveOwner = options.exclusiveOwner;
    this.autoDelete = options.autoDelete;
    this.arguments = options.arguments;
    this.store = options.durable ? (options.store ?? null) : null;
    this.pager = options.pager ?? null;
    this.storeKey = `${vhost}\u0000${name}`;
    const maxPriority = settingsInForce.maxPriority;
    this.ready = new ReadyList(maxPriority !== undefined && maxPriority > 0 ? Math.min(maxPriority, 255) + 1 : 1);
    this.idleExpiry.arm(this.settingsInForce.expires);
  }

  get settings(): QueueSettings {
    return this.settingsInForce;
  }

  /** A policy changed. Priority levels are fixed at declaration, as in RabbitMQ. */
  applySettings(settings: QueueSettings): void {
    this.settingsInForce = settings;
    this.enforceLimits();
    this.idleExpiry.arm(this.settingsInForce.expires);
  }

  /** True when a publisher should pause for this queue's consumers to catch up. */
  get backlogged(): boolean {
    return (this.readyCount > FLOW_HIGH_WATER || this.readyBytes - this.coldBytes() > FLOW_HIGH_BYTES) && this.consumers.length !== 0;
  }

  /** Bytes of ready messages that are only on disk do not count against memory. */
  private coldBytes(): number {
    return this.cold.length === 0 ? 0 : this.cold.bytes;
  }

  addFlowWaiter(w: FlowWaiter): void {
    (this.flowWaiters ??= new Set()).add(w);
  }

  private releaseFlowWaiters(): void {
    const waiters = this.flowWaiters;
    if (waiters === null) return;
    this.flowWaiters = null;
    for (const w of waiters) w.resumeFlow();
  }

  get messageCount(): number {
    return this.readyCount;
  }

  /** Ready messages held only as store ids (the cold tail of a long durable queue). */
  get coldCount(): number {
    return this.cold.length;
  }

  get messageBytes(): number {
    return this.readyBytes;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  get consumerList(): readonly Consumer[] {
    return this.consumers.all;
  }

  /** The consumer that receives messages under single-active-consumer, if any. */
  get activeConsumer(): Consumer | undefined {
    return this.settingsInForce.singleActiveConsumer ? this.consumers.first : undefined;
  }

  /** Whether a persistent message routed here must be written to the store first. */
  /**
   * A mirrored queue's replication (cluster leader side): told of every message that enters
   * and every message that leaves for good, in order. Null for unmirrored queues.
   */
  mirror: QueueMirrorHook | null = null;

  /** Set on proxies of queues whose messages live on another cluster node. */
  get remote(): RemoteQueueOps | null {
    return null;
  }

  get persists(): boolean {
    return this.store !== null;
  }

  enqueue(msg: Message): EnqueueOutcome {
    return this.add(msg, false, 0);
  }

  /** Recovery after a restart: the message comes back where it was, with its original age. */
  restore(msg: Message, redelivered: boolean, publishedAt: number): void {
    this.add(msg, redelivered, publishedAt);
  }

  private add(msg: Message, redelivered: boolean, publishedAt: number): EnqueueOutcome {
    if (this.deleted) {
      this.forget(msg);
      return EnqueueOutcome.Accepted;
    }
    const s = this.settingsInForce;
    if (s.overflow !== 'drop-head' && this.isFullFor(msg.bodySize)) {
      this.stats.dropped++;
      this.forget(msg);
      if (s.overflow === 'reject-publish-dlx') this.observer.deadLetter(this, msg, 'maxlen');
      return EnqueueOutcome.Rejected;
    }
    let expiresAt = 0;
    const ttl = s.messageTtl === undefined ? msg.ttl : msg.ttl < 0 ? s.messageTtl : Math.min(msg.ttl, s.messageTtl);
    if (ttl >= 0) expiresAt = (publishedAt === 0 ? Date.now() : publishedAt) + ttl;
    const maxLevel = this.ready.levelCount - 1;
    if (
      expiresAt === 0 &&
      maxLevel === 0 &&
      msg.pageable &&
      this.store !== null &&
      // Replication names messages by their entry; the cold tail keeps no entries.
      this.mirror === null &&
      (this.cold.length !== 0 || this.readyCount >= COLD_AFTER)
    ) {
      this.addCold(msg, redelivered);
      return EnqueueOutcome.Accepted;
    }
    const entry: QueueEntry = {
      msg,
      seq: this.nextSeq++,
      redelivered,
      state: EntryState.Ready,
      expiresAt,
      level: maxLevel === 0 ? 0 : Math.min(msg.priority, maxLevel),
      inHeap: false,
    };
    msg.refs++;
    this.stats.published++;
    this.ready.push(entry);
    this.mirror?.added(entry);
    this.readyCount++;
    this.readyBytes += msg.bodySize;
    // A long backlog keeps only small records in memory: bytes are read back on delivery.
    if (this.readyCount > PAGE_OUT_AFTER) {
      if (msg.pageable && this.store !== null) msg.pageOut(this.store);
      else if (this.pager !== null && msg.pageId === 0 && !msg.pagedOut && this.pager.active) this.pager.page(msg);
    }
    if (expiresAt !== 0) this.expiry.track(entry);
    if (s.maxLength !== undefined || s.maxLengthBytes !== undefined) this.enforceLimits();
    if (this.consumers.length !== 0) {
      this.enqueuing = entry;
      this.drain();
      this.enqueuing = null;
    }
    // TTL 0: delivered only if a consumer took it just now, otherwise expired at once.
    if (ttl === 0 && entry.state === EntryState.Ready) {
      this.removeReady(entry);
      this.expire(entry);
    }
    return EnqueueOutcome.Accepted;
  }

  /** basic.get: the head message, counted as unacked unless noAck. */
  get(noAck: boolean): QueueEntry | undefined {
    this.touch();
    const entry = this.takeReady();
    if (entry === undefined) return undefined;
    this.stats.delivered++;
    if (entry.redelivered) this.stats.redelivered++;
    if (noAck) this.settle(entry);
    else this.markDelivered(entry);
    return entry;
  }

  ack(entry: QueueEntry): void {
    this.unackedCount--;
    this.stats.acked++;
    this.settle(entry);
  }

  /** reject/nack with requeue=false: the message leaves, dead-lettered if configured. */
  discard(entry: QueueEntry): void {
    this.unackedCount--;
    this.settle(entry);
    this.observer.deadLetter(this, entry.msg, 'rejected');
  }

  /** Put unacked messages back in their original places, marked redelivered. */
  requeue(entries: QueueEntry[]): void {
    if (entries.length === 0) return;
    this.unackedCount -= entries.length;
    if (this.deleted) {
      for (const e of entries) this.settle(e);
      return;
    }
    const now = Date.now();
    const back: QueueEntry[] = [];
    for (const e of entries) {
      e.redelivered = true;
      if (e.expiresAt !== 0 && e.expiresAt <= now) {
        this.settle(e);
        this.stats.expired++;
        this.observer.deadLetter(this, e.msg, 'expired');
        continue;
      }
      e.state = EntryState.Ready;
      this.readyCount++;
      this.readyBytes += e.msg.bodySize;
      if (e.expiresAt !== 0 && !e.inHeap) this.expiry.track(e);
      back.push(e);
    }
    if (back.length !== 0) this.ready.requeue(back);
    this.drain();
  }

  purge(): number {
    const dropped = this.ready.drainAll();
    for (const e of dropped) this.settle(e);
    const cold = this.cold.drain();
    for (const id of cold) this.store!.ack(this.storeKey, id);
    this.readyCount = 0;
    this.readyBytes = 0;
    this.releaseFlowWaiters();
    return dropped.length + cold.length;
  }

  /** Ready messages without consuming them (management's browse); cold ones are read from the store. */
  peekReady(offset: number, count: number): QueueEntry[] {
    const out = this.ready.slice(offset, count);
    const hot = this.readyCount - this.cold.length;
    for (let i = Math.max(0, offset - hot); out.length < count && i < this.cold.length; i++) {
      out.push(this.entryFromStore(this.cold.idAt(i), false));
    }
    return out;
  }

  /** Throws if a new consumer (exclusive or not) may not attach now. */
  assertConsumable(exclusive: boolean): void {
    this.consumers.assertConsumable(exclusive, this.name, this.vhost);
  }

  addConsumer(consumer: Consumer): void {
    this.assertConsumable(consumer.exclusive);
    this.consumers.add(consumer, this.settingsInForce.singleActiveConsumer);
    this.hadConsumer = true;
    this.touch();
    this.drain();
  }

  /** Returns true when the queue deleted itself as a result (auto-delete). */
  removeConsumer(consumer: Consumer): boolean {
    const at = this.consumers.remove(consumer);
    if (at < 0) return false;
    if (this.autoDelete && this.hadConsumer && this.consumers.length === 0 && !this.deleted) {
      this.delete('auto-delete');
      return true;
    }
    this.touch();
    this.idleExpiry.arm(this.settingsInForce.expires);
    if (this.consumers.length === 0) this.releaseFlowWaiters();
    // Under single-active-consumer the next consumer may just have become active.
    if (at === 0 && this.settingsInForce.singleActiveConsumer) this.drain();
    return false;
  }

  /**
   * Turns the cold tail into entries (bytes stay on disk): a mirror about to replicate this
   * queue names every message by its entry, which the cold tail does not have.
   */
  warmColdTail(): void {
    while (this.cold.length !== 0) {
      const redelivered = this.cold.peekRedelivered();
      const e = this.entryFromStore(this.cold.shift(), redelivered);
      e.msg.pageOut(this.store!);
      this.ready.push(e);
    }
  }

  /** Every consumer is cancelled (basic.cancel); the queue stays. A fenced cluster leader does this. */
  cancelConsumers(): void {
    const consumers = this.consumers.clear();
    for (const c of consumers) c.cancelledByQueue(this);
  }

  /** Deliver while there are messages and a consumer able to take one. */
  drain(): void {
    if (this.draining || this.deleted) return;
    this.draining = true;
    try {
      while (this.readyCount !== 0) {
        const consumer = this.consumers.pick(this.settingsInForce.singleActiveConsumer);
        if (consumer === undefined) break;
        const entry = this.takeReady();
        if (entry === undefined) break;
        this.stats.delivered++;
        if (entry.redelivered) this.stats.redelivered++;
        if (consumer.noAck) this.settle(entry);
        else this.markDelivered(entry);
        consumer.deliver(this, entry);
      }
    } finally {
      this.draining = false;
    }
  }

  delete(reason: QueueDeletedReason): number {
    if (this.deleted) return 0;
    const count = this.readyCount;
    this.purge();
    this.deleted = true;
    this.expiry.clear();
    this.clearTimers();
    const consumers = this.consumers.clear();
    this.releaseFlowWaiters();
    for (const c of consumers) c.cancelledByQueue(this);
    this.store?.deleteQueue(this.storeKey);
    this.observer.queueDeleted(this, reason);
    return count;
  }

  /** A redeclare counts as use for x-expires. */
  touch(): void {
    this.idleExpiry.touch();
  }

  // ---- internals -------------------------------------------------------------------------

  /** A message for the cold tail: counted as ready, kept only as its store id. */
  private addCold(msg: Message, redelivered: boolean): void {
    this.cold.push(msg.storeId, msg.bodySize, redelivered);
    this.stats.published++;
    this.readyCount++;
    this.readyBytes += msg.bodySize;
    const s = this.settingsInForce;
    if (s.maxLength !== undefined || s.maxLengthBytes !== undefined) this.enforceLimits();
    if (this.consumers.length !== 0) this.drain();
  }

  /** The oldest ready entry, reading the next batch of the cold tail back when the objects run out. */
  private shiftReady(): QueueEntry | undefined {
    const e = this.ready.shift();
    if (e !== undefined || this.cold.length === 0) return e;
    for (let i = 0; i < REFILL_BATCH && this.cold.length !== 0; i++) {
      const redelivered = this.cold.peekRedelivered();
      this.ready.push(this.entryFromStore(this.cold.shift(), redelivered));
    }
    return this.ready.shift();
  }

  private entryFromStore(id: number, redelivered: boolean): QueueEntry {
    const m = this.store!.read(id);
    const msg = new Message(m.exchange, m.routingKey, m.properties, m.body);
    msg.storeId = id;
    msg.pageable = true;
    msg.refs++;
    return { msg, seq: this.nextSeq++, redelivered, state: EntryState.Ready, expiresAt: 0, level: 0, inHeap: false };
  }

  /** Head of the ready list, expiring anything whose time passed while the timer lagged. */
  private takeReady(): QueueEntry | undefined {
    for (;;) {
      const e = this.shiftReady();
      if (e === undefined) {
        this.releaseFlowWaiters();
        return undefined;
      }
      this.readyCount--;
      this.readyBytes -= e.msg.bodySize;
      if (this.flowWaiters !== null && this.readyCount <= FLOW_LOW_WATER && this.readyBytes - this.coldBytes() <= FLOW_HIGH_BYTES / 2) {
        this.releaseFlowWaiters();
      }
      if (e.expiresAt !== 0 && e !== this.enqueuing && e.expiresAt < Date.now()) {
        this.expire(e);
        continue;
      }
      e.state = EntryState.Unacked;
      // Read paged-out bytes now: a no-ack delivery releases the message in the store at once.
      e.msg.load();
      return e;
    }
  }

  private isFullFor(bytes: number): boolean {
    const s = this.settingsInForce;
    if (s.maxLength !== undefined && this.readyCount >= s.maxLength) return true;
    return s.maxLengthBytes !== undefined && this.readyBytes + bytes > s.maxLengthBytes;
  }

  /** drop-head: the oldest ready messages make room, dead-lettered with reason maxlen. */
  private enforceLimits(): void {
    const s = this.settingsInForce;
    if (s.overflow !== 'drop-head') return;
    while (
      (s.maxLength !== undefined && this.readyCount > s.maxLength) ||
      (s.maxLengthBytes !== undefined && this.readyBytes > s.maxLengthBytes)
    ) {
      const e = this.shiftReady();
      if (e === undefined) break;
      this.readyCount--;
      this.readyBytes -= e.msg.bodySize;
      this.stats.dropped++;
      this.deadLetterEntry(e, 'maxlen');
    }
  }

  /** Out-of-order removal: the ring keeps a tombstone that shift() skips later. */
  private removeReady(e: QueueEntry): void {
    this.readyCount--;
    this.readyBytes -= e.msg.bodySize;
    e.state = EntryState.Gone;
  }

  private expire(e: QueueEntry): void {
    this.stats.expired++;
    this.deadLetterEntry(e, 'expired');
  }

  /**
   * A ready entry leaves without delivery. Settling may free its record in the store, so a
   * paged-out message is read back first when a dead-letter exchange will need its bytes.
   */
  private deadLetterEntry(e: QueueEntry, reason: DeadLetterReason): void {
    if (this.settingsInForce.deadLetterExchange !== undefined) e.msg.load();
    this.settle(e);
    this.observer.deadLetter(this, e.msg, reason);
  }

  private clearTimers(): void {
    this.expiry.stop();
    this.idleExpiry.stop();
  }

  /** Handed to an acking consumer: unacked here, and redelivered=true if we crash now. */
  private markDelivered(entry: QueueEntry): void {
    this.unackedCount++;
    if (this.store !== null && entry.msg.storeId !== 0) this.store.delivered(this.storeKey, entry.msg.storeId);
  }

  /** The message left this queue for good. */
  private settle(entry: QueueEntry): void {
    entry.state = EntryState.Gone;
    this.mirror?.removed(entry);
    entry.msg.refs--;
    if (entry.msg.refs === 0 && entry.msg.pageId !== 0) this.pager?.release(entry.msg);
    if (this.store !== null && entry.msg.storeId !== 0) this.store.ack(this.storeKey, entry.msg.storeId);
  }

  /** A message that was recorded for this queue but never entered it. */
  private forget(msg: Message): void {
    if (this.store !== null && msg.storeId !== 0) this.store.ack(this.storeKey, msg.storeId);
  }
}
