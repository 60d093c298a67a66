import type { FieldTable } from '../../protocol/field-table';
import type { Consumer } from './consumer';
import type { QueueEntry } from './entry';

/**
 * The asynchronous side of a queue whose messages live on another cluster node. The AMQP
 * channel asks for it (Queue.remote) and holds its later frames while a round trip is out,
 * so replies keep their order; local queues answer null and stay synchronous.
 */
export interface RemoteQueueOps {
  /** The node that owns the queue's messages. */
  readonly home: string;
  get(noAck: boolean): Promise<{ entry: QueueEntry; messageCount: number } | null>;
  /** Resolves once the home node accepted the consumer; deliveries start after `start()`. */
  consume(consumer: Consumer, args: FieldTable, prefetch: number): Promise<{ start(): void }>;
  cancel(consumer: Consumer): void;
  counts(): Promise<{ messageCount: number; consumerCount: number }>;
  purge(): Promise<number>;
  delete(ifUnused: boolean, ifEmpty: boolean): Promise<number>;
}

/** Replication of a mirrored queue, driven by the queue itself (see Queue.mirror). */
export interface QueueMirrorHook {
  /** A message entered the queue (not on requeue: it never left). */
  added(entry: QueueEntry): void;
  /** A message left the queue for good: acked, expired, dropped, purged, dead-lettered. */
  removed(entry: QueueEntry): void;
}
