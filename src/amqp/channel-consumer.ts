import type { Consumer } from '../core/queue/consumer';
import type { Queue, QueueEntry } from '../core/queue/queue';
import type { Channel } from './channel';

/** A basic.consume subscription: the queue's view of one channel's consumer. */
export class ChannelConsumer implements Consumer {
  readonly tagBytes: Buffer;
  /** Unacked deliveries of this consumer (per-consumer prefetch). */
  unacked = 0;

  constructor(
    readonly channel: Channel,
    /** Changes only when a mirrored queue fails over (movedTo). */
    public queue: Queue,
    readonly tag: string,
    readonly noAck: boolean,
    readonly exclusive: boolean,
    readonly priority: number,
    /** basic.qos prefetch-count in force when the consumer was created (global=false). */
    readonly prefetch: number,
    readonly owner: object,
    readonly args: Record<string, unknown>,
  ) {
    this.tagBytes = Buffer.from(tag, 'utf8');
    this.cancelOnFailover = args['x-cancel-on-ha-failover'] === true;
  }

  readonly cancelOnFailover: boolean;

  canAccept(): boolean {
    if (!this.noAck && this.prefetch !== 0 && this.unacked >= this.prefetch) return false;
    return this.channel.canDeliver(this.noAck);
  }

  deliver(queue: Queue, entry: QueueEntry): void {
    this.channel.deliver(this, queue, entry);
  }

  movedTo(queue: Queue): void {
    this.queue = queue;
  }

  cancelledByQueue(_queue: Queue): void {
    this.channel.consumerCancelledByServer(this);
  }
}
