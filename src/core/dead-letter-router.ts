import { deadLetterCopy, isCycle } from './dead-letter';
import type { Exchange } from './exchanges/exchange';
import type { Message } from './message';
import type { DeadLetterReason, Queue } from './queue/queue';

/** What dead-letter routing needs from its vhost. */
export interface DeadLetterHost {
  exchange(name: string): Exchange | undefined;
  /** The queues `copy` reaches through `x` (with extra CC-style keys); the array is the caller's. */
  routeToQueues(x: Exchange, copy: Message, extraKeys: string[] | null): Queue[];
  /** Writes a persistent copy bound for durable queues to the store. */
  persist(copy: Message, queues: readonly Queue[]): void;
}

/**
 * Messages leaving queues without an ack, routed to their dead-letter exchanges from a work
 * list rather than by recursion: dead-lettering cascades (a DLX queue full or expiring in turn),
 * and a cascade must neither grow the stack nor reuse routing state a publish is iterating.
 */
export class DeadLetterRouter {
  private readonly pending: Array<{ queue: Queue; msg: Message; reason: DeadLetterReason }> = [];
  private running = false;
  /** Set while a publish iterates its routed queues; that publish calls flush() afterwards. */
  deferred = false;

  constructor(private readonly host: DeadLetterHost) {}

  get hasPending(): boolean {
    return this.pending.length !== 0;
  }

  add(queue: Queue, msg: Message, reason: DeadLetterReason): void {
    if (queue.settings.deadLetterExchange === undefined) return;
    this.pending.push({ queue, msg, reason });
    if (!this.running && !this.deferred) this.flush();
  }

  flush(): void {
    if (this.running) return;
    this.running = true;
    try {
      const now = Date.now();
      for (let item = this.pending.shift(); item !== undefined; item = this.pending.shift()) {
        const { queue, msg, reason } = item;
        const x = this.host.exchange(queue.settings.deadLetterExchange!);
        if (x === undefined) continue; // RabbitMQ drops it when the DLX does not exist
        const { copy, routingKeys } = deadLetterCopy(msg, queue, reason, now, x.name, queue.settings.deadLetterRoutingKey);
        const targets = this.host.routeToQueues(x, copy, routingKeys.length > 1 ? routingKeys.slice(1) : null);
        // A rejection anywhere on the way breaks RabbitMQ's cycle rule; otherwise cycles drop.
        const live = reason === 'rejected' ? targets : targets.filter((target) => !isCycle(copy, target));
        if (live.length !== 0 && copy.persistent) this.host.persist(copy, live);
        for (const target of live) target.enqueue(copy);
      }
    } finally {
      this.running = false;
    }
  }
}
