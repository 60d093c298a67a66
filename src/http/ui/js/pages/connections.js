// Connections and channels: paginated lists; a connection can be closed from here.
import { del, seg } from '../api.js';
import { flash, fmtBytes, fmtNum, fmtRate, h } from '../dom.js';
import { listView } from '../table.js';

function vhostPath(base, ctx) {
  const v = ctx.vhost();
  return v === '' ? `/api/${base}` : `/api/vhosts/${seg(v)}/${base}`;
}

export function renderConnections(main, _params, ctx) {
  let view;
  view = listView({
    path: () => vhostPath('connections', ctx),
    sort: 'name',
    empty: 'No client connections',
    columns: [
      { key: 'name', label: 'Name', sort: 'name', render: (c) => h('span', h('span.mono', c.name), c.user_provided_name ? h('div.muted', c.user_provided_name) : null) },
      { key: 'vhost', label: 'Virtual host', sort: 'vhost' },
      { key: 'user', label: 'User', sort: 'user' },
      { key: 'state', label: 'State', sort: 'state', render: (c) => h(`span.tag${c.state === 'running' ? '.ok' : ''}`, c.state) },
      { key: 'channels', label: 'Channels', sort: 'channels', num: true },
      { key: 'recv', label: 'From client', sort: 'recv_oct_details.rate', num: true, render: (c) => `${fmtBytes(c.recv_oct_details.rate)}/s` },
      { key: 'send', label: 'To client', sort: 'send_oct_details.rate', num: true, render: (c) => `${fmtBytes(c.send_oct_details.rate)}/s` },
      { key: 'client', label: 'Client', render: (c) => [c.client_properties.product, c.client_properties.version].filter(Boolean).join(' ') },
    ],
    actions: (c) =>
      h(
        'button.danger',
        {
          type: 'button',
          onclick: async () => {
            if (!confirm(`Close connection ${c.name}?`)) return;
            await del(`/api/connections/${seg(c.name)}`);
            flash('Connection closed');
            setTimeout(() => view.refresh(), 300);
          },
        },
        'Close',
      ),
  });
  main.append(h('div.page-head', h('h1', 'Connections')), h('div.card', view.el));
  view.refresh();
  const timer = setInterval(() => view.refresh(), 5000);
  return () => clearInterval(timer);
}

export function renderChannels(main, _params, ctx) {
  const view = listView({
    path: () => vhostPath('channels', ctx),
    sort: 'name',
    empty: 'No open channels',
    columns: [
      { key: 'name', label: 'Channel', sort: 'name', render: (c) => h('span.mono', c.name) },
      { key: 'vhost', label: 'Virtual host', sort: 'vhost' },
      { key: 'user', label: 'User', sort: 'user' },
      { key: 'mode', label: 'Mode', render: (c) => [c.confirm ? h('span.tag', 'confirm') : null, c.transactional ? h('span.tag', 'tx') : null] },
      { key: 'prefetch_count', label: 'Prefetch', sort: 'prefetch_count', num: true },
      { key: 'consumer_count', label: 'Consumers', sort: 'consumer_count', num: true },
      { key: 'messages_unacknowledged', label: 'Unacked', sort: 'messages_unacknowledged', num: true, render: (c) => fmtNum(c.messages_unacknowledged) },
      { key: 'publish', label: 'Publish', sort: 'message_stats.publish_details.rate', num: true, render: (c) => fmtRate(c.message_stats.publish_details.rate) },
      { key: 'deliver', label: 'Deliver', sort: 'message_stats.deliver_get_details.rate', num: true, render: (c) => fmtRate(c.message_stats.deliver_get_details.rate) },
      { key: 'ack', label: 'Ack', sort: 'message_stats.ack_details.rate', num: true, render: (c) => fmtRate(c.message_stats.ack_details.rate) },
    ],
  });
  main.append(h('div.page-head', h('h1', 'Channels')), h('div.card', view.el));
  view.refresh();
  const timer = setInterval(() => view.refresh(), 5000);
  return () => clearInterval(timer);
}
