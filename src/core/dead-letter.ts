import type { FieldTable, FieldValue } from '../protocol/field-table';
import { tableGet } from '../protocol/field-table';
import { encodeProperties } from '../protocol/properties';
import { Message } from './message';
import type { DeadLetterReason, Queue } from './queue/queue';

const str = (s: string): FieldValue => ({ type: 'S', value: Buffer.from(s, 'utf8') });

/** The routing keys a message was published with: its key plus CC (BCC was stripped at publish). */
export function publishedRoutingKeys(msg: Message): string[] {
  const keys = [msg.routingKey];
  const cc = tableGet(msg.properties.headers, 'CC');
  if (cc?.type === 'A') for (const v of cc.value) if (v.type === 'S') keys.push(v.value.toString('utf8'));
  return keys;
}

/**
 * A copy of `msg` as RabbitMQ 3.x dead-letters it: an x-death entry per (queue, reason),
 * the most recent first with its count incremented, x-first-death-* set once, and the
 * expiration property moved into original-expiration.
 */
export function deadLetterCopy(msg: Message, queue: Queue, reason: DeadLetterReason, nowMs: number, routingKey: string): Message {
  const props = { ...msg.properties };
  const headers: FieldTable = props.headers ? [...props.headers] : [];
  const deaths = tableGet(headers, 'x-death');
  const list: FieldValue[] = deaths?.type === 'A' ? [...deaths.value] : [];
  const at = list.findIndex(
    (d) => d.type === 'F' && sameString(tableGet(d.value, 'queue'), queue.name) && sameString(tableGet(d.value, 'reason'), reason),
  );
  const time: FieldValue = { type: 'T', value: BigInt(Math.floor(nowMs / 1000)) };
  let entry: FieldTable;
  if (at >= 0) {
    const old = (list[at] as { type: 'F'; value: FieldTable }).value;
    const count = tableGet(old, 'count');
    const n = count !== undefined && (count.type === 'l' || count.type === 'L') ? count.value + 1n : 1n;
    entry = old.map(([k, v]): [string, FieldValue] => (k === 'count' ? [k, { type: 'l', value: n }] : k === 'time' ? [k, time] : [k, v]));
    list.splice(at, 1);
  } else {
    entry = [
      ['count', { type: 'l', value: 1n }],
      ['reason', str(reason)],
      ['queue', str(queue.name)],
      ['time', time],
      ['exchange', str(msg.exchange)],
      ['routing-keys', { type: 'A', value: publishedRoutingKeys(msg).map(str) }],
    ];
    if (props.expiration !== undefined) entry.push(['original-expiration', str(props.expiration)]);
  }
  list.unshift({ type: 'F', value: entry });
  setHeader(headers, 'x-death', { type: 'A', value: list });
  if (tableGet(headers, 'x-first-death-reason') === undefined) {
    setHeader(headers, 'x-first-death-reason', str(reason));
    setHeader(headers, 'x-first-death-queue', str(queue.name));
    setHeader(headers, 'x-first-death-exchange', str(msg.exchange));
  }
  props.headers = headers;
  delete props.expiration;
  return new Message(msg.exchange, routingKey, encodeProperties(props), msg.body);
}

/**
 * RabbitMQ drops a dead-lettered message instead of delivering it to a queue it already died
 * in, unless a client rejected it somewhere along that cycle (rabbit_dead_letter:is_cycle).
 */
export function isCycle(msg: Message, target: Queue): boolean {
  const deaths = tableGet(msg.properties.headers, 'x-death');
  if (deaths?.type !== 'A') return false;
  for (const d of deaths.value) {
    if (d.type !== 'F') continue;
    if (sameString(tableGet(d.value, 'reason'), 'rejected')) return false;
    if (sameString(tableGet(d.value, 'queue'), target.name)) return true;
  }
  return false;
}

function sameString(v: FieldValue | undefined, s: string): boolean {
  return v !== undefined && v.type === 'S' && v.value.toString('utf8') === s;
}

function setHeader(headers: FieldTable, name: string, value: FieldValue): void {
  const at = headers.findIndex(([k]) => k === name);
  if (at >= 0) headers[at] = [name, value];
  else headers.push([name, value]);
}
