import { ChannelConsumer } from '../../amqp/channel-consumer';
import { Connection } from '../../amqp/connection';
import type { Consumer } from '../../core/queue/consumer';
import type { Queue } from '../../core/queue/queue';
import { Q } from '../../observability/broker-stats';
import type { Management } from '../context';
import { channelName, peerOf } from './connection';
import { jsonValue, tableJson } from './json';
import { withRate } from './stats';

/** A queue as GET /api/queues shows it (RabbitMQ's field names; Erlang-only fields left out). */
export function queueView(m: Management, q: Queue): Record<string, unknown> {
  const s = m.stats;
  const ready = q.messageCount;
  const unacked = q.unackedCount;
  const settings = q.settings;
  const where = m.placement(q.vhost, q.name);
  const view: Record<string, unknown> = {
    name: q.name,
    vhost: q.vhost,
    durable: q.durable,
    auto_delete: q.autoDelete,
    exclusive: q.exclusiveOwner !== null,
    arguments: tableJson(q.arguments),
    // RabbitMQ 3.x's classic-mirroring fields, then Warren's own, which name the leader among
    // the members (RabbitMQ's lists leave it out).
    node: where.node,
    slave_nodes: where.mirrors,
    synchronised_slave_nodes: where.inSync,
    leader: where.node,
    members: [where.node, ...where.mirrors],
    in_sync: [where.node, ...where.inSync],
    epoch: where.epoch,
    state: 'running',
    type: 'classic',
    consumers: q.consumerCount,
    consumer_capacity: q.consumerCount === 0 ? 0 : 1,
    consumer_utilisation: q.consumerCount === 0 ? 0 : 1,
    policy: settings.policy ?? null,
    operator_policy: settings.operatorPolicy ?? null,
    effective_policy_definition: effectivePolicyDefinition(m, q),
    exclusive_consumer_tag: q.consumerList.find((c) => c.exclusive)?.tag ?? null,
    single_active_consumer_tag: q.activeConsumer?.tag ?? null,
    head_message_timestamp: null,
    message_bytes: q.messageBytes,
    message_bytes_ready: q.messageBytes,
    message_bytes_unacknowledged: 0,
    message_bytes_ram: q.messageBytes,
    message_bytes_persistent: 0,
    message_bytes_paged_out: 0,
    messages_ram: ready + unacked,
    messages_ready_ram: ready,
    messages_unacknowledged_ram: unacked,
    messages_persistent: 0,
    messages_paged_out: 0,
    memory: 0,
    backing_queue_status: { mode: 'default', len: ready, version: 1 },
    message_stats: queueMessageStats(m, q),
  };
  withRate(view, 'messages', ready + unacked, s.queueRate(q, Q.messages));
  withRate(view, 'messages_ready', ready, s.queueRate(q, Q.ready));
  withRate(view, 'messages_unacknowledged', unacked, s.queueRate(q, Q.unacked));
  const owner = q.exclusiveOwner;
  if (owner instanceof Connection) view.owner_pid_details = { name: owner.name, ...peerOf(owner) };
  return view;
}

/** The single-queue view adds its consumers and empty incoming/deliveries, as RabbitMQ's. */
export function queueDetailView(m: Management, q: Queue): Record<string, unknown> {
  return {
    ...queueView(m, q),
    consumer_details: q.consumerList.map((c) => consumerView(m, c)).filter((c) => c !== undefined),
    incoming: [],
    deliveries: [],
  };
}

function queueMessageStats(m: Management, q: Queue): Record<string, unknown> {
  const s = m.stats;
  const out: Record<string, unknown> = {};
  withRate(out, 'publish', q.stats.published, s.queueRate(q, Q.publish));
  withRate(out, 'deliver_get', q.stats.delivered, s.queueRate(q, Q.deliverGet));
  withRate(out, 'deliver', q.stats.delivered, s.queueRate(q, Q.deliverGet));
  withRate(out, 'ack', q.stats.acked, s.queueRate(q, Q.ack));
  withRate(out, 'redeliver', q.stats.redelivered, s.queueRate(q, Q.redeliver));
  return out;
}

function effectivePolicyDefinition(m: Management, q: Queue): Record<string, unknown> {
  const policies = m.broker.policies;
  const operator = policies.effective('operator', q.vhost, q.name, 'queue');
  const policy = policies.effective('policy', q.vhost, q.name, 'queue');
  return { ...(operator?.definition ?? {}), ...(policy?.definition ?? {}) };
}

/** A consumer as /api/consumers and a queue's consumer_details show it. */
export function consumerView(m: Management, c: Consumer): Record<string, unknown> | undefined {
  if (!(c instanceof ChannelConsumer)) return undefined;
  const ch = c.channel;
  const conn = ch.conn;
  return {
    arguments: jsonValue(c.args),
    ack_required: !c.noAck,
    active: true,
    activity_status: 'up',
    channel_details: {
      connection_name: conn.name,
      name: channelName(ch),
      node: m.nodeName,
      number: ch.id,
      ...peerOf(conn),
      user: conn.userName,
    },
    consumer_tag: c.tag,
    exclusive: c.exclusive,
    prefetch_count: c.prefetch,
    queue: { name: c.queue.name, vhost: c.queue.vhost },
  };
}
