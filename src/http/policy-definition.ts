import type { PolicyKind } from '../core/policy';

/**
 * RabbitMQ's policy validators (rabbit_policies and friends): which keys a policy definition
 * may hold and what each value must be. Returns the validation text RabbitMQ would give, or
 * undefined when the definition is acceptable.
 */
type Check = (v: unknown) => string | undefined;

const erl = (v: unknown): string => (typeof v === 'string' ? `<<"${v}">>` : JSON.stringify(v));

const string = (what: string): Check => (v) => (typeof v === 'string' ? undefined : `${erl(v)} is not a valid ${what}`);
const nonNegInt = (what: string): Check => (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? undefined : `${erl(v)} is not a valid ${what}`);
const posInt = (what: string): Check => (v) => (Number.isSafeInteger(v) && (v as number) > 0 ? undefined : `${erl(v)} is not a valid ${what}`);
const oneOf = (what: string, values: unknown[]): Check => (v) => (values.includes(v) ? undefined : `${erl(v)} is not a valid ${what}`);
const bool = (what: string): Check => (v) => (typeof v === 'boolean' ? undefined : `${erl(v)} is not a valid ${what}`);
const any: Check = () => undefined;

const POLICY_KEYS: Record<string, Check> = {
  'alternate-exchange': string('alternate exchange name'),
  'dead-letter-exchange': string('dead letter exchange name'),
  'dead-letter-routing-key': string('dead letter exchange routing key'),
  'message-ttl': nonNegInt('message TTL'),
  expires: posInt('queue TTL'),
  'max-length': nonNegInt('maximum length'),
  'max-length-bytes': nonNegInt('maximum length in bytes'),
  'max-in-memory-length': nonNegInt('maximum memory length'),
  'max-in-memory-bytes': nonNegInt('maximum memory in bytes'),
  'delivery-limit': nonNegInt('delivery limit'),
  'max-priority': nonNegInt('maximum priority'),
  'consumer-timeout': nonNegInt('consumer timeout'),
  overflow: oneOf('overflow behaviour', ['drop-head', 'reject-publish', 'reject-publish-dlx']),
  'queue-mode': oneOf('queue mode', ['default', 'lazy']),
  'queue-version': oneOf('queue version', [1, 2]),
  'queue-master-locator': oneOf('queue master locator', ['min-masters', 'client-local', 'random']),
  'queue-leader-locator': oneOf('queue leader locator', ['client-local', 'balanced']),
  'ha-mode': oneOf('ha-mode value', ['all', 'exactly', 'nodes']),
  'ha-params': any,
  'ha-sync-mode': oneOf('ha-sync-mode value', ['manual', 'automatic']),
  'ha-sync-batch-size': posInt('ha-sync-batch-size value'),
  'ha-promote-on-shutdown': oneOf('ha-promote-on-shutdown value', ['always', 'when-synced']),
  'ha-promote-on-failure': oneOf('ha-promote-on-failure value', ['always', 'when-synced']),
  // Warren's own (Kafka's min.insync.replicas): publishes are nacked while fewer copies are in sync.
  'ha-min-isr': posInt('ha-min-isr value'),
  'federation-upstream': string('federation upstream'),
  'federation-upstream-set': string('federation upstream set'),
  'max-age': string('max age'),
  'stream-max-segment-size-bytes': nonNegInt('stream segment size'),
  'initial-cluster-size': posInt('initial cluster size'),
  'single-active-consumer': bool('single active consumer flag'),
};

/** Operator policies may only cap resources (rabbit_policies: operator_policy_validator). */
const OPERATOR_KEYS = new Set([
  'expires',
  'message-ttl',
  'max-length',
  'max-length-bytes',
  'max-in-memory-length',
  'max-in-memory-bytes',
  'delivery-limit',
  'consumer-timeout',
]);

export function validatePolicyDefinition(kind: PolicyKind, definition: Record<string, unknown>): string | undefined {
  const keys = Object.keys(definition);
  if (keys.length === 0) return 'Validation failed\n\nno policy settings given\n';
  const unknown = keys.filter((k) => POLICY_KEYS[k] === undefined || (kind === 'operator' && !OPERATOR_KEYS.has(k)));
  if (unknown.length !== 0) {
    const listed = unknown.map((k) => `{<<"${k}">>,${JSON.stringify(definition[k])}}`).join(',');
    return `Validation failed\n\n[${listed}] are not recognised policy settings\n`;
  }
  for (const k of keys) {
    const problem = POLICY_KEYS[k]!(definition[k]);
    if (problem !== undefined) return `Validation failed\n\n${problem}\n`;
  }
  if (definition['dead-letter-routing-key'] !== undefined && definition['dead-letter-exchange'] === undefined) {
    return 'Validation failed\n\ndead-letter-routing-key requires dead-letter-exchange\n';
  }
  return undefined;
}

export const APPLY_TO = ['all', 'queues', 'exchanges', 'classic_queues', 'quorum_queues', 'streams'] as const;
