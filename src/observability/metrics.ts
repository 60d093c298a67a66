/**
 * Prometheus text exposition (format 0.0.4) of the broker's state. Names follow RabbitMQ's
 * rabbitmq_prometheus plugin with the `warren_` prefix in place of `rabbitmq_`
 * (rabbitmq_queue_messages_ready → warren_queue_messages_ready), so dashboards port by a
 * prefix rename. Everything is read from counters the broker keeps anyway at scrape time.
 */
import type { MessageTotals, StatsSource } from './broker-stats';

export interface MetricsInput {
  readonly source: StatsSource;
  readonly totals: MessageTotals;
  readonly node: string;
  readonly version: string;
  readonly memoryLimit: number;
  readonly diskFree: number;
  readonly diskFreeLimit: number;
  readonly alarms: readonly string[];
  readonly openFds: number;
  readonly startedAt: number;
}

type Labels = Record<string, string>;

class Exposition {
  private readonly lines: string[] = [];

  family(name: string, type: 'gauge' | 'counter', help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels?: Labels): this {
    this.lines.push(`${name}${labelText(labels)} ${formatValue(value)}`);
    return this;
  }

  single(name: string, type: 'gauge' | 'counter', help: string, value: number, labels?: Labels): this {
    return this.family(name, type, help).sample(name, value, labels);
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

function labelText(labels: Labels | undefined): string {
  if (labels === undefined) return '';
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function renderMetrics(input: MetricsInput): string {
  const out = new Exposition();
  const { source, totals } = input;
  let connections = 0;
  let channels = 0;
  for (const c of source.connections) {
    if (!c.isOpen) continue;
    connections++;
    channels += c.channelCount;
  }
  let queues = 0;
  let exchanges = 0;
  let consumers = 0;
  for (const v of source.vhosts.values()) {
    queues += v.queues.size;
    exchanges += v.exchanges.size;
    for (const q of v.queues.values()) consumers += q.consumerCount;
  }
  out.single('warren_build_info', 'gauge', 'Warren version', 1, { version: input.version, product: 'Warren' });
  out.single('warren_identity_info', 'gauge', 'Node name', 1, { warren_node: input.node });
  out.single('warren_connections', 'gauge', 'Open AMQP connections', connections);
  out.single('warren_channels', 'gauge', 'Open AMQP channels', channels);
  out.single('warren_queues', 'gauge', 'Queues', queues);
  out.single('warren_exchanges', 'gauge', 'Exchanges', exchanges);
  out.single('warren_consumers', 'gauge', 'Consumers', consumers);
  out.single('warren_vhosts', 'gauge', 'Virtual hosts', source.vhosts.size);

  out.single('warren_global_messages_received_total', 'counter', 'Messages published to the broker', totals.publish);
  out.single('warren_global_messages_delivered_total', 'counter', 'Messages delivered to consumers or fetched with basic.get', totals.deliverGet);
  out.single('warren_global_messages_acknowledged_total', 'counter', 'Messages acknowledged by consumers', totals.ack);
  out.single('warren_global_messages_redelivered_total', 'counter', 'Messages redelivered', totals.redeliver);

  const perQueue: Array<[string, 'gauge' | 'counter', string, (q: QueueLike) => number]> = [
    ['warren_queue_messages_ready', 'gauge', 'Messages ready to be delivered', (q) => q.messageCount],
    ['warren_queue_messages_unacked', 'gauge', 'Messages delivered and not yet acknowledged', (q) => q.unackedCount],
    ['warren_queue_messages', 'gauge', 'Messages ready and unacknowledged', (q) => q.messageCount + q.unackedCount],
    ['warren_queue_messages_ready_bytes', 'gauge', 'Bytes of message bodies ready to be delivered', (q) => q.messageBytes],
    ['warren_queue_consumers', 'gauge', 'Consumers on the queue', (q) => q.consumerCount],
    ['warren_queue_messages_published_total', 'counter', 'Messages enqueued on the queue', (q) => q.stats.published],
    ['warren_queue_messages_delivered_total', 'counter', 'Messages delivered from the queue', (q) => q.stats.delivered],
    ['warren_queue_messages_acked_total', 'counter', 'Messages acknowledged on the queue', (q) => q.stats.acked],
    ['warren_queue_messages_redelivered_total', 'counter', 'Messages redelivered from the queue', (q) => q.stats.redelivered],
  ];
  for (const [name, type, help, read] of perQueue) {
    out.family(name, type, help);
    for (const v of source.vhosts.values()) {
      for (const q of v.queues.values()) out.sample(name, read(q), { vhost: v.name, queue: q.name });
    }
  }
  out.family('warren_exchange_messages_published_in_total', 'counter', 'Messages published into the exchange');
  for (const v of source.vhosts.values()) {
    for (const x of v.exchanges.values()) out.sample('warren_exchange_messages_published_in_total', x.stats.publishIn, { vhost: v.name, exchange: x.name });
  }

  const mem = process.memoryUsage();
  out.single('warren_process_resident_memory_bytes', 'gauge', 'Resident set size of the process', mem.rss);
  out.single('warren_process_heap_used_bytes', 'gauge', 'JavaScript heap in use', mem.heapUsed);
  out.single('warren_resident_memory_limit_bytes', 'gauge', 'Memory high watermark', input.memoryLimit);
  out.single('warren_process_open_fds', 'gauge', 'Open file descriptors', input.openFds);
  out.single('warren_disk_space_available_bytes', 'gauge', 'Free disk space where the data directory lives', input.diskFree);
  out.single('warren_disk_space_available_limit_bytes', 'gauge', 'Free disk space low watermark', input.diskFreeLimit);
  out.single('warren_alarms_memory_used_watermark', 'gauge', '1 when the memory alarm is in effect', input.alarms.includes('memory') ? 1 : 0);
  out.single('warren_alarms_free_disk_space_watermark', 'gauge', '1 when the free disk space alarm is in effect', input.alarms.includes('disk') ? 1 : 0);
  out.single('warren_process_start_time_seconds', 'gauge', 'Start time of the broker since the epoch, in seconds', Math.floor(input.startedAt / 1000));
  return out.toString();
}

interface QueueLike {
  readonly messageCount: number;
  readonly unackedCount: number;
  readonly messageBytes: number;
  readonly consumerCount: number;
  readonly stats: { published: number; delivered: number; acked: number; redelivered: number };
}
