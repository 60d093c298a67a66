import type { FieldTable, FieldValue } from '../protocol/field-table';
import { tableGet } from '../protocol/field-table';
import { encodeProperties } from '../protocol/properties';
import { Message } from './message';
import type { DeadLetterReason, Queue } from './queue/queue';

const str = (s: string): FieldValue => ({ type: 'S', value: Buffer.from(s, 'utf8') });

/** The routing keys a message was published with: its key plus CC (BCC is never shown). */
export function publishedRoutingKeys(msg: Message): string[] {
  const keys = [msg.routingKey];
  const cc = tableGet(msg.properties.headers, 'CC');
  if (cc?.type === 'A') {
    for (const v of cc.value) if (v.type === 'S') keys.push(v.value.toString('utf8'));
  } else if (cc?.type === 'S') {
    keys.push(cc.value.toString('utf8'));
  }
  return keys;
}

export interface DeadLettered {
  copy: Message;
  /** Routing keys for the dead-letter exchange: the configured key, or the original keys with BCC. */
  routingKeys: string[];
}

/**
 * A copy of `msg` as RabbitMQ 3.x dead-letters it (rabbit_dead_letter): republished through
 * the dead-letter exchange; an x-death entry per (queue, reason), the most recent first, an
 * existing entry's count incremented; x-first-death-* set once; expiration moved into
 * original-expiration; CC dropped when a dead-letter routing key replaces the keys; and the
 * header table sorted by name, as RabbitMQ stores tables.
 */
export function deadLetterCopy(
  msg: Message,
  queue: Queue,
  reason: DeadLetterReason,
  nowMs: number,
  deadLetterExchange: string,
  deadLetterRoutingKey: string | undefined,
): DeadLettered {
  const props = { ...msg.properties };
  const published = publishedRoutingKeys(msg);
  let headers: FieldTable = props.headers ? [...props.headers] : [];
  const deaths = tableGet(headers, 'x-death');
  const list: FieldValue[] = deaths?.type === 'A' ? [...deaths.value] : [];
  const at = list.findIndex(
    (d) => d.type === 'F' && sameString(tableGet(d.value, 'queue'), queue.name) && sameString(tableGet(d.value, 'reason'), reason),
  );
  const time: FieldValue = { type: 'T', value: BigInt(Math.floor(nowMs / 1000)) };
  let entry: FieldTable;
  if (at >= 0) {
    // An existing entry is rewritten: count+1, and (as RabbitMQ re-sorts it) keys in order.
    const old = (list[at] as { type: 'F'; value: FieldTable }).value;
    const count = tableGet(old, 'count');
    const n = count !== undefined && (count.type === 'l' || count.type === 'L') ? count.value + 1n : 1n;
    entry = sortedTable(old.map(([k, v]): [string, FieldValue] => (k === 'count' ? [k, { type: 'l', value: n }] : [k, v])));
    list.splice(at, 1);
  } else {
    entry = [
      ['count', { type: 'l', value: 1n }],
      ['reason', str(reason)],
      ['queue', str(queue.name)],
      ['time', time],
      ['exchange', str(msg.exchange)],
      ['routing-keys', { type: 'A', value: published.map(str) }],
    ];
    if (props.expiration !== undefined) entry.push(['original-expiration', str(props.expiration)]);
    // Only the very first x-death entry keeps creation order; later ones come out sorted.
    if (list.length !== 0) entry = sortedTable(entry);
  }
  list.unshift({ type: 'F', value: entry });
  setHeader(headers, 'x-death', { type: 'A', value: list });
  if (tableGet(headers, 'x-first-death-reason') === undefined) {
    setHeader(headers, 'x-first-death-reason', str(reason));
    setHeader(headers, 'x-first-death-queue', str(queue.name));
    setHeader(headers, 'x-first-death-exchange', str(msg.exchange));
  }
  if (deadLetterRoutingKey !== undefined) headers = headers.filter(([k]) => k !== 'CC');
  props.headers = sortedTable(headers);
  delete props.expiration;
  const routingKeys = deadLetterRoutingKey !== undefined ? [deadLetterRoutingKey] : [...published, ...(msg.bcc ?? [])];
  const copy = new Message(deadLetterExchange, routingKeys[0]!, encodeProperties(props), msg.body);
  return { copy, routingKeys };
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

/** Erlang term order on binaries: byte-wise. */
function sortedTable(t: FieldTable): FieldTable {
  return [...t].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
