import type { RecoveredQueue } from './message-store';

const DELIVERED = 1;
const REMOVED = 2;

/**
 * The ids one durable queue still holds, in publish order. Ids are allocated in increasing
 * order and a queue receives them in that order, so the array is sorted: an ack is a binary
 * search (usually a hit at the head, since consumers ack roughly in order) and removal leaves
 * a hole that is squeezed out when holes outnumber live entries. 9 bytes per message.
 */
export class QueueIndex {
  private ids: Float64Array;
  private flags: Uint8Array;
  private head = 0;
  private tail = 0;
  /** Entries between head and tail that are not holes. */
  live = 0;

  constructor(capacity = 16) {
    this.ids = new Float64Array(capacity);
    this.flags = new Uint8Array(capacity);
  }

  /** Appends an id greater than every id already held. */
  push(id: number, delivered = false): void {
    if (this.tail === this.ids.length) this.makeRoom();
    this.ids[this.tail] = id;
    this.flags[this.tail] = delivered ? DELIVERED : 0;
    this.tail++;
    this.live++;
  }

  /** Removes id; false when it is not held (never was, or already removed). */
  remove(id: number): boolean {
    const at = this.find(id);
    if (at < 0) return false;
    this.flags[at] = REMOVED;
    this.live--;
    if (at === this.head) this.skipHoles();
    else if (this.live < (this.tail - this.head) >>> 2 && this.tail - this.head > 1024) this.squeeze();
    return true;
  }

  /** Marks id delivered; false when it is not held or was already marked (nothing to record). */
  markDelivered(id: number): boolean {
    const at = this.find(id);
    if (at < 0 || this.flags[at] === DELIVERED) return false;
    this.flags[at] = DELIVERED;
    return true;
  }

  /** -1 when id is not held, else 0, or 1 when it was marked delivered. */
  stateOf(id: number): number {
    const at = this.find(id);
    return at < 0 ? -1 : this.flags[at]! & DELIVERED;
  }

  /** Removes every id <= upTo, calling released(id) for each. */
  removeUpTo(upTo: number, released: (id: number) => void): void {
    for (let i = this.head; i < this.tail && this.ids[i]! <= upTo; i++) {
      if (this.flags[i] === REMOVED) continue;
      this.flags[i] = REMOVED;
      this.live--;
      released(this.ids[i]!);
    }
    this.skipHoles();
  }

  forEach(visit: (id: number) => void): void {
    for (let i = this.head; i < this.tail; i++) if (this.flags[i] !== REMOVED) visit(this.ids[i]!);
  }

  /** The highest id held, or 0. */
  last(): number {
    for (let i = this.tail - 1; i >= this.head; i--) if (this.flags[i] !== REMOVED) return this.ids[i]!;
    return 0;
  }

  snapshot(): RecoveredQueue {
    const ids = new Float64Array(this.live);
    const redelivered = new Uint8Array(this.live);
    let n = 0;
    for (let i = this.head; i < this.tail; i++) {
      const f = this.flags[i]!;
      if (f === REMOVED) continue;
      ids[n] = this.ids[i]!;
      redelivered[n] = f & DELIVERED;
      n++;
    }
    return { ids, redelivered };
  }

  /** Bytes held by the arrays (for memory accounting). */
  get byteSize(): number {
    return this.ids.byteLength + this.flags.byteLength;
  }

  /** Gives back the slack of doubling (after recovery, when the queue stops growing fast). */
  trim(): void {
    const want = Math.max(16, Math.ceil(this.live * 1.125));
    if (this.ids.length <= want + (want >>> 2)) return;
    this.squeeze();
    const ids = new Float64Array(want);
    const flags = new Uint8Array(want);
    ids.set(this.ids.subarray(0, this.tail));
    flags.set(this.flags.subarray(0, this.tail));
    this.ids = ids;
    this.flags = flags;
  }

