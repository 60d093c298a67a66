// The contract between the broker core and message storage. Two implementations:
//   MemoryStore  (memory-store.ts)  — dataDir = null; keeps state for the process lifetime only
//   SegmentStore (segment-store.ts) — append-only segment files, group commit, recovery
// Both pass the same contract suite (test/store/contract.ts).
//
// The per-message calls (publish, ack, delivered) are synchronous and allocate no promise,
// closure or timer: they append to in-memory buffers that are written once per I/O turn.
// The only asynchronous edge is afterSync, called at most once per channel per turn.
//
// How the broker uses it:
//   publish   a persistent message (delivery-mode 2) routed to at least one durable queue:
//             id = store.publish(msg, durableQueueKeys); keep id on the message. Transient
//             messages and non-durable queues never reach the store.
//   confirm   a channel in confirm mode that published such a message this turn calls
//             store.afterSync(cb) once; cb sends basic.ack (multiple) up to the last such
//             sequence number, or basic.nack when cb gets an error. Confirms of other messages
//             go out at once, unless an earlier persistent one is still waiting (acks are
//             cumulative, so they queue behind it).
//   leave     every way a message leaves a durable queue goes through one place (the queue's
//             release of an entry): ack, reject/nack without requeue, expiry, dead-lettering,
//             purge, no-ack delivery -> store.ack(queue, id). Requeue is not a leave.
//   deliver   store.delivered(queue, id) when handed to a consumer that must ack.
//   delete    store.deleteQueue(queue) after the definitions no longer list the queue.
//   restart   store.recover() once before accepting connections; queues not in the
//             definitions get deleteQueue; messages are read with store.read(id) when needed.

/** One persistent message as the store keeps it. Property bytes are the content header's
 *  property flags and list exactly as received (content header minus its first 12 bytes). */
export interface StoredMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly properties: Buffer;
  readonly body: Buffer;
}

/** A message read back from the store: what was published plus when (ms since the epoch),
 *  so that TTLs keep counting from the original enqueue across a restart, as in RabbitMQ. */
export interface ReadMessage extends StoredMessage {
  readonly publishedAt: number;
}

/**
 * One durable queue's surviving messages, oldest first (the order they were published,
 * which is also where RabbitMQ puts requeued messages back). Parallel arrays rather than an
 * object per message, so that recovering ten million messages costs ~9 bytes each; read a
 * message's content with MessageStore.read(id) when it is about to be delivered.
 */
export interface RecoveredQueue {
  readonly ids: Float64Array;
  /** 1 where the message had been delivered before the restart: deliver it with redelivered=true. */
  readonly redelivered: Uint8Array;
}

/** Runs once the records appended before it was registered are on disk; err means they may not be. */
export type SyncCallback = (err: Error | null) => void;

/** Structural subset of the pino logger, so the store does not depend on observability/. */
export interface StoreLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface StoreStats {
  /** Messages still held by at least one queue. */
  readonly messages: number;
  /** Bytes of segment and ack files (0 for the memory store). */
  readonly diskBytes: number;
  readonly segments: number;
  /** Completed group-commit rounds (fsync batches). */
  readonly syncs: number;
  /** The last write or sync error not yet cleared by a successful retry, or null. */
  readonly lastError: string | null;
}

/**
 * Queue keys are opaque strings chosen by the broker (e.g. `${vhost}\u0000${name}`); a queue
 * that is deleted and declared again under the same key is a new queue as far as the store
 * cares, because deleteQueue ends every message the old one held.
 */
export interface MessageStore {
  /**
   * Appends one persistent message for these durable queues and returns its id (ids increase,
   * never reused, safe integers). Stored once however many queues; `queues` must not be empty
   * nor repeat a key.
   */
  publish(msg: StoredMessage, queues: readonly string[], publishedAt?: number): number;
  /**
   * The message left this queue for good: ack, reject/nack without requeue, expiry,
   * dead-lettering, purge, or delivery to a no-ack consumer. Unknown pairs are ignored.
   */
  ack(queue: string, id: number): void;
  /** The message was handed to a consumer; after a crash it comes back with redelivered=true. */
  delivered(queue: string, id: number): void;
  /** The queue is gone with all its messages, delivered or not. Later acks of them are ignored. */
  deleteQueue(queue: string): void;
  /**
   * cb runs once everything appended so far (publishes, acks, deletes) is on disk. Call it at
   * most once per channel per I/O turn, not per message. Callbacks run in registration order.
   */
  afterSync(cb: SyncCallback): void;
  /** The content of a live message (paged-out body, or after recovery). Throws for a dead id. */
  read(id: number): ReadMessage;
  /** Every queue with live messages, as left by the previous run (or, in memory, by this one). */
  recover(): Map<string, RecoveredQueue>;
  /** Bytes free for the store's files (for the disk alarm); Infinity in memory. */
  diskFree(): number;
  stats(): StoreStats;
  /** Writes and syncs everything pending, runs waiting callbacks, releases files. */
  close(): Promise<void>;
}

/** Queue keys in records are u16-length UTF-8; exchange and routing key are AMQP shortstrs. */
export function assertPublishable(queues: readonly string[]): void {
  if (queues.length === 0) throw new RangeError('publish needs at least one queue');
  if (queues.length > 0xffff) throw new RangeError('publish to more than 65535 queues');
}

/**
 * Runs sync callbacks in order. One that throws must not starve the others or break the
 * caller's bookkeeping, so its error is rethrown on its own (as an uncaught exception).
 */
export function runSyncCallbacks(cbs: readonly SyncCallback[], err: Error | null): void {
  for (let i = 0; i < cbs.length; i++) {
    try {
      cbs[i]!(err);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }
}
