import { AmqpError } from '../../protocol/errors';
import type { FieldTable } from '../../protocol/field-table';
import { Message } from '../message';
import { Ring } from '../ring';
import type { Consumer } from './consumer';

export interface QueueEntry {
  readonly msg: Message;
  /** Position in the queue's history; requeued messages go back in this order. */
  readonly seq: number;
  redelivered: boolean;
}

export interface QueueOptions {
  durable: boolean;
  exclusiveOwner: object | null;
  autoDelete: boolean;
  arguments: FieldTable;
}

/** What happened to a queue that was asked to delete itself. */
export type QueueDeletedReason = 'deleted' | 'auto-delete' | 'owner-closed';

export interface QueueObserver {
  queueDeleted(queue: Queue, reason: QueueDeletedReason): void;
}

/**
 * A FIFO of ready messages plus the consumers that drain it. Dispatch is synchronous:
 * enqueue hands the message straight to a consumer when one can take it, so the common
 * path costs no timers or promises.
 */
export class Queue {
  private readonly ready = new Ring<QueueEntry>(64);
  private consumers: Consumer[] = [];
  private rrIndex = 0;
  private nextSeq = 1;
  private draining = false;
  private hadConsumer = false;
  /** Deliveries handed to acking consumers and not yet settled. */
  unackedCount = 0;
  deleted = false;
  /** Marks this queue as already chosen during one routing pass (see VHost.publish). */
  routeEpoch = 0;
  /** Counters for management and metrics. */
  readonly stats = { published: 0, delivered: 0, acked: 0, redelivered: 0 };

  readonly durable: boolean;
  readonly exclusiveOwner: object | null;
  readonly autoDelete: boolean;
  readonly arguments: FieldTable;

  constructor(
    readonly vhost: string,
    readonly name: string,
    options: QueueOptions,
    private readonly observer: QueueObserver,
  ) {
    this.durable = options.durable;
    this.exclusiveOwner = options.exclusiveOwner;
    this.autoDelete = options.autoDelete;
    this.arguments = options.arguments;
  }

  get messageCount(): number {
    return this.ready.length;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  get consumerList(): readonly Consumer[] {
    return this.consumers;
  }

  enqueue(msg: Message): void {
    msg.refs++;
    this.stats.published++;
    this.ready.push({ msg, seq: this.nextSeq++, redelivered: false });
    if (this.consumers.length !== 0) this.drain();
  }

  /** basic.get: the head message, counted as unacked unless noAck. */
  get(noAck: boolean): QueueEntry | undefined {
    const entry = this.ready.shift();
    if (entry === undefined) return undefined;
    this.stats.delivered++;
    if (entry.redelivered) this.stats.redelivered++;
    if (noAck) this.release(entry);
    else this.unackedCount++;
    return entry;
  }

  ack(entry: QueueEntry): void {
    this.unackedCount--;
    this.stats.acked++;
    this.release(entry);
  }

  /** Settle without requeue (reject/nack requeue=false): the message leaves the queue. */
  discard(entry: QueueEntry): void {
    this.unackedCount--;
    this.release(entry);
  }

  /**
   * Put unacked messages back. RabbitMQ returns them to their original place, which for
   * messages taken from the head means the head; we merge by sequence number so several
   * requeues in any order still restore publish order.
   */
  requeue(entries: QueueEntry[]): void {
    if (entries.length === 0) return;
    this.unackedCount -= entries.length;
    if (this.deleted) {
      for (const e of entries) this.release(e);
      return;
    }
    entries.sort((a, b) => a.seq - b.seq);
    const last = entries[entries.length - 1]!.seq;
    const merged: QueueEntry[] = [];
    let i = 0;
    while (this.ready.length !== 0 && this.ready.peek()!.seq < last) {
      const head = this.ready.shift()!;
      while (i < entries.length && entries[i]!.seq < head.seq) merged.push(entries[i++]!);
      merged.push(head);
    }
    while (i < entries.length) merged.push(entries[i++]!);
    for (const e of entries) e.redelivered = true;
    for (let j = merged.length - 1; j >= 0; j--) this.ready.unshift(merged[j]!);
    this.drain();
  }

  purge(): number {
    const dropped = this.ready.clear();
    for (const e of dropped) this.release(e);
    return dropped.length;
  }

  /** Throws if a new consumer (exclusive or not) may not attach now. */
  assertConsumable(exclusive: boolean): void {
    if (this.consumers.some((c) => c.exclusive) || (exclusive && this.consumers.length !== 0)) {
      throw new AmqpError('ACCESS_REFUSED', `queue '${this.name}' in vhost '${this.vhost}' in exclusive use`);
    }
  }

  addConsumer(consumer: Consumer): void {
    this.assertConsumable(consumer.exclusive);
    // Kept sorted by priority (stable), so dispatch serves the highest first.
    let at = this.consumers.length;
    while (at > 0 && this.consumers[at - 1]!.priority < consumer.priority) at--;
    this.consumers.splice(at, 0, consumer);
    this.hadConsumer = true;
    this.drain();
  }

  /** Returns true when the queue deleted itself as a result (auto-delete). */
  removeConsumer(consumer: Consumer): boolean {
    const at = this.consumers.indexOf(consumer);
    if (at < 0) return false;
    this.consumers.splice(at, 1);
    if (this.rrIndex > at) this.rrIndex--;
    if (this.autoDelete && this.hadConsumer && this.consumers.length === 0 && !this.deleted) {
      this.delete('auto-delete');
      return true;
    }
    return false;
  }

  /** Deliver while there are messages and a consumer able to take one. */
  drain(): void {
    if (this.draining || this.deleted) return;
    this.draining = true;
    try {
      while (this.ready.length !== 0) {
        const consumer = this.pickConsumer();
        if (consumer === undefined) break;
        const entry = this.ready.shift()!;
        this.stats.delivered++;
        if (entry.redelivered) this.stats.redelivered++;
        if (consumer.noAck) this.release(entry);
        else this.unackedCount++;
        consumer.deliver(this, entry);
      }
    } finally {
      this.draining = false;
    }
  }

  delete(reason: QueueDeletedReason): number {
    if (this.deleted) return 0;
    this.deleted = true;
    const count = this.ready.length;
    for (const e of this.ready.clear()) this.release(e);
    const consumers = this.consumers;
    this.consumers = [];
    for (const c of consumers) c.cancelledByQueue(this);
    this.observer.queueDeleted(this, reason);
    return count;
  }

  /**
   * Round-robin within the highest priority that has a consumer able to accept. Consumers
   * are sorted by priority, so the first group with capacity wins.
   */
  private pickConsumer(): Consumer | undefined {
    const list = this.consumers;
    const n = list.length;
    if (n === 0) return undefined;
    if (list[0]!.priority === list[n - 1]!.priority) {
      for (let k = 0; k < n; k++) {
        const i = (this.rrIndex + k) % n;
        const c = list[i]!;
        if (c.canAccept()) {
          this.rrIndex = (i + 1) % n;
          return c;
        }
      }
      return undefined;
    }
    let start = 0;
    while (start < n) {
      const priority = list[start]!.priority;
      let end = start;
      while (end < n && list[end]!.priority === priority) end++;
      const size = end - start;
      for (let k = 0; k < size; k++) {
        const i = start + ((this.rrIndex + k) % size);
        const c = list[i]!;
        if (c.canAccept()) {
          this.rrIndex = (i - start + 1) % size;
          return c;
        }
      }
      start = end;
    }
    return undefined;
  }

  private release(entry: QueueEntry): void {
    entry.msg.refs--;
  }
}
