import { fieldInt, fieldString, tableGet } from '../../protocol/field-table';
import type { Message } from '../message';
import { Binding, Destination, Exchange, ExchangeOptions } from './exchange';

interface Held {
  due: number;
  seq: number;
  msg: Message;
  routingKey: string;
}

type ExchangeFactory = (type: string, vhost: string, name: string, options: ExchangeOptions) => Exchange;

/**
 * RabbitMQ's x-delayed-message exchange: a message with an x-delay header is held until it is
 * due, then routed by the x-delayed-type algorithm. Held messages sit in one binary heap with
 * one timer for the earliest, so the number held is bounded by memory, not by a table size
 * (the plugin advises staying under a million).
 */
export class DelayedExchange extends Exchange {
  readonly type = 'x-delayed-message';
  private readonly inner: Exchange;
  private readonly heap: Held[] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  /** Set by the vhost: routes a message whose delay has passed. */
  release: (x: DelayedExchange, msg: Message, routingKey: string) => void = () => {};

  constructor(vhost: string, name: string, options: ExchangeOptions, factory: ExchangeFactory) {
    super(vhost, name, options);
    const innerType = fieldString(tableGet(options.arguments, 'x-delayed-type')) ?? 'direct';
    this.inner = factory(innerType, vhost, name, { ...options, arguments: [] });
  }

  get heldCount(): number {
    return this.heap.length;
  }

  /** Takes the message if it asks for a delay; the caller then counts it as routed. */
  hold(msg: Message, routingKey: string): boolean {
    if (msg.delayReleased) return false;
    if (msg.delayHeld) return true; // already held for another of its CC routing keys
    const delay = fieldInt(tableGet(msg.properties.headers, 'x-delay'));
    if (delay === undefined || delay <= 0) return false;
    this.schedule(msg, Date.now() + delay);
    return true;
  }

  /** Recovery: a stored delayed message is held again until its original due time (at once if late). */
  restore(msg: Message, publishedAt: number): void {
    const delay = fieldInt(tableGet(msg.properties.headers, 'x-delay')) ?? 0;
    this.schedule(msg, publishedAt + Math.max(0, delay));
  }

  /** Key under which persistent held messages of a durable delayed exchange sit in the store. */
  get storeKey(): string {
    return delayedStoreKey(this.vhost, this.name);
  }

  private schedule(msg: Message, due: number): void {
    msg.refs++;
    msg.delayHeld = true;
    this.push({ due, seq: this.seq++, msg, routingKey: msg.routingKey });
  }

  route(msg: Message, routingKey: string, out: Destination[]): void {
    this.inner.route(msg, routingKey, out);
  }

  protected indexBinding(b: Binding): void {
    this.inner.bind(b);
  }

  protected unindexBinding(b: Binding): void {
    this.inner.unbind(b.destination, b.routingKey, b.argumentsKey);
  }

  /** The exchange was deleted: held messages go with it, as with the plugin. */
  dispose(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const h of this.heap) h.msg.refs--;
    this.heap.length = 0;
  }

  private fire(): void {
    this.timer = null;
    const now = Date.now();
    while (this.heap.length !== 0 && this.heap[0]!.due <= now) {
      const h = this.pop();
      h.msg.refs--;
      h.msg.delayReleased = true;
      if (!this.deleted) this.release(this, h.msg, h.routingKey);
    }
    this.arm();
  }

  private arm(): void {
    const next = this.heap[0];
    if (next === undefined || this.deleted) return;
    if (this.timer !== null && this.timerAt <= next.due) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = next.due;
    this.timer = setTimeout(() => this.fire(), Math.max(0, next.due - Date.now()));
    this.timer.unref();
  }

  private push(h: Held): void {
    const a = this.heap;
    a.push(h);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (earlier(a[p]!, h)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = h;
    this.arm();
  }

  private pop(): Held {
    const a = this.heap;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length !== 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && earlier(a[r]!, a[l]!) ? r : l;
        if (earlier(last, a[c]!)) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

const DELAYED_SUFFIX = '\u0000x-delayed';

export function delayedStoreKey(vhost: string, exchange: string): string {
  return `${vhost}\u0000${exchange}${DELAYED_SUFFIX}`;
}

/** The (vhost, exchange) of a store key made by delayedStoreKey, or undefined for a queue key. */
export function parseDelayedStoreKey(key: string): { vhost: string; exchange: string } | undefined {
  if (!key.endsWith(DELAYED_SUFFIX)) return undefined;
  const split = key.indexOf('\u0000');
  return { vhost: key.slice(0, split), exchange: key.slice(split + 1, key.length - DELAYED_SUFFIX.length) };
}

/** Due time first, then publish order, so equal delays keep their order. */
function earlier(a: Held, b: Held): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}
