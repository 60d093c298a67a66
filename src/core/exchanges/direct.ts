import type { Message } from '../message';
import { Binding, Destination, Exchange } from './exchange';

/** Exact routing-key match: one Map lookup per publish. */
export class DirectExchange extends Exchange {
  readonly type: string = 'direct';
  private readonly byKey = new Map<string, Destination[]>();

  route(_msg: Message, routingKey: string, out: Destination[]): void {
    const list = this.byKey.get(routingKey);
    if (list !== undefined) for (let i = 0; i < list.length; i++) out.push(list[i]!);
  }

  protected indexBinding(b: Binding): void {
    const list = this.byKey.get(b.routingKey);
    if (list === undefined) this.byKey.set(b.routingKey, [b.destination]);
    else list.push(b.destination);
  }

  protected unindexBinding(b: Binding): void {
    const list = this.byKey.get(b.routingKey);
    if (list === undefined) return;
    const at = list.indexOf(b.destination);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.byKey.delete(b.routingKey);
  }
}
