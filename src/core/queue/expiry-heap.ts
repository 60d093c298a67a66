import type { QueueEntry } from './entry';

/**
 * Entries ordered by expiry time, so a short-TTL message behind long-TTL ones expires on
 * time rather than when it reaches the head (RabbitMQ expires lazily at the head).
 */
/** Earlier expiry first; equal expiries leave in queue order. */
function before(a: QueueEntry, b: QueueEntry): boolean {
  return a.expiresAt < b.expiresAt || (a.expiresAt === b.expiresAt && a.seq < b.seq);
}

export class ExpiryHeap {
  private readonly items: QueueEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(e: QueueEntry): void {
    const a = this.items;
    e.inHeap = true;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, a[p]!)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }

  peek(): QueueEntry | undefined {
    return this.items[0];
  }

  pop(): QueueEntry | undefined {
    const a = this.items;
    const top = a[0];
    if (top === undefined) return undefined;
    top.inHeap = false;
    const last = a.pop()!;
    if (a.length !== 0) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(a[r]!, a[l]!) ? r : l;
        if (!before(a[c]!, last)) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }

  clear(): void {
    for (const e of this.items) e.inHeap = false;
    this.items.length = 0;
  }
}
