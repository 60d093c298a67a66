import { DelayedExchange } from './delayed';
import { DirectExchange } from './direct';
import { Exchange, ExchangeOptions } from './exchange';
import { FanoutExchange } from './fanout';
import { HeadersExchange } from './headers';
import { TopicExchange } from './topic';

type ExchangeClass = new (vhost: string, name: string, options: ExchangeOptions) => Exchange;

const TYPES: Record<string, ExchangeClass> = {
  direct: DirectExchange,
  fanout: FanoutExchange,
  topic: TopicExchange,
  headers: HeadersExchange,
};

export function isExchangeType(type: string): boolean {
  return type === 'x-delayed-message' || Object.prototype.hasOwnProperty.call(TYPES, type);
}

export function createExchange(type: string, vhost: string, name: string, options: ExchangeOptions): Exchange {
  if (type === 'x-delayed-message') return new DelayedExchange(vhost, name, options, createExchange);
  const cls = TYPES[type];
  if (cls === undefined) throw new Error(`unknown exchange type ${type}`);
  return new cls(vhost, name, options);
}
