import type { FieldTable } from '../../protocol/field-table';
import type { Message } from '../message';
import type { Queue } from '../queue/queue';

export type Destination = Queue | Exchange;

export interface Binding {
  readonly source: Exchange;
  readonly destination: Destination;
  readonly routingKey: string;
  readonly arguments: FieldTable;
  /** Canonical form of the arguments, so equal bindings compare as equal strings. */
  readonly argumentsKey: string;
}

export interface ExchangeOptions {
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  arguments: FieldTable;
}

export function isQueue(d: Destination): d is Queue {
  return !(d instanceof Exchange);
}

/**
 * One routing algorithm per subclass. route() appends candidate destinations to `out`;
 * the caller removes duplicates and follows exchange-to-exchange bindings, so subclasses
 * stay free of loops and recursion.
 */
export abstract class Exchange {
  abstract readonly type: string;
  readonly bindings: Binding[] = [];
  routeEpoch = 0;
  deleted = false;
  readonly durable: boolean;
  readonly autoDelete: boolean;
  readonly internal: boolean;
  readonly arguments: FieldTable;
  readonly stats = { publishIn: 0, publishOut: 0 };

  constructor(
    readonly vhost: string,
    readonly name: string,
    options: ExchangeOptions,
  ) {
    this.durable = options.durable;
    this.autoDelete = options.autoDelete;
    this.internal = options.internal;
    this.arguments = options.arguments;
  }

  abstract route(msg: Message, routingKey: string, out: Destination[]): void;
  protected abstract indexBinding(b: Binding): void;
  protected abstract unindexBinding(b: Binding): void;

  /** Returns false when an identical binding already exists (bind is idempotent). */
  bind(b: Binding): boolean {
    if (this.findBinding(b.destination, b.routingKey, b.argumentsKey) >= 0) return false;
    this.bindings.push(b);
    this.indexBinding(b);
    return true;
  }

  unbind(destination: Destination, routingKey: string, argumentsKey: string): Binding | undefined {
    const at = this.findBinding(destination, routingKey, argumentsKey);
    if (at < 0) return undefined;
    const [b] = this.bindings.splice(at, 1);
    this.unindexBinding(b!);
    return b;
  }

  /** Drop every binding to a destination that is going away; returns how many went. */
  unbindDestination(destination: Destination): Binding[] {
    const removed: Binding[] = [];
    for (let i = this.bindings.length - 1; i >= 0; i--) {
      const b = this.bindings[i]!;
      if (b.destination === destination) {
        this.bindings.splice(i, 1);
        this.unindexBinding(b);
        removed.push(b);
      }
    }
    return removed;
  }

  private findBinding(destination: Destination, routingKey: string, argumentsKey: string): number {
    for (let i = 0; i < this.bindings.length; i++) {
      const b = this.bindings[i]!;
      if (b.destination === destination && b.routingKey === routingKey && b.argumentsKey === argumentsKey) {
        return i;
      }
    }
    return -1;
  }
}
