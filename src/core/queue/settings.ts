import { FieldTable, FieldValue, fieldString, tableGet } from '../../protocol/field-table';
import type { Policy } from '../policy';

export type Overflow = 'drop-head' | 'reject-publish' | 'reject-publish-dlx';

/** A queue's effective lifecycle settings: its arguments merged with the policies in force. */
export interface QueueSettings {
  messageTtl: number | undefined;
  expires: number | undefined;
  maxLength: number | undefined;
  maxLengthBytes: number | undefined;
  overflow: Overflow;
  deadLetterExchange: string | undefined;
  deadLetterRoutingKey: string | undefined;
  maxPriority: number | undefined;
  singleActiveConsumer: boolean;
  consumerTimeout: number | undefined;
  /** Name of the user policy applied, for management. */
  policy: string | undefined;
  operatorPolicy: string | undefined;
}

function argInt(v: FieldValue | undefined): number | undefined {
  if (v === undefined) return undefined;
  switch (v.type) {
    case 'b': case 'B': case 's': case 'u': case 'I': case 'i': case 'f': case 'd':
      return v.value;
    case 'l': case 'L':
      return Number(v.value);
    default:
      return undefined;
  }
}

function policyInt(def: Record<string, unknown> | undefined, key: string): number | undefined {
  const v = def?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function policyString(def: Record<string, unknown> | undefined, key: string): string | undefined {
  const v = def?.[key];
  return typeof v === 'string' ? v : undefined;
}

/** RabbitMQ takes the smaller of argument, policy and operator policy for numeric limits. */
function smallest(...values: (number | undefined)[]): number | undefined {
  let out: number | undefined;
  for (const v of values) if (v !== undefined && (out === undefined || v < out)) out = v;
  return out;
}

export function effectiveSettings(args: FieldTable, policy: Policy | undefined, operator: Policy | undefined): QueueSettings {
  const p = policy?.definition;
  const o = operator?.definition;
  const overflow = (fieldString(tableGet(args, 'x-overflow')) ?? policyString(p, 'overflow') ?? policyString(o, 'overflow') ?? 'drop-head') as Overflow;
  const sac = tableGet(args, 'x-single-active-consumer');
  return {
    messageTtl: smallest(argInt(tableGet(args, 'x-message-ttl')), policyInt(p, 'message-ttl'), policyInt(o, 'message-ttl')),
    expires: smallest(argInt(tableGet(args, 'x-expires')), policyInt(p, 'expires'), policyInt(o, 'expires')),
    maxLength: smallest(argInt(tableGet(args, 'x-max-length')), policyInt(p, 'max-length'), policyInt(o, 'max-length')),
    maxLengthBytes: smallest(argInt(tableGet(args, 'x-max-length-bytes')), policyInt(p, 'max-length-bytes'), policyInt(o, 'max-length-bytes')),
    overflow,
    // For these the queue's own argument wins over a policy, as in RabbitMQ.
    deadLetterExchange: fieldString(tableGet(args, 'x-dead-letter-exchange')) ?? policyString(p, 'dead-letter-exchange'),
    deadLetterRoutingKey: fieldString(tableGet(args, 'x-dead-letter-routing-key')) ?? policyString(p, 'dead-letter-routing-key'),
    maxPriority: argInt(tableGet(args, 'x-max-priority')) ?? policyInt(p, 'max-priority'),
    singleActiveConsumer: sac !== undefined && sac.type === 't' && sac.value,
    consumerTimeout: argInt(tableGet(args, 'x-consumer-timeout')) ?? policyInt(p, 'consumer-timeout') ?? policyInt(o, 'consumer-timeout'),
    policy: policy?.name,
    operatorPolicy: operator?.name,
  };
}
