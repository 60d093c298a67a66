// Overview: totals, live charts of message rates and queue depths (from the API's own
// ten-minute history), and the node's memory, disk and listeners.
import { get } from '../api.js';
import { fmtBytes, fmtDuration, fmtNum, h, kv, replace } from '../dom.js';
import { C, levelsFromSamples, lineChart, ratesFromSamples } from '../chart.js';
import { simpleTable } from '../table.js';

const HISTORY = 'lengths_age=600&lengths_incr=2&msg_rates_age=600&msg_rates_incr=2';

export async function render(main, _params, ctx) {
  const totals = h('div.stats');
  const rates = h('div.card', h('h2', 'Message rates'), h('div.chart-slot'));
  const depths = h('div.card', h('h2', 'Queued messages'), h('div.chart-slot'));
  const node = h('div.card', h('h2', 'Node'));
  const listeners = h('div.card', h('h2', 'Listeners'));
  const members = h('div.card#cluster-nodes', { hidden: true }, h('h2', 'Cluster nodes'));
  main.append(
    h('div.page-head', h('h1', 'Overview'), h('span.sub#overview-sub')),
    totals,
    h('div.grid.two', rates, depths),
    h('div.grid.two', node, listeners),
    members,
  );
  const isMonitor = ctx.user().tags.some((t) => t === 'monitoring' || t === 'administrator');

  async function refresh() {
    const o = await get(`/api/overview?${HISTORY}`);
    document.getElementById('overview-sub').textContent = `${o.product_name} ${o.product_version} · RabbitMQ API ${o.rabbitmq_version} · ${o.cluster_name}`;
    const t = o.object_totals;
    const q = o.queue_totals;
    const stat = (label, value, id) => h('div.stat', { 'data-stat': id }, h('div.value', fmtNum(value)), h('div.label', label));
    replace(totals, 
      stat('Connections', t.connections, 'connections'),
      stat('Channels', t.channels, 'channels'),
      stat('Exchanges', t.exchanges, 'exchanges'),
      stat('Queues', t.queues, 'queues'),
      stat('Consumers', t.consumers, 'consumers'),
      stat('Ready', q.messages_ready, 'ready'),
      stat('Unacked', q.messages_unacknowledged, 'unacked'),
    );
    const ms = o.message_stats || {};
    const rateSeries = [
      ['Publish', C.c1, ms.publish_details],
      ['Deliver / get', C.c2, ms.deliver_get_details],
      ['Ack', C.c3, ms.ack_details],
      ['Redeliver', C.c4, ms.redeliver_details],
    ].filter(([, , d]) => d !== undefined);
    replace(rates.querySelector('.chart-slot'), 
      rateSeries.length === 0
        ? h('p.muted', 'Rates are shown for all virtual hosts to users who can see them all.')
        : lineChart(rateSeries.map(([name, color, d]) => ({ name, color, points: ratesFromSamples(d.samples), current: d.rate })), { unit: '/s', label: 'message rates' }),
    );
    replace(depths.querySelector('.chart-slot'), 
      lineChart(
        [
          { name: 'Ready', color: C.c1, points: levelsFromSamples(q.messages_ready_details.samples) },
          { name: 'Unacked', color: C.c2, points: levelsFromSamples(q.messages_unacknowledged_details.samples) },
          { name: 'Total', color: C.c3, points: levelsFromSamples(q.messages_details.samples) },
        ],
        { label: 'queued messages' },
      ),
    );
    if (o.listeners) {
      replace(listeners, 
        h('h2', 'Listeners'),
        simpleTable(
          [
            { key: 'protocol', label: 'Protocol' },
            { key: 'ip_address', label: 'Address' },
            { key: 'port', label: 'Port', num: true },
          ],
          o.listeners,
        ),
      );
    } else listeners.hidden = true;
    if (isMonitor) {
      const nodes = await get('/api/nodes');
      // In a cluster the list holds every member; the Node card is about the one serving us.
      const n = nodes.find((x) => x.name === o.node) || nodes[0];
      // Only cluster members carry an AMQP address: a stand-alone broker needs no member list.
      members.hidden = !nodes.some((x) => x.amqp_address !== undefined);
      if (!members.hidden) {
        replace(members,
          h('h2', 'Cluster nodes'),
          simpleTable(
            [
              { key: 'name', label: 'Name', render: (x) => (x.name === o.node ? [x.name, ' ', h('span.tag', 'this node')] : x.name) },
              { key: 'amqp_address', label: 'AMQP address' },
              { key: 'uptime', label: 'Uptime', render: (x) => fmtDuration(x.uptime) },
            ],
            nodes,
          ),
        );
      }
      const pct = (a, b) => (b > 0 ? ` (${Math.round((a / b) * 100)}%)` : '');
      replace(node, 
        h('h2', 'Node'),
        kv([
          ['Name', n.name],
          ['Uptime', fmtDuration(n.uptime)],
          ['Memory', [fmtBytes(n.mem_used), ` of ${fmtBytes(n.mem_limit)}${pct(n.mem_used, n.mem_limit)} `, n.mem_alarm ? h('span.tag.warn', 'alarm') : h('span.tag.ok', 'ok')]],
          ['Disk free', [fmtBytes(n.disk_free), ` (limit ${fmtBytes(n.disk_free_limit)}) `, n.disk_free_alarm ? h('span.tag.warn', 'alarm') : h('span.tag.ok', 'ok')]],
          ['File descriptors', `${n.fd_used} / ${n.fd_total}`],
          ['Processors', n.processors],
          ['Exchange types', n.exchange_types.map((x) => x.name).join(', ')],
        ]),
      );
    } else node.hidden = true;
  }

  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}
