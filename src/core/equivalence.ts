import { AmqpError } from '../protocol/errors';
import { FieldTable, FieldValue, tableGet } from '../protocol/field-table';
import { fieldDisplay, fieldTypeName, fieldsEqualByClass } from '../protocol/field-compare';
import type { Exchange } from './exchanges/exchange';
import type { ExchangeDeclare, QueueDeclare } from './vhost';
import type { Queue } from './queue/queue';

/** Queue arguments RabbitMQ 3.x compares on redeclare; others may differ freely. */
const QUEUE_EQUIVALENCE_ARGS = [
  'x-expires',
  'x-message-ttl',
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-max-length',
  'x-max-length-bytes',
  'x-max-in-memory-length',
  'x-max-in-memory-bytes',
  'x-max-priority',
  'x-overflow',
  'x-queue-mode',
  'x-single-active-consumer',
  'x-queue-type',
  'x-quorum-initial-group-size',
  'x-queue-master-locator',
  'x-queue-leader-locator',
  'x-delivery-limit',
];

const EXCHANGE_EQUIVALENCE_ARGS = ['alternate-exchange'];

function fail(key: string, what: string, received: string, current: string): never {
  throw new AmqpError('PRECONDITION_FAILED', `inequivalent arg '${key}' for ${what}: received ${received} but current is ${current}`);
}

function describeArg(v: FieldValue | undefined): string {
  if (v === undefined) return 'none';
  return `the value '${fieldDisplay(v)}' of type '${fieldTypeName(v)}'`;
}

/** A bare value as RabbitMQ's val/1 prints it when both sides are present. */
function bare(v: FieldValue): string {
  return `'${fieldDisplay(v)}'`;
}

function checkArgs(current: FieldTable, requested: FieldTable, keys: readonly string[], what: string): void {
  for (const key of keys) {
    let a = tableGet(current, key);
    let b = tableGet(requested, key);
    // A queue declared without x-queue-type is a classic queue.
    if (key === 'x-queue-type') {
      if (a === undefined && b !== undefined && isClassic(b)) continue;
      if (b === undefined && a !== undefined && isClassic(a)) continue;
    }
    if (a === undefined && b === undefined) continue;
    if (a !== undefined && b !== undefined) {
      if (fieldsEqualByClass(a, b)) continue;
      fail(key, what, bare(b), bare(a));
    }
    fail(key, what, describeArg(b), describeArg(a));
  }
}

function isClassic(v: FieldValue): boolean {
  return v.type === 'S' && v.value.toString() === 'classic';
}

export function checkQueueEquivalence(q: Queue, d: QueueDeclare): void {
  const what = `queue '${q.name}' in vhost '${q.vhost}'`;
  if (q.durable !== d.durable) fail('durable', what, `'${d.durable}'`, `'${q.durable}'`);
  if (q.autoDelete !== d.autoDelete) fail('auto_delete', what, `'${d.autoDelete}'`, `'${q.autoDelete}'`);
  if (q.exclusiveOwner !== d.exclusiveOwner) {
    throw new AmqpError(
      'RESOURCE_LOCKED',
      `cannot obtain exclusive access to locked ${what}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`,
    );
  }
  checkArgs(q.arguments, d.arguments, QUEUE_EQUIVALENCE_ARGS, what);
}

export function checkExchangeEquivalence(x: Exchange, d: ExchangeDeclare): void {
  const what = `exchange '${x.name}' in vhost '${x.vhost}'`;
  if (x.type !== d.type) fail('type', what, `'${d.type}'`, `'${x.type}'`);
  if (x.durable !== d.durable) fail('durable', what, `'${d.durable}'`, `'${x.durable}'`);
  if (x.autoDelete !== d.autoDelete) fail('auto_delete', what, `'${d.autoDelete}'`, `'${x.autoDelete}'`);
  if (x.internal !== d.internal) fail('internal', what, `'${d.internal}'`, `'${x.internal}'`);
  checkArgs(x.arguments, d.arguments, EXCHANGE_EQUIVALENCE_ARGS, what);
}
