// Exchanges: the list with a declare form, and one exchange's page with its bindings, a
// form to add one, and a publish form.
import { del, get, post, put, seg } from '../api.js';
import { flash, fmtNum, fmtRate, formValues, h, kv, parseJsonField, replace } from '../dom.js';
import { listView, simpleTable } from '../table.js';

export const displayName = (name) => (name === '' ? '(AMQP default)' : name);
const urlName = (name) => (name === '' ? 'amq.default' : name);
export const exchangeHref = (vhost, name) => `#/exchanges/${seg(vhost)}/${seg(urlName(name))}`;
export const queueHref = (vhost, name) => `#/queues/${seg(vhost)}/${seg(name)}`;

function vhostOptions(vhosts, selected) {
  return vhosts.map((v) => h('option', { value: v.name, selected: v.name === selected ? true : undefined }, v.name));
}

export async function renderList(main, _params, ctx) {
  const view = listView({
    path: () => (ctx.vhost() === '' ? '/api/exchanges' : `/api/exchanges/${seg(ctx.vhost())}`),
    sort: 'name',
    fetchColumns: 'name,vhost,type,durable,auto_delete,internal,arguments,message_stats',
    columns: [
      { key: 'name', label: 'Name', sort: 'name', render: (x) => h('a', { href: exchangeHref(x.vhost, x.name) }, displayName(x.name)) },
      { key: 'vhost', label: 'Virtual host', sort: 'vhost' },
      { key: 'type', label: 'Type', sort: 'type' },
      {
        key: 'features',
        label: 'Features',
        render: (x) => [x.durable ? h('span.tag', 'durable') : null, x.auto_delete ? h('span.tag', 'auto-delete') : null, x.internal ? h('span.tag', 'internal') : null, Object.keys(x.arguments || {}).length ? h('span.tag', 'args') : null],
      },
      { key: 'in', label: 'Rate in', sort: 'message_stats.publish_in_details.rate', num: true, render: (x) => fmtRate(x.message_stats?.publish_in_details?.rate ?? 0) },
      { key: 'out', label: 'Rate out', sort: 'message_stats.publish_out_details.rate', num: true, render: (x) => fmtRate(x.message_stats?.publish_out_details?.rate ?? 0) },
    ],
  });
  const vhosts = await get('/api/vhosts?columns=name');
  const form = h(
    'form.inline#add-exchange',
    h('label', 'Virtual host', h('select', { name: 'vhost' }, vhostOptions(vhosts, ctx.vhost() || '/'))),
    h('label', 'Name', h('input', { name: 'name', required: true })),
    h('label', 'Type', h('select', { name: 'type' }, ['direct', 'fanout', 'topic', 'headers', 'x-delayed-message'].map((t) => h('option', { value: t }, t)))),
    h('label.check', h('input', { type: 'checkbox', name: 'durable', checked: true }), 'Durable'),
    h('label.check', h('input', { type: 'checkbox', name: 'auto_delete' }), 'Auto-delete'),
    h('label.check', h('input', { type: 'checkbox', name: 'internal' }), 'Internal'),
    h('label', 'Arguments (JSON)', h('input', { name: 'arguments', placeholder: '{"alternate-exchange": "ae"}', size: 28 })),
    h('button.primary', { type: 'submit' }, 'Add exchange'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await put(`/api/exchanges/${seg(f.vhost)}/${seg(f.name)}`, { type: f.type, durable: f.durable, auto_delete: f.auto_delete, internal: f.internal, arguments: parseJsonField(f.arguments, 'Arguments') });
      flash(`Exchange ${f.name} declared`);
      form.name.value = '';
      view.refresh();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  main.append(h('div.page-head', h('h1', 'Exchanges')), h('div.card', view.el), h('div.card', h('h2', 'Add an exchange'), form));
  view.refresh();
  const timer = setInterval(() => view.refresh(), 5000);
  return () => clearInterval(timer);
}

export function bindingColumns(vhost, side) {
  return [
    side === 'source'
      ? { key: 'destination', label: 'To', render: (b) => h('a', { href: b.destination_type === 'queue' ? queueHref(vhost, b.destination) : exchangeHref(vhost, b.destination) }, `${b.destination_type === 'queue' ? 'queue' : 'exchange'} ${b.destination}`) }
      : { key: 'source', label: 'From', render: (b) => h('a', { href: exchangeHref(vhost, b.source) }, displayName(b.source)) },
    { key: 'routing_key', label: 'Routing key', render: (b) => h('span.mono', b.routing_key) },
    { key: 'arguments', label: 'Arguments', render: (b) => (Object.keys(b.arguments).length ? h('span.mono', JSON.stringify(b.arguments)) : '') },
  ];
}

export function unbindButton(vhost, b, after) {
  if (b.source === '') return null;
  const d = b.destination_type === 'queue' ? 'q' : 'e';
  return h(
    'button.danger',
    {
      type: 'button',
      onclick: async () => {
        await del(`/api/bindings/${seg(vhost)}/e/${seg(b.source)}/${d}/${seg(b.destination)}/${seg(b.properties_key)}`);
        flash('Binding removed');
        after();
      },
    },
    'Unbind',
  );
}

export async function renderOne(main, [vhost, name], ctx) {
  const path = `/api/exchanges/${seg(vhost)}/${seg(name)}`;
  const head = h('div.page-head', h('h1', `Exchange ${displayName(name === 'amq.default' ? '' : name)}`), h('span.sub', `in virtual host ${vhost}`));
  const details = h('div.card');
  const outgoing = h('div.card');
  const incoming = h('div.card');
  main.append(head, h('div.grid.two', details, publishCard(vhost, name)), outgoing, incoming);

  async function refresh() {
    const x = await get(path);
    const [source, destination] = await Promise.all([get(`${path}/bindings/source`), get(`${path}/bindings/destination`)]);
    replace(details, 
      h('h2', 'Details'),
      kv([
        ['Type', x.type],
        ['Features', [x.durable ? h('span.tag', 'durable') : h('span.tag', 'transient'), x.auto_delete ? h('span.tag', 'auto-delete') : null, x.internal ? h('span.tag', 'internal') : null]],
        ['Arguments', h('span.mono', JSON.stringify(x.arguments))],
        ['Published in', `${fmtNum(x.message_stats.publish_in)} (${fmtRate(x.message_stats.publish_in_details.rate)})`],
        ['Routed out', `${fmtNum(x.message_stats.publish_out)} (${fmtRate(x.message_stats.publish_out_details.rate)})`],
      ]),
      x.name === '' || x.name.startsWith('amq.')
        ? null
        : h(
            'div.actions',
            h(
              'button.danger',
              {
                type: 'button',
                onclick: async () => {
                  if (!confirm(`Delete exchange ${x.name}?`)) return;
                  await del(path);
                  flash(`Exchange ${x.name} deleted`);
                  ctx.go('#/exchanges');
                },
              },
              'Delete exchange',
            ),
          ),
    );
    replace(outgoing, 
      h('h2', 'Bindings from this exchange'),
      simpleTable([...bindingColumns(vhost, 'source'), { key: 'x', label: '', render: (b) => unbindButton(vhost, b, refresh) }], source, 'No bindings'),
      name === 'amq.default' ? null : bindForm(vhost, name, refresh),
    );
    replace(incoming, h('h2', 'Bindings into this exchange'), simpleTable(bindingColumns(vhost, 'destination'), destination, 'No exchange-to-exchange bindings'));
  }

  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 5000);
  return () => clearInterval(timer);
}

function bindForm(vhost, source, after) {
  const form = h(
    'form.inline',
    h('label', 'Destination', h('select', { name: 'type' }, h('option', { value: 'q' }, 'queue'), h('option', { value: 'e' }, 'exchange'))),
    h('label', 'Name', h('input', { name: 'destination', required: true })),
    h('label', 'Routing key', h('input', { name: 'routing_key' })),
    h('label', 'Arguments (JSON)', h('input', { name: 'arguments', placeholder: '{}' })),
    h('button', { type: 'submit' }, 'Bind'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      await post(`/api/bindings/${seg(vhost)}/e/${seg(source)}/${f.type}/${seg(f.destination)}`, { routing_key: f.routing_key, arguments: parseJsonField(f.arguments, 'Arguments') });
      flash('Binding added');
      after();
    } catch (err) {
      flash(err.message, 'error');
    }
  });
  return h('div', h('h3', 'Add a binding'), form);
}

