import { AmqpError } from '../protocol/errors';
import type { FieldValue } from '../protocol/field-table';

// The few content-header properties the broker reads at publish, found by their flag bits
// (AMQP 0-9-1 §4.2.6.1: bit 15 is content-type, down to bit 2 for cluster-id).
export const EXPIRATION_FLAG = 0x0100;
/** user-id (0x0010), reply-to (0x0200) and headers (0x2000): decode the properties only when set. */
export const INSPECTED_PROPERTIES = 0x0010 | 0x0200 | 0x2000;

/** RabbitMQ's rabbit_basic:parse_expiration: a non-negative integer of milliseconds, as a string. */
export function parseExpiration(text: string): number {
  const fail = (reason: string): never => {
    throw new AmqpError('PRECONDITION_FAILED', `invalid expiration '${text}': ${reason}`, 60, 40);
  };
  const m = /^([+-]?\d+)(.*)$/s.exec(text);
  if (m === null) fail('no_integer');
  if (m![2] !== '') fail(`{leftover_string,"${m![2]}"}`);
  const n = BigInt(m![1]!);
  if (n < 0n) fail(`{value_negative,${n}}`);
  // RabbitMQ's limit: the TTL must fit Erlang's timer range (2^32 - 1 ms).
  if (n > 4294967295n) fail(`{value_too_large,${n}}`);
  return Number(n);
}

/** CC / BCC header values: one longstr or an array of them (sender-selected distribution). */
export function routingKeysOf(v: FieldValue | undefined): string[] {
  if (v === undefined) return [];
  if (v.type === 'S') return [v.value.toString('utf8')];
  if (v.type !== 'A') return [];
  const keys: string[] = [];
  for (const item of v.value) if (item.type === 'S') keys.push(item.value.toString('utf8'));
  return keys;
}
