// Queues: the paginated list with a declare form, and one queue's page: depth chart,
// consumers, bindings, get messages, browse without consuming, purge and delete.
import { del, get, post, put, seg } from '../api.js';
import { flash, fmtBytes, fmtNum, fmtRate, formValues, h, kv, parseJsonField, replace } from '../dom.js';
import { C, lineChart, Series } from '../chart.js';
import { listView, simpleTable } from '../table.js';
import { bindingColumns, displayName, exchangeHref, queueHref, unbindButton } from './exchanges.js';

/** The queue's node, with a +N tag for its mirrors (amber when some are out of sync). */
function nodeCell(q) {
  const mirrors = q.slave_nodes || [];
  if (mirrors.length === 0) return q.node;
  const synced = q.synchronised_slave_nodes || [];
  const title = `mirrors: ${mirrors.map((n) => (synced.includes(n) ? n : `${n} (unsynchronised)`)).join(', ')}`;
  return [q.node, ' ', h(synced.length === mirrors.length ? 'span.tag.ok' : 'span.tag.warn', { title }, `+${mirrors.length}`)];
}

export async function renderList(main, _params, ctx) {
  // Every vhost's cluster_state names all running nodes: a node column only helps in a cluster.
  const vhosts = await get('/api/vhosts?columns=name,cluster_state');
  const clustered = vhosts.some((v) => Object.keys(v.cluster_state || {}).length > 1);
  const view = listView({
    path: () => (ctx.vhost() === '' ? '/api/queues' : `/api/queues/${seg(ctx.vhost())}`),
    sort: 'name',
    fetchColumns: 'name,vhost,node,slave_nodes,synchronised_slave_nodes,durable,auto_delete,exclusive,arguments,policy,state,consumers,messages_ready,messages_unacknowledged,messages,message_stats',
    empty: 'No queues',
    columns: [
      { key: 'name', label: 'Name', sort: 'name', render: (q) => h('a', { href: queueHref(q.vhost, q.name) }, q.name) },
      { key: 'vhost', label: 'Virtual host', sort: 'vhost' },
      ...(clustered ? [{ key: 'node', label: 'Node', sort: 'node', render: nodeCell }] : []),
      {
        key: 'features',
        label: 'Features',
        render: (q) => [
          q.durable ? h('span.tag', 'D') : null,
          q.auto_delete ? h('span.tag', 'AD') : null,
          q.exclusive ? h('span.tag', 'excl') : null,
          ...Object.keys(q.arguments || {}).map((a) => h('span.tag', { title: `${a}: ${JSON.stringify(q.arguments[a])}` }, a.replace(/^x-/, ''))),
          q.policy ? h('span.tag.ok', { title: 'policy' }, q.policy) : null,
        ],
      },
      { key: 'consumers', label: 'Consumers', sort: 'consumers', num: true },
      { key: 'messages_ready', label: 'Ready', sort: 'messages_ready', num: true, render: (q) => fmtNum(q.messages_ready) },
      { key: 'messages_unacknowledged', label: 'Unacked', sort: 'messages_unacknowledged', num: true, render: (q) => fmtNum(q.messages_unacknowledged) },
      { key: 'messages', label: 'Total', sort: 'messages', num: true, render: (q) => fmtNum(q.messages) },
      { key: 'in', label: 'Incoming', sort: 'message_stats.publish_details.rate', num: true, render: (q) => fmtRate(q.message_stats?.publish_details?.rate ?? 0) },
      { key: 'out', label: 'Deliver / get', sort: 'message_stats.deliver_get_details.rate', num: true, render: (q) => fmtRate(q.message_stats?.deliver_get_details?.rate ?? 0) },
      { key: 'ack', label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, render: (q) => fmtRate(q.message_stats?.ack_details?.rate ?? 0) },
    ],
  });
  const form = h(
    'form.inline#add-queue',
    h('label', 'Virtual host', h('select', { name: 'vhost' }, vhosts.map((v) => h('option', { value: v.name, selected: v.name === (ctx.vhost() || '/') ? true : undefined }, v.name)))),
    h('label', 'Name', h('input', { name: 'name', required: true })),
    h('label.check', h('input', { type: 'checkbox', name: 'durable', checked: true }), 'Durable'),
    h('label.check', h('input', { type: 'checkbox', name: 'auto_delete' }), 'Auto-delete'),
    h('label', 'Arguments (JSON)', h('input', { name: 'arguments', placeholder: '{"x-max-length": 1000, "x-message-ttl": 60000}', size: 36 })),
    h('button.primary', { type: 'submit' }, 'Add queue'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await put(`/api/queues/${seg(f.vhost)}/${seg(f.name)}`, { durable: f.durable, auto_delete: f.auto_delete, arguments: parseJsonField(f.arguments, 'Arguments') });
      flash(`Queue ${f.name} declared`);
      form.name.value = '';
      view.refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  main.append(h('div.page-head', h('h1', 'Queues')), h('div.card', view.el), h('div.card', h('h2', 'Add a queue'), form));
  view.refresh();
  const timer = setInterval(() => view.refresh(), 5000);
  return () => clearInterval(timer);
}

export async function renderOne(main, [vhost, name], ctx) {
  const path = `/api/queues/${seg(vhost)}/${seg(name)}`;
  const ready = new Series();
  const unacked = new Series();
  const publishRate = new Series();
  const deliverRate = new Series();
  const details = h('div.card');
  const charts = h('div.card');
  const consumers = h('div.card');
  const bindings = h('div.card');
  const messages = h('div.card');
  main.append(
    h('div.page-head', h('h1', `Queue ${name}`), h('span.sub', `in virtual host ${vhost}`)),
    h('div.grid.two', details, charts),
    consumers,
    bindings,
    messages,
  );
  buildMessages(messages, vhost, name, path, () => refresh());

  async function refresh() {
    const q = await get(path);
    const now = Date.now();
    ready.push(now, q.messages_ready);
    unacked.push(now, q.messages_unacknowledged);
    publishRate.push(now, q.message_stats.publish_details.rate);
    deliverRate.push(now, q.message_stats.deliver_get_details.rate);
    replace(details, 
      h('h2', 'Details'),
      kv([
        ['State', h('span.tag.ok', q.state)],
        ['Node', h('span#queue-node', q.node)],
        ...((q.slave_nodes || []).length === 0
          ? []
          : [
              [
                'Mirrors',
                h(
                  'span#queue-mirrors',
                  q.slave_nodes.map((n) => h(q.synchronised_slave_nodes.includes(n) ? 'span.tag.ok' : 'span.tag.warn', { title: q.synchronised_slave_nodes.includes(n) ? 'in sync' : 'not in sync' }, n)),
                  q.epoch === null ? null : h('span.muted', ` epoch ${q.epoch}`),
                ),
              ],
            ]),
        ['Features', [q.durable ? h('span.tag', 'durable') : h('span.tag', 'transient'), q.auto_delete ? h('span.tag', 'auto-delete') : null, q.exclusive ? h('span.tag', 'exclusive') : null]],
        ['Arguments', h('span.mono', JSON.stringify(q.arguments))],
        ['Policy', q.policy || '–'],
        ['Operator policy', q.operator_policy || '–'],
        ['Messages', h('span#queue-messages', `${fmtNum(q.messages)} (${fmtNum(q.messages_ready)} ready, ${fmtNum(q.messages_unacknowledged)} unacked)`)],
        ['Bytes ready', fmtBytes(q.message_bytes_ready)],
        ['Consumers', fmtNum(q.consumers)],
        ['Published', `${fmtNum(q.message_stats.publish)} (${fmtRate(q.message_stats.publish_details.rate)})`],
        ['Delivered', `${fmtNum(q.message_stats.deliver_get)} (${fmtRate(q.message_stats.deliver_get_details.rate)})`],
        ['Acknowledged', `${fmtNum(q.message_stats.ack)} (${fmtRate(q.message_stats.ack_details.rate)})`],
      ]),
      h(
        'div.actions',
        h(
          'button#purge',
          {
            type: 'button',
            onclick: async () => {
              if (!confirm(`Purge all ready messages from ${name}?`)) return;
              await del(`${path}/contents`);
              flash(`Queue ${name} purged`);
              refresh();
            },
          },
          'Purge messages',
        ),
        h(
          'button.danger',
          {
            type: 'button',
            onclick: async () => {
              if (!confirm(`Delete queue ${name}?`)) return;
              await del(path);
              flash(`Queue ${name} deleted`);
              ctx.go('#/queues');
            },
          },
          'Delete queue',
        ),
      ),
    );
    const span = 5 * 60 * 1000;
    replace(charts, 
      h('h2', 'Depth'),
      lineChart(
        [
          { name: 'Ready', color: C.c1, points: ready.points },
          { name: 'Unacked', color: C.c2, points: unacked.points },
        ],
        { spanMs: span, label: 'queue depth' },
      ),
      h('h3', 'Rates'),
      lineChart(
        [
          { name: 'Publish', color: C.c3, points: publishRate.points },
          { name: 'Deliver / get', color: C.c4, points: deliverRate.points },
        ],
        { spanMs: span, unit: '/s', label: 'queue rates' },
      ),
    );
    replace(consumers, 
      h('h2', 'Consumers'),
      simpleTable(
        [
          { key: 'consumer_tag', label: 'Tag', render: (c) => h('span.mono', c.consumer_tag) },
          { key: 'channel', label: 'Channel', render: (c) => h('span.mono', c.channel_details.name) },
          { key: 'user', label: 'User', render: (c) => c.channel_details.user },
          { key: 'ack_required', label: 'Ack required', render: (c) => (c.ack_required ? 'yes' : 'no') },
          { key: 'exclusive', label: 'Exclusive', render: (c) => (c.exclusive ? 'yes' : 'no') },
          { key: 'prefetch_count', label: 'Prefetch', num: true },
        ],
        q.consumer_details,
        'No consumers',
      ),
    );
    const rows = await get(`${path}/bindings`);
    replace(bindings, 
      h('h2', 'Bindings'),
      simpleTable([...bindingColumns(vhost, 'destination'), { key: 'x', label: '', render: (b) => unbindButton(vhost, b, refresh) }], rows, 'No bindings'),
      bindFromForm(vhost, name, refresh),
    );
  }

  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

function bindFromForm(vhost, queue, after) {
  const form = h(
    'form.inline',
    h('label', 'From exchange', h('input', { name: 'source', required: true })),
    h('label', 'Routing key', h('input', { name: 'routing_key' })),
    h('label', 'Arguments (JSON)', h('input', { name: 'arguments', placeholder: '{}' })),
    h('button', { type: 'submit' }, 'Bind'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await post(`/api/bindings/${seg(vhost)}/e/${seg(f.source)}/q/${seg(queue)}`, { routing_key: f.routing_key, arguments: parseJsonField(f.arguments, 'Arguments') });
      flash('Binding added');
      after();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  return h('div', h('h3', 'Add a binding to this queue'), form);
}

function messageView(m, index, vhost) {
  const props = Object.entries(m.properties || {}).map(([k, v]) => [k, h('span.mono', typeof v === 'object' ? JSON.stringify(v) : String(v))]);
  return h(
    'div.message',
    h(
      'div',
      h('b', `#${index}`),
      ' ',
      m.redelivered ? h('span.tag.warn', 'redelivered') : null,
      h('span.muted', ` exchange `),
      h('a', { href: exchangeHref(vhost, m.exchange) }, displayName(m.exchange)),
      h('span.muted', ' · routing key '),
      h('span.mono', m.routing_key),
      h('span.muted', ` · ${fmtBytes(m.payload_bytes)}${m.payload_encoding === 'base64' ? ' · base64' : ''}`),
    ),
    props.length ? kv(props) : null,
    h('pre.payload', m.payload),
  );
}

function buildMessages(card, vhost, name, path, after) {
  const out = h('div.messages#messages-out');
  const getForm = h(
    'form.inline#get-form',
    h('label', 'Ack mode', h('select', { name: 'ackmode' }, [
      ['ack_requeue_true', 'Nack, requeue (peek)'],
      ['ack_requeue_false', 'Ack, remove'],
      ['reject_requeue_true', 'Reject, requeue'],
      ['reject_requeue_false', 'Reject, remove (dead-letter)'],
    ].map(([v, l]) => h('option', { value: v }, l)))),
    h('label', 'Encoding', h('select', { name: 'encoding' }, h('option', { value: 'auto' }, 'Auto: string or base64'), h('option', { value: 'base64' }, 'base64'))),
    h('label', 'Messages', h('input', { name: 'count', type: 'number', min: 1, value: 1, style: 'width:80px' })),
    h('label', 'Truncate at', h('input', { name: 'truncate', type: 'number', min: 0, value: 50000, style: 'width:100px' })),
    h('button.primary', { type: 'submit' }, 'Get messages'),
  );
  getForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(getForm);
    try {
      const rows = await post(`${path}/get`, { count: Number(f.count), ackmode: f.ackmode, encoding: f.encoding, truncate: Number(f.truncate) });
      replace(out, rows.length === 0 ? h('p.muted', 'Queue is empty.') : rows.map((m, i) => messageView(m, i + 1, vhost)));
      after();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  let offset = 0;
  const pageSize = 20;
  const browseInfo = h('span.muted');
  const browse = async () => {
    const r = await get(`${path}/messages?offset=${offset}&count=${pageSize}&truncate=2000`);
    browseInfo.textContent = r.total === 0 ? 'No ready messages.' : `Messages ${r.offset + 1}–${r.offset + r.count} of ${r.total} ready (not consumed, order unchanged).`;
    replace(out, r.items.map((m) => messageView(m, m.position + 1, vhost)));
  };
  const browseBar = h(
    'div.toolbar',
    h('button#browse', { type: 'button', onclick: () => { offset = 0; browse().catch((e) => flash(e.message, 'error')); } }, 'Browse ready messages'),
    h('button', { type: 'button', onclick: () => { offset = Math.max(0, offset - pageSize); browse().catch(() => {}); } }, '‹'),
    h('button', { type: 'button', onclick: () => { offset += pageSize; browse().catch(() => {}); } }, '›'),
    browseInfo,
  );
  card.append(h('h2', 'Messages'), h('h3', 'Get messages'), getForm, h('h3', 'Browse'), browseBar, out);
}
