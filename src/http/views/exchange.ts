import { Binding, Exchange, isQueue } from '../../core/exchanges/exchange';
import { DelayedExchange } from '../../core/exchanges/delayed';
import type { Queue } from '../../core/queue/queue';
import type { VHost } from '../../core/vhost';
import { X } from '../../observability/broker-stats';
import type { Management } from '../context';
import { tableJson } from './json';
import { withRate } from './stats';

export function exchangeView(m: Management, x: Exchange): Record<string, unknown> {
  const stats: Record<string, unknown> = {};
  withRate(stats, 'publish_in', x.stats.publishIn, m.stats.exchangeRate(x, X.publishIn));
  withRate(stats, 'publish_out', x.stats.publishOut, m.stats.exchangeRate(x, X.publishOut));
  return {
    name: x.name,
    vhost: x.vhost,
    type: x.type,
    durable: x.durable,
    auto_delete: x.autoDelete,
    internal: x.internal,
    arguments: tableJson(x.arguments),
    user_who_performed_action: 'rmq-internal',
    message_stats: stats,
    // Warren's addition: messages a delayed-message exchange holds until their x-delay ends.
    ...(x instanceof DelayedExchange ? { messages_delayed: x.heldCount } : {}),
  };
}

export function exchangeDetailView(m: Management, x: Exchange): Record<string, unknown> {
  return { ...exchangeView(m, x), incoming: [], outgoing: [] };
}

/** A binding as the API lists it; properties_key identifies it in DELETE paths. */
export interface BindingRow {
  source: string;
  vhost: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: Record<string, unknown>;
  properties_key: string;
}

export function bindingView(b: Binding): BindingRow {
  return {
    source: b.source.name,
    vhost: b.source.vhost,
    destination: b.destination.name,
    destination_type: isQueue(b.destination) ? 'queue' : 'exchange',
    routing_key: b.routingKey,
    arguments: tableJson(b.arguments),
    properties_key: propertiesKey(b.routingKey, b.argumentsKey),
  };
}

/** Every queue is bound to the default exchange by its name; RabbitMQ lists that binding too. */
export function defaultBindingView(q: Queue): BindingRow {
  return {
    source: '',
    vhost: q.vhost,
    destination: q.name,
    destination_type: 'queue',
    routing_key: q.name,
    arguments: {},
    properties_key: propertiesKey(q.name, ''),
  };
}

/** All bindings of a vhost: the default exchange's implicit ones first, then by source. */
export function vhostBindings(v: VHost): BindingRow[] {
  const out: BindingRow[] = [];
  for (const q of v.queues.values()) out.push(defaultBindingView(q));
  for (const x of v.exchanges.values()) for (const b of x.bindings) out.push(bindingView(b));
  return out;
}

/**
 * RabbitMQ's binding "properties key": the routing key quoted, then "~" and a short hash of
 * the arguments when there are any ("~" alone for an empty key without arguments). Clients
 * treat it as opaque, so the hash only has to be stable within Warren.
 */
export function propertiesKey(routingKey: string, argumentsKey: string): string {
  if (argumentsKey === '') return routingKey === '' ? '~' : quoteKey(routingKey);
  return `${quoteKey(routingKey)}~${argumentsHash(argumentsKey)}`;
}

/** quote_plus, with '~' escaped since it separates the key from the hash. */
function quoteKey(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9._\-]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** FNV-1a over the canonical encoded arguments, as 6 base64url characters. */
function argumentsHash(argumentsKey: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < argumentsKey.length; i++) {
    h ^= argumentsKey.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const b = Buffer.alloc(4);
  b.writeUInt32BE(h, 0);
  return b.toString('base64url');
}
