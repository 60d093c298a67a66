import { AmqpError } from '../../protocol/errors';
import type { Consumer } from './consumer';

/**
 * A queue's consumers and who gets the next message: round-robin within the highest priority
 * that has a consumer able to accept (consumers are kept sorted by priority, stably), or, under
 * single active consumer, only the first registered.
 */
export class ConsumerList {
  private list: Consumer[] = [];
  private rrIndex = 0;

  get length(): number {
    return this.list.length;
  }

  get all(): readonly Consumer[] {
    return this.list;
  }

  get first(): Consumer | undefined {
    return this.list[0];
  }

  /** Throws if a new consumer (exclusive or not) may not attach now (RabbitMQ's 403). */
  assertConsumable(exclusive: boolean, queue: string, vhost: string): void {
    if (this.list.some((c) => c.exclusive) || (exclusive && this.list.length !== 0)) {
      throw new AmqpError('ACCESS_REFUSED', `queue '${queue}' in vhost '${vhost}' in exclusive use`);
    }
  }

  add(consumer: Consumer, singleActive: boolean): void {
    if (singleActive) {
      this.list.push(consumer); // registration order decides who is active
      return;
    }
    let at = this.list.length;
    while (at > 0 && this.list[at - 1]!.priority < consumer.priority) at--;
    this.list.splice(at, 0, consumer);
  }

  /** Returns the position the consumer had, or -1 if it was not here. */
  remove(consumer: Consumer): number {
    const at = this.list.indexOf(consumer);
    if (at < 0) return -1;
    this.list.splice(at, 1);
    if (this.rrIndex > at) this.rrIndex--;
    return at;
  }

  /** Empties the list, returning who was in it. */
  clear(): Consumer[] {
    const out = this.list;
    this.list = [];
    this.rrIndex = 0;
    return out;
  }

  pick(singleActive: boolean): Consumer | undefined {
    const list = this.list;
    const n = list.length;
    if (n === 0) return undefined;
    if (singleActive) {
      const active = list[0]!;
      return active.canAccept() ? active : undefined;
    }
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
}
