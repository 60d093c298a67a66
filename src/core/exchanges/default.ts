import type { Message } from '../message';
import type { Queue } from '../queue/queue';
import { Destination, Exchange, ExchangeOptions } from './exchange';

/**
 * The nameless exchange: every queue is implicitly bound to it under its own name
 * (AMQP 0-9-1 §3.1.3.1). Routing looks the queue up directly instead of keeping bindings.
 */
export class DefaultExchange extends Exchange {
  readonly type = 'direct';

  constructor(vhost: string, options: ExchangeOptions, private readonly queues: ReadonlyMap<string, Queue>) {
    super(vhost, '', options);
  }

  route(_msg: Message, routingKey: string, out: Destination[]): void {
    const q = this.queues.get(routingKey);
    if (q !== undefined) out.push(q);
  }

  protected indexBinding(): void {
    throw new Error('the default exchange takes no explicit bindings');
  }

  protected unindexBinding(): void {}
}
