import type { Queue, QueueEntry } from '../core/queue/queue';
import { AmqpError } from '../protocol/errors';
import type { ChannelConsumer } from './channel-consumer';

/** One delivery awaiting ack, by delivery tag. */
export interface Delivery {
  readonly tag: number;
  readonly queue: Queue;
  readonly entry: QueueEntry;
  readonly consumer: ChannelConsumer | null;
  /** ms timestamp, for the consumer timeout. */
  readonly deliveredAt: number;
}

/**
 * A channel's outstanding deliveries in tag order (a Map keeps insertion order and tags only
 * grow), with the per-consumer counts that prefetch limits read.
 */
export class UnackedDeliveries {
  private readonly byTag = new Map<number, Delivery>();

  get size(): number {
    return this.byTag.size;
  }

  add(d: Delivery): void {
    this.byTag.set(d.tag, d);
    if (d.consumer !== null) d.consumer.unacked++;
  }

  /**
   * As RabbitMQ's collect_acks: `multiple` takes every tag up to and including `tag` (0 means
   * all); a tag that is not outstanding is a 406 naming it.
   */
  take(tag: number, multiple: boolean, methodKey: number): Delivery[] {
    const taken: Delivery[] = [];
    if (multiple && tag === 0) return this.takeAll();
    if (!this.byTag.has(tag)) {
      throw new AmqpError('PRECONDITION_FAILED', `unknown delivery tag ${tag}`, methodKey >>> 16, methodKey & 0xffff);
    }
    if (multiple) {
      for (const [t, d] of this.byTag) {
        if (t > tag) break;
        taken.push(d);
      }
    } else {
      taken.push(this.byTag.get(tag)!);
    }
    for (const d of taken) this.remove(d);
    return taken;
  }

  takeAll(): Delivery[] {
    const all = [...this.byTag.values()];
    for (const d of all) this.remove(d);
    return all;
  }

  takeConsumer(consumer: ChannelConsumer): Delivery[] {
    const out: Delivery[] = [];
    for (const d of this.byTag.values()) if (d.consumer === consumer) out.push(d);
    for (const d of out) this.remove(d);
    return out;
  }

  /** tx.rollback: settled deliveries come back under their own tags, in tag order. */
  restore(deliveries: Delivery[]): void {
    const all = [...this.byTag.values(), ...deliveries];
    all.sort((a, b) => a.tag - b.tag);
    this.byTag.clear();
    for (const d of all) this.byTag.set(d.tag, d);
    for (const d of deliveries) if (d.consumer !== null) d.consumer.unacked++;
  }

  /** Deliveries older than their queue's consumer timeout, and the earliest future deadline. */
  overdue(now: number, defaultTimeout: number): { stuck: Delivery[]; next: number } {
    const stuck: Delivery[] = [];
    let next = Infinity;
    for (const d of this.byTag.values()) {
      const timeout = d.queue.settings.consumerTimeout ?? defaultTimeout;
      if (timeout <= 0) continue;
      const deadline = d.deliveredAt + timeout;
      if (deadline <= now) stuck.push(d);
      else if (deadline < next) next = deadline;
    }
    return { stuck, next };
  }

  private remove(d: Delivery): void {
    this.byTag.delete(d.tag);
    if (d.consumer !== null) d.consumer.unacked--;
  }
}

/** Requeue grouped per queue so each queue restores its order in one merge. */
export function requeueByQueue(deliveries: Delivery[]): void {
  if (deliveries.length === 0) return;
  const byQueue = new Map<Queue, QueueEntry[]>();
  for (const d of deliveries) {
    let list = byQueue.get(d.queue);
    if (list === undefined) byQueue.set(d.queue, (list = []));
    list.push(d.entry);
  }
  for (const [q, entries] of byQueue) q.requeue(entries);
}
