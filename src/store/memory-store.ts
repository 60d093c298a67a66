import {
  assertPublishable,
  type MessageStore,
  type ReadMessage,
  type RecoveredQueue,
  type StoredMessage,
  type StoreStats,
  type SyncCallback,
  runSyncCallbacks,
} from './message-store';
import { QueueTable } from './queue-index';

interface Held {
  readonly msg: ReadMessage;
  refs: number;
}

/**
 * The store for dataDir = null. Nothing reaches a disk, so afterSync only defers callbacks
 * to the end of the turn (keeping the same ordering rules as the segment store), and
 * recover() returns this process's own state: it is the reference the contract suite checks
 * the segment store against, and a test double for the broker.
 */
export class MemoryStore implements MessageStore {
  private readonly messages = new Map<number, Held>();
  private readonly queues = new QueueTable();
  private nextId = 1;
  private waiting: SyncCallback[] = [];
  private scheduled = false;
  private syncs = 0;
  private closed = false;
  private readonly release = (id: number): void => this.releaseOne(id);

  publish(msg: StoredMessage, queues: readonly string[], publishedAt = Date.now()): number {
    this.assertOpen();
    assertPublishable(queues);
    const id = this.nextId++;
    const stored: ReadMessage = {
      exchange: msg.exchange,
      routingKey: msg.routingKey,
      properties: msg.properties,
      body: msg.body,
      publishedAt,
    };
    this.messages.set(id, { msg: stored, refs: queues.length });
    this.queues.add(queues, id);
    return id;
  }

  ack(queue: string, id: number): void {
    if (this.queues.remove(queue, id)) this.releaseOne(id);
  }

  delivered(queue: string, id: number): void {
    this.queues.markDelivered(queue, id);
  }

  deleteQueue(queue: string): void {
    this.queues.removeQueue(queue, this.release);
  }

  afterSync(cb: SyncCallback): void {
    this.waiting.push(cb);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.runWaiting());
    }
  }

  read(id: number): ReadMessage {
    this.assertOpen();
    const held = this.messages.get(id);
    if (held === undefined) throw new RangeError(`message ${id} is not in the store`);
    return held.msg;
  }

  recover(): Map<string, RecoveredQueue> {
    return this.queues.snapshot();
  }

  diskFree(): number {
    return Infinity;
  }

  stats(): StoreStats {
    return { messages: this.messages.size, diskBytes: 0, segments: 0, syncs: this.syncs, lastError: null };
  }

  async close(): Promise<void> {
    this.runWaiting();
    this.closed = true;
  }

  private releaseOne(id: number): void {
    const held = this.messages.get(id);
    if (held !== undefined && --held.refs === 0) this.messages.delete(id);
  }

  private runWaiting(): void {
    this.scheduled = false;
    const cbs = this.waiting;
    if (cbs.length === 0) return;
    this.waiting = [];
    this.syncs++;
    runSyncCallbacks(cbs, null);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('message store is closed');
  }
}
