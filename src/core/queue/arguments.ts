import { AmqpError } from '../../protocol/errors';
import { fieldTypeName } from '../../protocol/field-compare';
import { FieldTable, FieldValue, tableGet } from '../../protocol/field-table';

type Check = (v: FieldValue, args: FieldTable) => string | undefined;

const INT_TYPES = new Set(['b', 'B', 's', 'u', 'I', 'i', 'l', 'L']);

function intValue(v: FieldValue): number | undefined {
  if (!INT_TYPES.has(v.type)) return undefined;
  return Number((v as { value: number | bigint }).value);
}

const integer: Check = (v) => (INT_TYPES.has(v.type) ? undefined : `"expected integer, got ${fieldTypeName(v)}"`);

const nonNegative: Check = (v, a) => {
  const err = integer(v, a);
  if (err !== undefined) return err;
  const n = intValue(v)!;
  return n < 0 ? `{value_negative,${n}}` : undefined;
};

const positive: Check = (v, a) => {
  const err = integer(v, a);
  if (err !== undefined) return err;
  const n = intValue(v)!;
  if (n === 0) return `{value_zero,${n}}`;
  return n < 0 ? `{value_negative,${n}}` : undefined;
};

const longstr: Check = (v) => (v.type === 'S' ? undefined : `{unacceptable_type,${fieldTypeName(v)}}`);

const bool: Check = (v) => (v.type === 't' ? undefined : `{unacceptable_type,${fieldTypeName(v)}}`);

function oneOf(values: string[]): Check {
  return (v) => {
    if (v.type !== 'S') return `{unacceptable_type,${fieldTypeName(v)}}`;
    const s = v.value.toString('utf8');
    return values.includes(s) ? undefined : `{invalid_value,<<"${s}">>}`;
  };
}

const maxPriority: Check = (v, a) => {
  const err = nonNegative(v, a);
  if (err !== undefined) return err;
  const n = intValue(v)!;
  return n > 255 ? `{max_value_exceeded,${n}}` : undefined;
};

const deadLetterRoutingKey: Check = (v, a) => {
  const err = longstr(v, a);
  if (err !== undefined) return err;
  return tableGet(a, 'x-dead-letter-exchange') === undefined ? 'routing_key_but_no_dlx_defined' : undefined;
};

/** RabbitMQ's declare-time checks (rabbit_amqqueue:declare_args), same reasons in the texts. */
const CHECKS: Record<string, Check> = {
  'x-expires': positive,
  'x-message-ttl': nonNegative,
  'x-dead-letter-exchange': longstr,
  'x-dead-letter-routing-key': deadLetterRoutingKey,
  'x-max-length': nonNegative,
  'x-max-length-bytes': nonNegative,
  'x-max-priority': maxPriority,
  'x-overflow': (v) =>
    v.type === 'S' && ['drop-head', 'reject-publish', 'reject-publish-dlx'].includes(v.value.toString()) ? undefined : 'invalid_overflow',
  'x-queue-mode': oneOf(['default', 'lazy']),
  'x-queue-leader-locator': oneOf(['client-local', 'balanced']),
  'x-queue-master-locator': oneOf(['min-masters', 'client-local', 'random']),
  'x-queue-type': oneOf(['classic', 'quorum', 'stream']),
  'x-single-active-consumer': bool,
  'x-consumer-timeout': nonNegative,
};

/** basic.consume's x-priority must be an integer (rabbit_queue_consumers). */
export function validateConsumerPriority(queue: string, vhost: string, v: FieldValue | undefined): void {
  if (v === undefined) return;
  const reason = integer(v, []);
  if (reason !== undefined) {
    throw new AmqpError('PRECONDITION_FAILED', `invalid arg 'x-priority' for queue '${queue}' in vhost '${vhost}': ${reason}`, 60, 20);
  }
}

export function validateQueueArguments(queue: string, vhost: string, args: FieldTable): void {
  for (const [key, value] of args) {
    const check = CHECKS[key];
    if (check === undefined) continue;
    const reason = check(value, args);
    if (reason !== undefined) {
      throw new AmqpError('PRECONDITION_FAILED', `invalid arg '${key}' for queue '${queue}' in vhost '${vhost}': ${reason}`);
    }
  }
}
