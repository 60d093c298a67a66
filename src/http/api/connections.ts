import type { Channel } from '../../amqp/channel';
import type { Connection } from '../../amqp/connection';
import { isMonitor, vhostFor, visibleVhosts } from '../auth';
import { notFound } from '../errors';
import { Handler, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList, renderOne } from '../listing';
import type { Router } from '../router';
import { channelName, channelView, connectionView } from '../views/connection';
import { consumerView } from '../views/queue';

/** Monitoring users and administrators see every connection; others only their own. */
function visibleConnections(ctx: RequestContext, vhost?: string): Connection[] {
  const all = isMonitor(ctx.user);
  const out: Connection[] = [];
  for (const c of ctx.m.broker.connections) {
    if (!c.isOpen) continue;
    if (vhost !== undefined && c.vhost?.name !== vhost) continue;
    if (all || c.userName === ctx.user.name) out.push(c);
  }
  return out;
}

function visibleChannels(ctx: RequestContext, vhost?: string): Channel[] {
  const out: Channel[] = [];
  for (const c of visibleConnections(ctx, vhost)) out.push(...c.channelList);
  return out;
}

function connectionNamed(ctx: RequestContext): Connection {
  const name = ctx.params.name ?? '';
  const c = visibleConnections(ctx).find((x) => x.name === name);
  if (c === undefined) throw notFound();
  return c;
}

const byName = [['name']];

const listConnections: Handler = (ctx) =>
  ok(renderList(visibleConnections(ctx).map((c) => connectionView(ctx.m, c)), parseListQuery(ctx.query), byName));

const listVhostConnections: Handler = (ctx) => {
  const v = vhostFor(ctx);
  return ok(renderList(visibleConnections(ctx, v.name).map((c) => connectionView(ctx.m, c)), parseListQuery(ctx.query), byName));
};

const showConnection: Handler = (ctx) => ok(renderOne(connectionView(ctx.m, connectionNamed(ctx)), parseListQuery(ctx.query)));

/** RabbitMQ's reason text, replaceable with an X-Reason header. */
function closeReason(ctx: RequestContext): string {
  const h = ctx.headers['x-reason'];
  return typeof h === 'string' && h !== '' ? h : 'Closed via management plugin';
}

const closeConnection: Handler = (ctx) => {
  connectionNamed(ctx).close('CONNECTION_FORCED', closeReason(ctx));
  return NO_CONTENT;
};

const connectionChannels: Handler = (ctx) => {
  const c = connectionNamed(ctx);
  return ok(renderList([...c.channelList].map((ch) => channelView(ctx.m, ch)), parseListQuery(ctx.query), byName));
};

const userConnections: Handler = (ctx) => {
  const user = ctx.params.user ?? '';
  return ok(visibleConnections(ctx).filter((c) => c.userName === user).map((c) => connectionView(ctx.m, c)));
};

const closeUserConnections: Handler = (ctx) => {
  const user = ctx.params.user ?? '';
  for (const c of visibleConnections(ctx).filter((x) => x.userName === user)) c.close('CONNECTION_FORCED', closeReason(ctx));
  return NO_CONTENT;
};

const listChannels: Handler = (ctx) => ok(renderList(visibleChannels(ctx).map((ch) => channelView(ctx.m, ch)), parseListQuery(ctx.query), byName));

const listVhostChannels: Handler = (ctx) => {
  const v = vhostFor(ctx);
  return ok(renderList(visibleChannels(ctx, v.name).map((ch) => channelView(ctx.m, ch)), parseListQuery(ctx.query), byName));
};

const showChannel: Handler = (ctx) => {
  const name = ctx.params.name ?? '';
  const ch = visibleChannels(ctx).find((x) => channelName(x) === name);
  if (ch === undefined) throw notFound();
  const view = channelView(ctx.m, ch);
  view.consumer_details = [...ch.consumers.values()].map((c) => consumerView(ctx.m, c));
  return ok(renderOne(view, parseListQuery(ctx.query)));
};

function consumersIn(ctx: RequestContext, vhosts: string[]): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const name of vhosts) {
    const v = ctx.m.broker.vhosts.get(name);
    if (v === undefined) continue;
    for (const q of v.queues.values()) {
      for (const c of q.consumerList) {
        const view = consumerView(ctx.m, c);
        if (view !== undefined) out.push(view);
      }
    }
  }
  return out;
}

const listConsumers: Handler = (ctx) =>
  ok(renderList(consumersIn(ctx, visibleVhosts(ctx).map((v) => v.name)), parseListQuery(ctx.query), [['queue', 'vhost'], ['queue', 'name']]));

const listVhostConsumers: Handler = (ctx) =>
  ok(renderList(consumersIn(ctx, [vhostFor(ctx).name]), parseListQuery(ctx.query), [['queue', 'name']]));

export function registerConnections(r: Router<Handler>): void {
  r.get('/api/connections', listConnections)
    .get('/api/connections/:name', showConnection)
    .delete('/api/connections/:name', closeConnection)
    .get('/api/connections/:name/channels', connectionChannels)
    .get('/api/connections/username/:user', userConnections)
    .delete('/api/connections/username/:user', closeUserConnections)
    .get('/api/vhosts/:vhost/connections', listVhostConnections)
    .get('/api/channels', listChannels)
    .get('/api/channels/:name', showChannel)
    .get('/api/vhosts/:vhost/channels', listVhostChannels)
    .get('/api/consumers', listConsumers)
    .get('/api/consumers/:vhost', listVhostConsumers);
}
