/**
 * The far end of a long durable queue, as bare store ids: 13 bytes a message instead of a
 * Message and an entry object, so ten million queued messages fit in a few hundred megabytes.
 * Only messages that are safely in the store, have no TTL and need no priority go here; once
 * the tail is in use every newer message joins it, so FIFO order holds.
 */
export class ColdTail {
  private ids = new Float64Array(1024);
  private sizes = new Uint32Array(1024);
  private redelivered = new Uint8Array(1024);
  private head = 0;
  private end = 0;
  /** Body bytes of the messages held. */
  bytes = 0;

  get length(): number {
    return this.end - this.head;
  }

  push(id: number, size: number, redelivered: boolean): void {
    if (this.end === this.ids.length) this.makeRoom();
    this.ids[this.end] = id;
    this.sizes[this.end] = size;
    this.redelivered[this.end] = redelivered ? 1 : 0;
    this.end++;
    this.bytes += size;
  }

  /** Removes the oldest; returns its id (read the size and flag first with peekSize/peekRedelivered). */
  shift(): number {
    const id = this.ids[this.head]!;
    this.bytes -= this.sizes[this.head]!;
    this.head++;
    if (this.head === this.end) this.head = this.end = 0;
    return id;
  }

  peekSize(): number {
    return this.sizes[this.head]!;
  }

  peekRedelivered(): boolean {
    return this.redelivered[this.head] === 1;
  }

  /** Every id still held, oldest first; the tail is emptied. */
  drain(): number[] {
    const out = Array.from(this.ids.subarray(this.head, this.end));
    this.head = this.end = 0;
    this.bytes = 0;
    return out;
  }

  idAt(index: number): number {
    return this.ids[this.head + index]!;
  }

  private makeRoom(): void {
    const live = this.end - this.head;
    // Compact in place when at least half is consumed, otherwise grow.
    const size = live * 2 > this.ids.length ? this.ids.length * 2 : this.ids.length;
    const ids = new Float64Array(size);
    const sizes = new Uint32Array(size);
    const flags = new Uint8Array(size);
    ids.set(this.ids.subarray(this.head, this.end));
    sizes.set(this.sizes.subarray(this.head, this.end));
    flags.set(this.redelivered.subarray(this.head, this.end));
    this.ids = ids;
    this.sizes = sizes;
    this.redelivered = flags;
    this.head = 0;
    this.end = live;
  }
}
