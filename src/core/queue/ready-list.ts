import { Ring } from '../ring';
import { EntryState, QueueEntry } from './entry';

/**
 * Ready messages, one FIFO ring per priority level (a plain queue has one level). Entries that
 * left the queue out of order (expired in the middle) stay as tombstones and are skipped when
 * they reach the head, so removal never costs O(n).
 */
export class ReadyList {
  private readonly levels: Ring<QueueEntry>[];
  private top: number;

  constructor(levelCount: number) {
    this.levels = [];
    for (let i = 0; i < levelCount; i++) this.levels.push(new Ring<QueueEntry>(i === 0 ? 64 : 16));
    this.top = levelCount - 1;
  }

  get levelCount(): number {
    return this.levels.length;
  }

  push(e: QueueEntry): void {
    this.levels[e.level]!.push(e);
  }

  /** The next ready entry in delivery order (highest level first), tombstones dropped. */
  shift(): QueueEntry | undefined {
    for (let l = this.top; l >= 0; l--) {
      const ring = this.levels[l]!;
      while (ring.length !== 0) {
        const e = ring.shift()!;
        if (e.state === EntryState.Ready) return e;
      }
    }
    return undefined;
  }

  peek(): QueueEntry | undefined {
    for (let l = this.top; l >= 0; l--) {
      const ring = this.levels[l]!;
      while (ring.length !== 0) {
        const e = ring.peek()!;
        if (e.state === EntryState.Ready) return e;
        ring.shift();
      }
    }
    return undefined;
  }

  /**
   * Puts requeued entries back where they were: merged by sequence number into the front of
   * their level, so any mix of requeues restores publish order (RabbitMQ keeps position too).
   */
  requeue(entries: QueueEntry[]): void {
    entries.sort((a, b) => a.seq - b.seq);
    if (this.levels.length === 1) {
      mergeFront(this.levels[0]!, entries);
      return;
    }
    const byLevel = new Map<number, QueueEntry[]>();
    for (const e of entries) {
      let list = byLevel.get(e.level);
      if (list === undefined) byLevel.set(e.level, (list = []));
      list.push(e);
    }
    for (const [level, list] of byLevel) mergeFront(this.levels[level]!, list);
  }

  /** Every entry still ready, in delivery order; the list is emptied. */
  drainAll(): QueueEntry[] {
    const out: QueueEntry[] = [];
    for (let l = this.top; l >= 0; l--) {
      for (const e of this.levels[l]!.clear()) if (e.state === EntryState.Ready) out.push(e);
    }
    return out;
  }

  /** Read-only view of ready entries in delivery order (management's browse). */
  slice(offset: number, count: number): QueueEntry[] {
    const out: QueueEntry[] = [];
    let skipped = 0;
    for (let l = this.top; l >= 0 && out.length < count; l--) {
      const ring = this.levels[l]!;
      for (let i = 0; i < ring.length && out.length < count; i++) {
        const e = ring.at(i)!;
        if (e.state !== EntryState.Ready) continue;
        if (skipped < offset) skipped++;
        else out.push(e);
      }
    }
    return out;
  }
}

function mergeFront(ring: Ring<QueueEntry>, sorted: QueueEntry[]): void {
  const last = sorted[sorted.length - 1]!.seq;
  const merged: QueueEntry[] = [];
  let i = 0;
  while (ring.length !== 0 && ring.peek()!.seq < last) {
    const head = ring.shift()!;
    while (i < sorted.length && sorted[i]!.seq < head.seq) merged.push(sorted[i++]!);
    merged.push(head);
  }
  while (i < sorted.length) merged.push(sorted[i++]!);
  for (let j = merged.length - 1; j >= 0; j--) ring.unshift(merged[j]!);
}
