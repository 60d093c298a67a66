import type { Message } from '../message';
import { Binding, Destination, Exchange } from './exchange';

/** Every bound destination gets every message; routing keys are ignored. */
export class FanoutExchange extends Exchange {
  readonly type = 'fanout';
  private readonly destinations: Destination[] = [];

  route(_msg: Message, _routingKey: string, out: Destination[]): void {
    const list = this.destinations;
    for (let i = 0; i < list.length; i++) out.push(list[i]!);
  }

  protected indexBinding(b: Binding): void {
    this.destinations.push(b.destination);
  }

  protected unindexBinding(b: Binding): void {
    const at = this.destinations.indexOf(b.destination);
    if (at >= 0) this.destinations.splice(at, 1);
  }
}
