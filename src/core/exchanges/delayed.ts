import { fieldInt, fieldString, tableGet } from '../../protocol/field-table';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { readExpiration } from '../../protocol/properties';
import { DelaySchedule, DelayStore, type DelayedRecord } from '../../store/delay-store';
import { Message } from '../message';
import { Binding, Destination, Exchange, ExchangeOptions } from './exchange';

type ExchangeFactory = (type: string, vhost: string, name: string, options: ExchangeOptions) => Exchange;

/** Where a channel hears about a mandatory message that found no route when released. */
export type ReturnTarget = NonNullable<Message['returnTo']>;

/**
 * The stores a delayed exchange keeps its pending messages in: `durable` (null without a data
 * directory) for persistent messages on a durable exchange, `scratch` for the rest.
 */
export interface DelayStores {
  readonly durable: DelayStore | null;
  scratch(): DelayStore;
}

/** At most this many releases per turn of the event loop, and at most this long. */
const RELEASE_BATCH = 2048;
const RELEASE_BUDGET_MS = 8;

let fallbackScratch: DelayStore | null = null;

/** For a vhost built without a broker (tests): one scratch store per process, in tmpdir. */
export const fallbackDelayStores: DelayStores = {
  durable: null,
  scratch(): DelayStore {
    if (fallbackScratch === null) {
      const dir = join(tmpdir(), `warren-delayed-${process.pid}`);
      fallbackScratch = DelayStore.open({ dir, durable: false });
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
    return fallbackScratch;
  },
};

/**
 * RabbitMQ's x-delayed-message exchange: a message with an x-delay header is held until it is
 * due, then routed by the x-delayed-type algorithm. Held messages are not kept in memory: they
 * are appended to due-time buckets on disk (src/store/delay-store.ts) and read back shortly
 * before they are due, so ten million pending cost disk, not RAM (the plugin keeps them all
 * in Mnesia and advises staying under a million).
 */
export class DelayedExchange extends Exchange {
  readonly type = 'x-delayed-message';
  private readonly inner: Exchange;
  private stores: DelayStores = fallbackDelayStores;
  private durableSchedule: DelaySchedule | null = null;
  private scratchSchedule: DelaySchedule | null = null;
  /** Publish order across both schedules (continues after recovered messages). */
  private seq = 0;
  /** seq of the message held by the last hold() (a mandatory publish's return target follows it). */
  private lastSeq = -1;
  /** Return targets of pending mandatory messages, by seq; channels live only in memory. */
  private readonly returns = new Map<number, ReturnTarget>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Messages released so far (stats and tests). */
  released = 0;
  /** Set by the vhost: routes a message whose delay has passed. */
  release: (x: DelayedExchange, msg: Message, routingKey: string) => void = () => {};

  constructor(vhost: string, name: string, options: ExchangeOptions, factory: ExchangeFactory) {
    super(vhost, name, options);
    const innerType = fieldString(tableGet(options.arguments, 'x-delayed-type')) ?? 'direct';
    this.inner = factory(innerType, vhost, name, { ...options, arguments: [] });
  }

  /**
   * Connects the exchange to its stores; a durable exchange picks up what a previous run
   * left in the durable store and starts releasing it.
   */
  attach(stores: DelayStores): void {
    this.stores = stores;
    if (this.durable && stores.durable !== null) {
      const s = this.adopt(stores.durable.schedule(this.storeKey));
      this.durableSchedule = s;
      if (s.pending !== 0) this.wake();
    }
  }

  private adopt(s: DelaySchedule): DelaySchedule {
    s.onReady = () => this.wake();
    if (s.maxSeq >= this.seq) this.seq = s.maxSeq + 1;
    return s;
  }

  get heldCount(): number {
    return (this.durableSchedule?.pending ?? 0) + (this.scratchSchedule?.pending ?? 0);
  }

  /** The schedules in use, for stats and tests. */
  get schedules(): DelaySchedule[] {
    const out: DelaySchedule[] = [];
    if (this.durableSchedule !== null) out.push(this.durableSchedule);
    if (this.scratchSchedule !== null) out.push(this.scratchSchedule);
    return out;
  }

  /**
   * The next `count` held messages in release order ((due, seq) over both schedules), read
   * without changing anything (DelaySchedule.peek; approximate for messages appended or
   * released while it reads).
   */
  async peek(count: number): Promise<Array<{ due: number; seq: number; record: DelayedRecord }>> {
    const parts = await Promise.all(this.schedules.map((s) => s.peek(count)));
    const all = parts.length === 1 ? parts[0]! : parts.flat().sort((a, b) => a.due - b.due || a.seq - b.seq);
    return all.slice(0, count);
  }

  /** Takes the message if it asks for a delay; the caller then counts it as routed. */
  hold(msg: Message, _routingKey: string): boolean {
    if (msg.delayReleased) return false;
    if (msg.delayHeld) return true; // already held for another of its CC routing keys
    const delay = fieldInt(tableGet(msg.properties.headers, 'x-delay'));
    if (delay === undefined || delay <= 0) return false;
    const now = Date.now();
    this.schedule(msg, now + delay, now);
    return true;
  }

  /** Migration from the message store: a stored delayed message keeps its original due time. */
  restore(msg: Message, publishedAt: number): void {
    const delay = fieldInt(tableGet(msg.properties.headers, 'x-delay')) ?? 0;
    this.schedule(msg, publishedAt + Math.max(0, delay), publishedAt);
  }

  /** A mandatory publish was held: a release that finds no route returns it to `to`. */
  returnHeldTo(to: ReturnTarget): void {
    if (this.lastSeq >= 0) this.returns.set(this.lastSeq, to);
  }

  /** Key under which persistent held messages of a durable delayed exchange are stored. */
  get storeKey(): string {
    return delayedStoreKey(this.vhost, this.name);
  }

  private schedule(msg: Message, due: number, publishedAt: number): void {
    msg.delayHeld = true;
    const durable = this.durable && msg.persistent && this.stores.durable !== null;
    let s: DelaySchedule;
    if (durable) s = this.durableSchedule ??= this.adopt(this.stores.durable!.schedule(this.storeKey));
    else s = this.scratchSchedule ??= this.adopt(this.scratchStore().schedule(`${this.storeKey}\u0000${++scratchGeneration}`));
    const seq = this.seq++;
    this.lastSeq = seq;
    s.append({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.rawProperties, body: msg.body, bcc: msg.bcc, publishedAt }, due, seq);
    // The confirm of a persistent message waits for this store's fsync (channel.ts).
    if (durable) msg.delayDurable = true;
    this.wake();
  }

  private scratchStore(): DelayStore {
    return this.stores.scratch();
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
    this.stopTimers();
    this.durableSchedule?.drop();
    this.scratchSchedule?.drop();
    this.durableSchedule = null;
    this.scratchSchedule = null;
    this.returns.clear();
  }

  /** Broker shutdown: stop releasing (the stores close after this). */
  stopTimers(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.immediate = null;
  }

  /** Something changed (an append, a bucket loaded): release what is due, re-arm the timer. */
  private wake(): void {
    if (this.immediate !== null || this.deleted) return;
    this.immediate = setImmediate(() => {
      this.immediate = null;
      this.fire();
    });
    this.immediate.unref();
  }

  /**
   * Releases due messages in (due, seq) order over both schedules, in bounded batches: a
   * backlog of due messages is spread over turns so that the loop keeps serving sockets.
   */
  private fire(): void {
    if (this.deleted) return;
    const started = performance.now();
    let now = Date.now();
    let n = 0;
    const d = this.durableSchedule;
    const t = this.scratchSchedule;
    d?.pump(now);
    t?.pump(now);
    let more = false;
    for (;;) {
      const dd = d === null ? Infinity : d.headDue();
      const td = t === null ? Infinity : t.headDue();
      let s: DelaySchedule | null;
      let due: number;
      if (dd < td || (dd === td && dd !== Infinity && d!.headSeq() < t!.headSeq())) {
        s = d;
        due = dd;
      } else {
        s = t;
        due = td;
      }
      // A bucket not yet read may hold something earlier: wait for the loader.
      const frontier = Math.min(d?.frontier ?? Infinity, t?.frontier ?? Infinity);
      if (s === null || due === Infinity || due > now || due >= frontier) break;
      if (n === RELEASE_BATCH || (n % 128 === 127 && performance.now() - started > RELEASE_BUDGET_MS)) {
        more = true;
        break;
      }
      const seq = s.headSeq();
      const rec = s.take();
      n++;
      const to = this.returns.get(seq);
      if (to !== undefined) this.returns.delete(seq);
      if (rec === null) continue;
      const msg = new Message(rec.exchange, rec.routingKey, rec.properties, rec.body);
      msg.bcc = rec.bcc === null ? null : [...rec.bcc];
      const expiration = readExpiration(rec.properties, 0, rec.properties.length);
      if (expiration !== undefined && /^\d+$/.test(expiration)) msg.ttl = Number(expiration);
      msg.delayReleased = true;
      msg.returnTo = to ?? null;
      this.released++;
      this.release(this, msg, rec.routingKey);
      if (n % 128 === 0) now = Date.now();
    }
    if (n !== 0) {
      d?.settle();
      t?.settle();
    }
    if (more) {
      this.wake();
      return;
    }
    this.arm();
  }

  private arm(): void {
    if (this.deleted) return;
    let at = Infinity;
    for (const s of this.schedules) {
      const head = s.headDue();
      if (head < s.frontier) at = Math.min(at, head);
      at = Math.min(at, s.nextLoadAt);
    }
    if (at === Infinity) return;
    if (this.timer !== null && this.timerAt <= at) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.fire();
    }, Math.max(0, at - Date.now()));
    this.timer.unref();
  }
}

/** Scratch schedules are per exchange incarnation: a redeclared exchange starts empty. */
let scratchGeneration = 0;

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


