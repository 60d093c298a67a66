import { readdirSync, statfsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { isExchangeType } from '../../core/exchanges/registry';
import { G } from '../../observability/broker-stats';
import type { ClusterMember, Management } from '../context';
import type { VHost } from '../../core/vhost';
import { withRate } from './stats';

/**
 * The RabbitMQ release whose management API Warren follows. Tools such as rabbitmqadmin and
 * provisioning clients read `rabbitmq_version` to pick request shapes, so it names the API
 * level; Warren's own version is `product_version`.
 */
export const API_COMPATIBILITY_VERSION = '3.10.8';

/** RabbitMQ's default vm_memory_high_watermark (0.4 of RAM) and disk_free_limit (50 MB). */
const MEMORY_WATERMARK = 0.4;
export const DISK_FREE_LIMIT = 50_000_000;

export function exchangeTypes(): Array<{ name: string; description: string; enabled: boolean }> {
  const out = [
    { name: 'direct', description: 'AMQP direct exchange, as per the AMQP specification', enabled: true },
    { name: 'fanout', description: 'AMQP fanout exchange, as per the AMQP specification', enabled: true },
    { name: 'headers', description: 'AMQP headers exchange, as per the AMQP specification', enabled: true },
    { name: 'topic', description: 'AMQP topic exchange, as per the AMQP specification', enabled: true },
  ];
  if (isExchangeType('x-delayed-message')) out.push({ name: 'x-delayed-message', description: 'Delayed Message Exchange', enabled: true });
  return out;
}

export interface SystemFacts {
  memUsed: number;
  memLimit: number;
  diskFree: number;
  diskFreeLimit: number;
  fdUsed: number;
  fdTotal: number;
  alarms: string[];
}

/** Memory, disk and descriptors, with the broker's own alarm thresholds when it runs alarms. */
export function systemFacts(m: Management): SystemFacts {
  const config = m.broker.config as { dataDir: string | null; diskFreeLimit?: number };
  const alarms = m.broker.alarms;
  let diskFree = alarms?.diskFree() ?? Infinity;
  if (!Number.isFinite(diskFree)) {
    try {
      const fs = statfsSync(config.dataDir ?? '.');
      diskFree = fs.bavail * fs.bsize;
    } catch {
      diskFree = 0;
    }
  }
  let fdUsed = 0;
  try {
    fdUsed = readdirSync('/proc/self/fd').length;
  } catch {
    fdUsed = 0;
  }
  const memUsed = process.memoryUsage.rss();
  const memLimit = alarms?.memoryLimit ?? Math.floor(totalmem() * MEMORY_WATERMARK);
  const diskFreeLimit = config.diskFreeLimit ?? DISK_FREE_LIMIT;
  const active = alarms !== undefined ? [...alarms.alarms] : [];
  if (alarms === undefined) {
    if (memUsed > memLimit) active.push('memory');
    if (diskFreeLimit > 0 && diskFree < diskFreeLimit) active.push('disk');
  }
  return { memUsed, memLimit, diskFree, diskFreeLimit, fdUsed, fdTotal: 1024, alarms: active };
}

export function nodeView(m: Management): Record<string, unknown> {
  const f = systemFacts(m);
  let sockets = 0;
  for (const c of m.broker.connections) if (c.isOpen) sockets++;
  return {
    name: m.nodeName,
    type: 'disc',
    running: true,
    os_pid: String(process.pid),
    mem_used: f.memUsed,
    mem_limit: f.memLimit,
    mem_alarm: f.alarms.includes('memory'),
    mem_calculation_strategy: 'rss',
    disk_free: f.diskFree,
    disk_free_limit: f.diskFreeLimit,
    disk_free_alarm: f.alarms.includes('disk'),
    fd_used: f.fdUsed,
    fd_total: f.fdTotal,
    sockets_used: sockets,
    sockets_total: f.fdTotal,
    proc_used: 1,
    proc_total: 1,
    processors: cpus().length,
    run_queue: 0,
    uptime: Date.now() - m.startedAt,
    rates_mode: 'basic',
    net_ticktime: 60,
    partitions: [],
    applications: [{ name: 'warren', description: 'Warren AMQP 0-9-1 broker', version: m.broker.version }],
    exchange_types: exchangeTypes(),
    auth_mechanisms: [
      { name: 'PLAIN', description: 'SASL PLAIN authentication mechanism', enabled: true },
      { name: 'AMQPLAIN', description: 'QPid AMQPLAIN mechanism', enabled: true },
    ],
    contexts: contexts(m),
    enabled_plugins: ['rabbitmq_management', 'rabbitmq_prometheus'],
    config_files: [],
    log_files: ['<stdout>'],
    db_dir: m.broker.config.dataDir ?? '',
  };
}

/**
 * /api/nodes: this node, and in a cluster every other live member. Other members' metrics
 * are not reachable from here (etcd holds only their addresses and start time), so they
 * report zeros rather than guesses.
 */
export function nodesView(m: Management): Array<Record<string, unknown>> {
  const cluster = m.broker.cluster;
  if (cluster === undefined || cluster === null) return [nodeView(m)];
  const members = new Map(cluster.nodeList().map((n) => [n.name, n]));
  return m.nodeNames().map((name) => {
    const member = members.get(name);
    if (name === m.nodeName) return member === undefined ? nodeView(m) : { ...nodeView(m), ...memberFacts(member) };
    return remoteNodeView(member!);
  });
}

/** One node of /api/nodes/:name, or undefined when no running node has that name. */
export function nodeViewByName(m: Management, name: string): Record<string, unknown> | undefined {
  return nodesView(m).find((n) => n.name === name);
}

function memberFacts(n: ClusterMember): Record<string, unknown> {
  return { amqp_address: n.amqp, cluster_link_address: n.link };
}

function remoteNodeView(n: ClusterMember): Record<string, unknown> {
  return {
    name: n.name,
    type: 'disc',
    running: true,
    os_pid: '',
    mem_used: 0,
    mem_limit: 0,
    mem_alarm: false,
    mem_calculation_strategy: 'rss',
    disk_free: 0,
    disk_free_limit: 0,
    disk_free_alarm: false,
    fd_used: 0,
    fd_total: 0,
    sockets_used: 0,
    sockets_total: 0,
    proc_used: 0,
    proc_total: 0,
    processors: 0,
    run_queue: 0,
    uptime: Math.max(0, Date.now() - n.started),
    rates_mode: 'basic',
    net_ticktime: 60,
    partitions: [],
    applications: [],
    exchange_types: exchangeTypes(),
    auth_mechanisms: [],
    contexts: [],
    enabled_plugins: [],
    config_files: [],
    log_files: [],
    db_dir: '',
    ...memberFacts(n),
  };
}

function contexts(m: Management): Array<Record<string, unknown>> {
  return m.listeners
    .filter((l) => l.protocol === 'http' || l.protocol === 'https')
    .map((l) => ({ node: m.nodeName, description: 'Warren Management', path: '/', port: String(l.port) }));
}

export interface SampleRange {
  lengthsAge?: number;
  lengthsIncr?: number;
  ratesAge?: number;
  ratesIncr?: number;
}

export function overviewView(m: Management, vhosts: VHost[], range: SampleRange, includeNodeFacts: boolean): Record<string, unknown> {
  const s = m.stats;
  const all = vhosts.length === m.broker.vhosts.size;
  let ready = 0;
  let unacked = 0;
  let queues = 0;
  let exchanges = 0;
  let consumers = 0;
  for (const v of vhosts) {
    queues += v.queues.size;
    exchanges += v.exchanges.size;
    for (const q of v.queues.values()) {
      ready += q.messageCount;
      unacked += q.unackedCount;
      consumers += q.consumerCount;
    }
  }
  const names = new Set(vhosts.map((v) => v.name));
  let connections = 0;
  let channels = 0;
  for (const c of m.broker.connections) {
    if (c.vhost === null || !names.has(c.vhost.name)) continue;
    connections++;
    channels += c.channelCount;
  }
  const t = s.messageTotals();
  const stats: Record<string, unknown> = {};
  const rate = (name: string, value: number, i: number): void => {
    withRate(stats, name, value, s.globalRate(i));
    if (range.ratesAge !== undefined) addSamples(stats[`${name}_details`] as Record<string, unknown>, m, i, range.ratesAge, range.ratesIncr ?? 5);
  };
  if (all) {
    rate('publish', t.publish, G.publish);
    rate('deliver_get', t.deliverGet, G.deliverGet);
    rate('deliver', t.deliverGet - t.get, G.deliverGet);
    rate('get', t.get, G.get);
    rate('ack', t.ack, G.ack);
    rate('redeliver', t.redeliver, G.redeliver);
  }
  const totals: Record<string, unknown> = {};
  const depth = (name: string, value: number, i: number): void => {
    withRate(totals, name, value, s.globalRate(i));
    if (range.lengthsAge !== undefined) addSamples(totals[`${name}_details`] as Record<string, unknown>, m, i, range.lengthsAge, range.lengthsIncr ?? 5);
  };
  depth('messages', ready + unacked, G.messages);
  depth('messages_ready', ready, G.ready);
  depth('messages_unacknowledged', unacked, G.unacked);
  const view: Record<string, unknown> = {
    management_version: API_COMPATIBILITY_VERSION,
    rates_mode: 'basic',
    sample_retention_policies: { global: [600], basic: [600], detailed: [600] },
    exchange_types: exchangeTypes(),
    product_version: m.broker.version,
    product_name: 'Warren',
    rabbitmq_version: API_COMPATIBILITY_VERSION,
    cluster_name: m.broker.config.clusterName,
    erlang_version: `Node.js ${process.version}`,
    erlang_full_version: `Node.js ${process.version} (${process.platform}/${process.arch})`,
    release_series_support_status: 'supported',
    disable_stats: false,
    enable_queue_totals: false,
    message_stats: stats,
    churn_rates: {},
    queue_totals: totals,
    object_totals: { channels, connections, consumers, exchanges, queues },
    statistics_db_event_queue: 0,
    node: m.nodeName,
  };
  if (includeNodeFacts) {
    view.listeners = m.listeners.map((l) => ({ node: m.nodeName, protocol: l.protocol, ip_address: l.ip, port: l.port, socket_opts: {} }));
    view.contexts = contexts(m);
  }
  return view;
}

function addSamples(details: Record<string, unknown>, m: Management, i: number, age: number, incr: number): void {
  const samples = m.stats.history.samples(i, age, Math.max(1, incr));
  details.samples = samples;
  if (samples.length >= 2) {
    const first = samples[samples.length - 1]!;
    const last = samples[0]!;
    const dt = (last.timestamp - first.timestamp) / 1000;
    details.avg_rate = dt > 0 ? Math.round(((last.sample - first.sample) / dt) * 10) / 10 : 0;
  } else {
    details.avg_rate = 0;
  }
  details.avg = samples.length === 0 ? 0 : samples.reduce((a, x) => a + x.sample, 0) / samples.length;
}
