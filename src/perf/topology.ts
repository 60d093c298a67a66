// Names and routing of a run: which queues, which exchange, which bindings, and which routing
// keys each producer cycles through. Pure functions of the options, so the main thread and the
// workers agree without talking.

import type { PerfOptions } from './options';

export interface Binding {
  queue: string;
  key: string;
}

export interface Topology {
  prefix: string;
  queues: string[];
  /** '' = the default exchange. */
  exchange: string;
  exchangeType: string;
  /** Whether this run declares (and so deletes) the exchange. */
  ownsExchange: boolean;
  /** Whether this run declares (and so deletes) the queues. */
  ownsQueues: boolean;
  bindings: Binding[];
}

export function defaultPrefix(): string {
  return `warren-perf-${process.pid}-${Date.now().toString(36)}`;
}

export function buildTopology(o: PerfOptions): Topology {
  const prefix = o.queuePrefix || defaultPrefix();
  const queues: string[] = [];
  if (o.queuePattern) {
    for (let i = o.queuePatternFrom; i <= o.queuePatternTo; i++) queues.push(o.queuePattern.replace('%d', String(i)));
  } else {
    for (let i = 0; i < o.queues; i++) queues.push(`${prefix}-q${i}`);
  }
  let exchange = o.exchange;
  if (o.exchangeType && !exchange) exchange = `${prefix}-x`;
  const ownsExchange = Boolean(o.exchangeType) && !o.predeclared && exchange !== '' && !exchange.startsWith('amq.');
  const bindings: Binding[] = [];
  if (exchange !== '' && !o.predeclared) {
    if (o.topicBindings > 0) {
      for (let j = 0; j < o.topicBindings; j++) {
        bindings.push({ queue: queues[j % queues.length]!, key: topicBindingKey(j, o.topicBindings) });
      }
    } else {
      for (const q of queues) bindings.push({ queue: q, key: bindingKey(o, q) });
    }
  }
  return {
    prefix,
    queues,
    exchange,
    exchangeType: o.exchangeType || 'direct',
    ownsExchange,
    ownsQueues: !o.predeclared,
    bindings,
  };
}

function bindingKey(o: PerfOptions, queue: string): string {
  if (o.routingKey !== null) return o.routingKey;
  if (o.exchangeType === 'fanout') return '';
  if (o.exchangeType === 'topic') return `${queue}.#`;
  return queue;
}

/** The routing keys producer i cycles through (usually one). */
export function producerKeys(o: PerfOptions, t: Topology, i: number): string[] {
  if (o.topicBindings > 0) {
    // Start each producer at a different binding so that several producers spread the load.
    const n = o.topicBindings;
    const keys: string[] = [];
    const start = Math.floor((i * n) / Math.max(1, o.producers));
    for (let k = 0; k < n; k++) keys.push(topicRoutingKey((start + k) % n, n));
    return keys;
  }
  if (o.routingKey !== null) return [o.routingKey];
  const q = t.queues[i % t.queues.length]!;
  if (t.exchange === '') return [q];
  if (o.exchangeType === 'fanout') return [''];
  if (o.exchangeType === 'topic') return [`${q}.perf`];
  return [q];
}

/**
 * Binding j of n, its pattern chosen by j mod 4 so that the exchange holds a mix of * and #
 * patterns: perf.bJ.*  perf.*.bJ  perf.bJ.#  #.bJ. The routing key perf.bJ.bJ matches
 * binding j and no other (J is zero-padded, so no word of one key equals another's).
 */
export function topicBindingKey(j: number, n: number): string {
  const w = word(j, n);
  switch (j % 4) {
    case 0:
      return `perf.${w}.*`;
    case 1:
      return `perf.*.${w}`;
    case 2:
      return `perf.${w}.#`;
    default:
      return `#.${w}`;
  }
}

export function topicRoutingKey(j: number, n: number): string {
  const w = word(j, n);
  return `perf.${w}.${w}`;
}

function word(j: number, n: number): string {
  return `b${String(j).padStart(String(Math.max(0, n - 1)).length, '0')}`;
}
