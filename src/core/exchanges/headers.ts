import { headerValuesEqual } from '../../protocol/field-compare';
import { FieldValue, fieldString, tableGet } from '../../protocol/field-table';
import type { Message } from '../message';
import { Binding, Destination, Exchange } from './exchange';

type MatchKind = 'all' | 'any' | 'all-with-x' | 'any-with-x';

interface CompiledBinding {
  destination: Destination;
  binding: Binding;
  all: boolean;
  pattern: Array<[string, FieldValue]>;
}

/**
 * Routes on message headers. Follows RabbitMQ's rabbit_exchange_type_headers: binding keys
 * starting with "x-" are ignored unless x-match is one of the -with-x kinds; a void binding
 * value only asks for presence; values compare by type class and value.
 */
export class HeadersExchange extends Exchange {
  readonly type = 'headers';
  private compiled: CompiledBinding[] = [];

  route(msg: Message, _routingKey: string, out: Destination[]): void {
    if (this.compiled.length === 0) return;
    const headers = msg.properties.headers;
    let lookup: Map<string, FieldValue> | undefined;
    if (headers !== undefined && headers.length !== 0) {
      lookup = new Map();
      for (const [k, v] of headers) if (!lookup.has(k)) lookup.set(k, v);
    }
    for (const c of this.compiled) {
      if (matches(c, lookup)) out.push(c.destination);
    }
  }

  protected indexBinding(b: Binding): void {
    const kind = (fieldString(tableGet(b.arguments, 'x-match')) ?? 'all') as MatchKind;
    const withX = kind === 'all-with-x' || kind === 'any-with-x';
    const pattern: Array<[string, FieldValue]> = [];
    for (const [k, v] of b.arguments) {
      if (k === 'x-match') continue;
      if (!withX && k.startsWith('x-')) continue;
      if (pattern.some(([seen]) => seen === k)) continue;
      pattern.push([k, v]);
    }
    this.compiled.push({ destination: b.destination, binding: b, all: kind === 'all' || kind === 'all-with-x', pattern });
  }

  protected unindexBinding(b: Binding): void {
    this.compiled = this.compiled.filter((c) => c.binding !== b);
  }
}

function matches(c: CompiledBinding, headers: Map<string, FieldValue> | undefined): boolean {
  if (c.all) {
    for (const [k, want] of c.pattern) {
      const got = headers?.get(k);
      if (got === undefined) return false;
      if (want.type !== 'V' && !headerValuesEqual(want, got)) return false;
    }
    return true;
  }
  for (const [k, want] of c.pattern) {
    const got = headers?.get(k);
    if (got === undefined) continue;
    if (want.type === 'V' || headerValuesEqual(want, got)) return true;
  }
  return false;
}
