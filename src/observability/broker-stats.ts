import type { Channel } from '../amqp/channel';
import type { Connection } from '../amqp/connection';
import type { Exchange } from '../core/exchanges/exchange';
import type { Queue } from '../core/queue/queue';
import type { VHost } from '../core/vhost';
import { CounterSeries, History, RetiringTotals } from './rates';

/** What the sampler needs from the broker: the live model, read-only. */
export interface StatsSource {
  readonly vhosts: ReadonlyMap<string, VHost>;
  readonly connections: ReadonlySet<Connection>;
}

// Counter layouts, one index per counter in a CounterSeries.
export const Q = { publish: 0, deliverGet: 1, ack: 2, redeliver: 3, messages: 4, ready: 5, unacked: 6 } as const;
export const X = { publishIn: 0, publishOut: 1 } as const;
export const CH = { publish: 0, deliverGet: 1, ack: 2 } as const;
export const CONN = { recvOct: 0, sendOct: 1 } as const;
/** Broker-wide values kept for charts: message counters and queue depths. */
export const G = { publish: 0, deliverGet: 1, ack: 2, redeliver: 3, ready: 4, unacked: 5, messages: 6, get: 7 } as const;

const QUEUE_WIDTH = 7;
const GLOBAL_WIDTH = 8;
/** Ten minutes of per-second samples for the overview charts. */
const HISTORY_SECONDS = 600;

export interface MessageTotals {
  publish: number;
  deliverGet: number;
  get: number;
  ack: number;
  redeliver: number;
}

/**
 * Samples every queue, exchange, channel and connection once a second (one unref'd timer
 * per broker, only while management runs) and answers rates and broker-wide totals.
 * Per-entity series are held in WeakMaps, so an entity that goes away takes its series
 * with it.
 */
export class BrokerStats {
  private readonly queues = new WeakMap<Queue, CounterSeries>();
  private readonly exchanges = new WeakMap<Exchange, CounterSeries>();
  private readonly channels = new WeakMap<Channel, CounterSeries>();
  private readonly conns = new WeakMap<Connection, CounterSeries>();
  /**
   * Broker-wide totals come from exchanges (publish_in of the exchange a message was sent to)
   * and queues (deliveries, acks, redeliveries): they outlive the channels, so a client that
   * publishes on a channel and closes it at once is still counted.
   */
  private readonly exchangeTotals = new RetiringTotals<Exchange>(1);
  private readonly queueTotals = new RetiringTotals<Queue>(3);
  private readonly global = new CounterSeries(GLOBAL_WIDTH);
  readonly history = new History(GLOBAL_WIDTH, HISTORY_SECONDS);
  /** Messages fetched through management's /get (RabbitMQ counts them as basic.get). */
  readonly direct = { get: 0 };
  private timer: NodeJS.Timeout | null = null;
  /** Time of the previous sample; 0 before the first. */
  private lastSample = 0;

  constructor(
    private readonly source: StatsSource,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    if (this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over the model; public so tests can sample without waiting. */
  sample(now = Date.now()): void {
    const buf = new Float64Array(QUEUE_WIDTH);
    let ready = 0;
    let unacked = 0;
    for (const vhost of this.source.vhosts.values()) {
      for (const q of vhost.queues.values()) {
        readQueue(q, buf);
        this.seriesFor(this.queues, q, QUEUE_WIDTH).record(now, buf);
        ready += q.messageCount;
        unacked += q.unackedCount;
      }
      for (const x of vhost.exchanges.values()) {
        buf[0] = x.stats.publishIn;
        buf[1] = x.stats.publishOut;
        this.seriesFor(this.exchanges, x, 2).record(now, buf);
      }
    }
    for (const c of this.source.connections) {
      buf[0] = c.bytesReceived;
      buf[1] = c.bytesSent;
      this.seriesFor(this.conns, c, 2).record(now, buf);
      for (const ch of c.channelList) {
        readChannel(ch, buf);
        this.seriesFor(this.channels, ch, 3).record(now, buf);
      }
    }
    this.exchangeTotals.sample(this.liveExchanges(), readPublishIn);
    this.queueTotals.sample(this.liveQueues(), readQueueTotals);
    const t = this.messageTotals();
    const g = [t.publish, t.deliverGet, t.ack, t.redeliver, ready, unacked, ready + unacked, t.get];
    this.global.record(now, g);
    this.history.record(now, g);
    this.lastSample = now;
  }

  /**
   * An entity first seen now did not exist at the previous sample, so its counters were zero
   * then: seeding that point lets a burst right after creation show as a rate.
   */
  private seriesFor<K extends object>(map: WeakMap<K, CounterSeries>, k: K, width: number): CounterSeries {
    let s = map.get(k);
    if (s === undefined) {
      map.set(k, (s = new CounterSeries(width)));
      if (this.lastSample !== 0) s.record(this.lastSample, new Float64Array(width));
    }
    return s;
  }

  /** Broker-wide message counters since start, including entities that no longer exist. */
  messageTotals(): MessageTotals {
    const x = this.exchangeTotals.totals(this.liveExchanges(), readPublishIn);
    const q = this.queueTotals.totals(this.liveQueues(), readQueueTotals);
    return { publish: x[0]!, deliverGet: q[0]!, get: this.direct.get, ack: q[1]!, redeliver: q[2]! };
  }

  queueRate(q: Queue, i: number): number {
    return this.queues.get(q)?.rate(i) ?? 0;
  }

  exchangeRate(x: Exchange, i: number): number {
    return this.exchanges.get(x)?.rate(i) ?? 0;
  }

  channelRate(ch: Channel, i: number): number {
    return this.channels.get(ch)?.rate(i) ?? 0;
  }

  connectionRate(c: Connection, i: number): number {
    return this.conns.get(c)?.rate(i) ?? 0;
  }

  globalRate(i: number): number {
    return this.global.rate(i);
  }

  private *liveExchanges(): Iterable<Exchange> {
    for (const v of this.source.vhosts.values()) yield* v.exchanges.values();
  }

  private *liveQueues(): Iterable<Queue> {
    for (const v of this.source.vhosts.values()) yield* v.queues.values();
  }
}

function readQueue(q: Queue, out: Float64Array): void {
  out[Q.publish] = q.stats.published;
  out[Q.deliverGet] = q.stats.delivered;
  out[Q.ack] = q.stats.acked;
  out[Q.redeliver] = q.stats.redelivered;
  out[Q.messages] = q.messageCount + q.unackedCount;
  out[Q.ready] = q.messageCount;
  out[Q.unacked] = q.unackedCount;
}

function readChannel(ch: Channel, out: Float64Array): void {
  out[CH.publish] = ch.stats.published;
  out[CH.deliverGet] = ch.stats.delivered;
  out[CH.ack] = ch.stats.acked;
}

function readQueueTotals(q: Queue, out: Float64Array): void {
  out[0] = q.stats.delivered;
  out[1] = q.stats.acked;
  out[2] = q.stats.redelivered;
}

function readPublishIn(x: Exchange, out: Float64Array): void {
  out[0] = x.stats.publishIn;
}
