import type { Queue, QueueEntry } from './queue';

/**
 * What a queue needs from whoever consumes it. The AMQP channel implements it; the queue
 * never sees sockets or frames, which keeps core/ free of protocol code.
 */
export interface Consumer {
  readonly tag: string;
  readonly noAck: boolean;
  readonly exclusive: boolean;
  /** x-priority consume argument; higher is served first. */
  readonly priority: number;
  /** The connection that owns the consumer, for exclusive-queue checks. */
  readonly owner: object;
  /** False while prefetch is exhausted, the channel is flowed off or the socket is backed up. */
  canAccept(): boolean;
  /** Hand over one message; for acked consumers the queue counts it as unacknowledged. */
  deliver(queue: Queue, entry: QueueEntry): void;
  /** The queue went away (deleted): tell the client (basic.cancel) and forget the consumer. */
  cancelledByQueue(queue: Queue): void;
  /** x-cancel-on-ha-failover: cancel rather than follow a mirrored queue to its new leader. */
  readonly cancelOnFailover?: boolean;
  /** The consumer now consumes from `queue` (a mirrored queue failed over to this node). */
  movedTo?(queue: Queue): void;
}