function publishCard(vhost, name) {
  const result = h('p.muted#publish-result');
  const form = h(
    'form.stack#publish-form',
    h('label', 'Routing key', h('input', { name: 'routing_key' })),
    h('label', 'Headers (JSON)', h('input', { name: 'headers', placeholder: '{"x-trace": "1"}' })),
    h('label', 'Properties (JSON)', h('input', { name: 'properties', placeholder: '{"content_type": "text/plain", "delivery_mode": 2}' })),
    h('label', 'Payload', h('textarea', { name: 'payload' })),
    h('div', h('button.primary', { type: 'submit' }, 'Publish message')),
    result,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = formValues(form);
    try {
      const properties = parseJsonField(f.properties, 'Properties');
      const headers = parseJsonField(f.headers, 'Headers');
      if (Object.keys(headers).length) properties.headers = headers;
      const r = await post(`/api/exchanges/${seg(vhost)}/${seg(name)}/publish`, { routing_key: f.routing_key, payload: f.payload, payload_encoding: 'string', properties });
      result.textContent = r.routed ? 'Message published and routed.' : 'Message published, but no queue was bound for it.';
      result.className = r.routed ? 'muted' : 'error';
    } catch (err) {
      result.textContent = err.message;
      result.className = 'error';
    }
  });
  return h('div.card', h('h2', 'Publish a message'), form);
}