  private find(id: number): number {
    const ids = this.ids;
    let lo = this.head;
    let hi = this.tail - 1;
    if (lo > hi) return -1;
    // Fast path: consumers mostly ack the oldest message.
    if (ids[lo] === id) return this.flags[lo] === REMOVED ? -1 : lo;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = ids[mid]!;
      if (v < id) lo = mid + 1;
      else if (v > id) hi = mid - 1;
      else return this.flags[mid] === REMOVED ? -1 : mid;
    }
    return -1;
  }

  private skipHoles(): void {
    while (this.head < this.tail && this.flags[this.head] === REMOVED) this.head++;
    if (this.head === this.tail) this.head = this.tail = 0;
  }

  /** Full array: reuse the space before head and holes when that frees enough, else grow. */
  private makeRoom(): void {
    const used = this.tail - this.head;
    if (this.live <= this.ids.length >>> 1 || used < this.ids.length >>> 1) {
      this.squeeze();
      if (this.tail < this.ids.length) return;
    }
    const ids = new Float64Array(this.ids.length * 2);
    const flags = new Uint8Array(this.ids.length * 2);
    ids.set(this.ids.subarray(this.head, this.tail));
    flags.set(this.flags.subarray(this.head, this.tail));
    this.ids = ids;
    this.flags = flags;
    this.tail -= this.head;
    this.head = 0;
  }

  /** Moves live entries to the front, dropping holes. Keeps the arrays. */
  private squeeze(): void {
    let w = 0;
    for (let r = this.head; r < this.tail; r++) {
      const f = this.flags[r]!;
      if (f === REMOVED) continue;
      this.ids[w] = this.ids[r]!;
      this.flags[w] = f;
      w++;
    }
    this.head = 0;
    this.tail = w;
    // A queue that drained a huge backlog should not keep the backlog's arrays.
    if (this.ids.length > 4096 && w < this.ids.length >>> 3) {
      const cap = Math.max(16, w * 2);
      this.ids = this.ids.slice(0, cap);
      this.flags = this.flags.slice(0, cap);
    }
  }
}

/** Every durable queue's index, by queue key. The message refcounts live with the caller. */
export class QueueTable {
  private readonly queues = new Map<string, QueueIndex>();

  /** Records that id joined these queues, in publish order. */
  add(queues: readonly string[], id: number): void {
    for (let i = 0; i < queues.length; i++) this.index(queues[i]!).push(id);
  }

  /** Adds id to one queue (recovery, where delivered state comes from the records). */
  addOne(queue: string, id: number): void {
    this.index(queue).push(id);
  }

  remove(queue: string, id: number): boolean {
    const q = this.queues.get(queue);
    if (q === undefined || !q.remove(id)) return false;
    if (q.live === 0) this.queues.delete(queue);
    return true;
  }

  markDelivered(queue: string, id: number): boolean {
    const q = this.queues.get(queue);
    return q !== undefined && q.markDelivered(id);
  }

  /** Drops a queue's ids up to upTo (all of them by default), calling released for each. */
  removeQueue(queue: string, released: (id: number) => void, upTo = Number.MAX_SAFE_INTEGER): void {
    const q = this.queues.get(queue);
    if (q === undefined) return;
    q.removeUpTo(upTo, released);
    if (q.live === 0) this.queues.delete(queue);
  }

  get(queue: string): QueueIndex | undefined {
    return this.queues.get(queue);
  }

  trim(): void {
    for (const q of this.queues.values()) q.trim();
  }

  snapshot(): Map<string, RecoveredQueue> {
    const out = new Map<string, RecoveredQueue>();
    for (const [name, q] of this.queues) out.set(name, q.snapshot());
    return out;
  }

  get byteSize(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.byteSize;
    return n;
  }

  private index(queue: string): QueueIndex {
    let q = this.queues.get(queue);
    if (q === undefined) {
      q = new QueueIndex();
      this.queues.set(queue, q);
    }
    return q;
  }
}
