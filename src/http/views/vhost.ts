import type { User } from '../../auth/users';
import type { Policy, PolicyKind } from '../../core/policy';
import type { VHost } from '../../core/vhost';
import { CONN, Q } from '../../observability/broker-stats';
import type { Management } from '../context';
import { withRate } from './stats';

export function vhostView(m: Management, v: VHost): Record<string, unknown> {
  const meta = m.metadata(v.name);
  const s = m.stats;
  let ready = 0;
  let unacked = 0;
  const totals = [0, 0, 0, 0];
  const rates = [0, 0, 0, 0, 0, 0, 0];
  for (const q of v.queues.values()) {
    ready += q.messageCount;
    unacked += q.unackedCount;
    totals[0]! += q.stats.published;
    totals[1]! += q.stats.delivered;
    totals[2]! += q.stats.acked;
    totals[3]! += q.stats.redelivered;
    for (let i = 0; i < rates.length; i++) rates[i]! += s.queueRate(q, i);
  }
  let recv = 0;
  let send = 0;
  let recvRate = 0;
  let sendRate = 0;
  for (const c of m.broker.connections) {
    if (c.vhost !== v) continue;
    recv += c.bytesReceived;
    send += c.bytesSent;
    recvRate += s.connectionRate(c, CONN.recvOct);
    sendRate += s.connectionRate(c, CONN.sendOct);
  }
  const stats: Record<string, unknown> = {};
  withRate(stats, 'publish', totals[0]!, round(rates[Q.publish]!));
  withRate(stats, 'deliver_get', totals[1]!, round(rates[Q.deliverGet]!));
  withRate(stats, 'deliver', totals[1]!, round(rates[Q.deliverGet]!));
  withRate(stats, 'ack', totals[2]!, round(rates[Q.ack]!));
  withRate(stats, 'redeliver', totals[3]!, round(rates[Q.redeliver]!));
  const view: Record<string, unknown> = {
    name: v.name,
    description: meta.description,
    tags: meta.tags,
    default_queue_type: meta.defaultQueueType,
    metadata: { description: meta.description, tags: meta.tags },
    tracing: meta.tracing,
    cluster_state: Object.fromEntries(m.nodeNames().map((n) => [n, 'running'])),
    message_stats: stats,
  };
  withRate(view, 'messages', ready + unacked, round(rates[Q.messages]!));
  withRate(view, 'messages_ready', ready, round(rates[Q.ready]!));
  withRate(view, 'messages_unacknowledged', unacked, round(rates[Q.unacked]!));
  withRate(view, 'recv_oct', recv, round(recvRate));
  withRate(view, 'send_oct', send, round(sendRate));
  return view;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

export function userView(u: User): Record<string, unknown> {
  return {
    name: u.name,
    password_hash: u.passwordHash,
    hashing_algorithm: u.hashingAlgorithm,
    tags: u.tags,
    limits: u.limits,
  };
}

/** Policies and operator policies look the same; RabbitMQ spells the key "apply-to". */
export function policyView(p: Policy): Record<string, unknown> {
  return { vhost: p.vhost, name: p.name, pattern: p.pattern, 'apply-to': p.applyTo, definition: p.definition, priority: p.priority };
}

export function policyKindOf(path: 'policies' | 'operator-policies'): PolicyKind {
  return path === 'policies' ? 'policy' : 'operator';
}
