import { DelayedExchange } from '../../core/exchanges/delayed';
import type { Exchange } from '../../core/exchanges/exchange';
import { fieldInt, tableGet } from '../../protocol/field-table';
import { Message } from '../../core/message';
import type { VHost } from '../../core/vhost';
import { accessFor, allow, vhostFor, visibleVhosts } from '../auth';
import { amqp, badRequest, notFound } from '../errors';
import { created, Handler, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList, renderOne } from '../listing';
import type { Router } from '../router';
import { argumentsTable, encodeJsonProperties, messageJson } from '../views/json';
import { bindingView, exchangeDetailView, exchangeView } from '../views/exchange';
import { checkName, intParam } from './queues';

/** In URLs the default exchange is called amq.default, as in RabbitMQ. */
export function exchangeName(pathName: string): string {
  return pathName === 'amq.default' ? '' : pathName;
}

export function exchangeIn(v: VHost, pathName: string): Exchange {
  const x = v.exchanges.get(exchangeName(pathName));
  if (x === undefined) throw notFound();
  return x;
}

function listExchanges(ctx: RequestContext, vhosts: VHost[]): unknown {
  const views = [];
  for (const v of vhosts) for (const x of v.exchanges.values()) views.push(exchangeView(ctx.m, x));
  return renderList(views, parseListQuery(ctx.query));
}

const list: Handler = (ctx) => ok(listExchanges(ctx, visibleVhosts(ctx)));
const listVhost: Handler = (ctx) => ok(listExchanges(ctx, [vhostFor(ctx)]));

const show: Handler = (ctx) => {
  const x = exchangeIn(vhostFor(ctx), ctx.params.name ?? '');
  return ok(renderOne(exchangeDetailView(ctx.m, x), parseListQuery(ctx.query)));
};

const declare: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const name = exchangeName(ctx.params.name ?? '');
  checkName('exchange', name);
  const b = ctx.body.require('type');
  const type = b.str('type', '');
  const durable = b.bool('durable', false);
  const autoDelete = b.bool('auto_delete', false);
  const internal = b.bool('internal', false);
  const args = argumentsTable(b.object('arguments'));
  allow(accessFor(ctx, v.name).check('configure', 'exchange', name));
  const existed = v.exchanges.has(name);
  amqp(() => v.declareExchange({ name, type, passive: false, durable, autoDelete, internal, arguments: args }));
  return existed ? NO_CONTENT : created();
};

const remove: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const x = exchangeIn(v, ctx.params.name ?? '');
  allow(accessFor(ctx, v.name).check('configure', 'exchange', x.name));
  amqp(() => v.deleteExchange(x.name, ctx.query.get('if-unused') === 'true'));
  return NO_CONTENT;
};

const bindingsSource: Handler = (ctx) => {
  const x = exchangeIn(vhostFor(ctx), ctx.params.name ?? '');
  return ok(renderList(x.bindings.map(bindingView) as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));
};

const bindingsDestination: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const x = exchangeIn(v, ctx.params.name ?? '');
  return ok(renderList(v.bindingsToDestination(x).map(bindingView) as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));
};

/**
 * POST /publish: one message through the same VHost.publish AMQP uses. The answer says
 * whether any queue took it, as RabbitMQ's {"routed": bool}.
 */
const publish: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const name = exchangeName(ctx.params.name ?? '');
  const b = ctx.body.require('properties', 'routing_key', 'payload', 'payload_encoding');
  const routingKey = b.str('routing_key', '');
  const payload = b.str('payload', '');
  const encoding = b.str('payload_encoding', 'string');
  const props = b.object('properties') ?? {};
  let body: Buffer;
  if (encoding === 'string') body = Buffer.from(payload, 'utf8');
  else if (encoding === 'base64') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(payload.replace(/\s/g, '')) || payload.replace(/\s/g, '').length % 4 === 1) {
      throw badRequest(['not_base64', payload]);
    }
    body = Buffer.from(payload, 'base64');
  } else throw badRequest(['unknown_encoding', encoding]);
  const { raw, props: decoded } = encodeJsonProperties(props);
  const x = v.exchanges.get(name);
  if (x === undefined) throw badRequest(`404 NOT_FOUND - no exchange '${name}' in vhost '${v.name}'`);
  const access = accessFor(ctx, v.name);
  allow(access.check('write', 'exchange', name));
  if (x.type === 'topic') allow(access.checkTopic('write', name, routingKey));
  if (x.internal) throw badRequest(`403 ACCESS_REFUSED - cannot publish to internal exchange '${name}' in vhost '${v.name}'`);
  if (decoded.userId !== undefined && decoded.userId !== ctx.user.name) {
    throw badRequest(`406 PRECONDITION_FAILED - user_id property set to '${decoded.userId}' but authenticated user was '${ctx.user.name}'`);
  }
  const msg = new Message(name, routingKey, raw, body);
  if (decoded.expiration !== undefined) msg.ttl = Number(decoded.expiration);
  const routed = amqp(() => v.publish(x, msg));
  return ok({ routed: routed > 0 });
};

/**
 * GET /delayed: Warren's listing of the messages a delayed-message exchange holds, the next
 * `count` in release order, without releasing or reordering anything. Shapes follow /get
 * (messageJson), plus when each is due. Approximate for messages published or released
 * while it reads (DelaySchedule.peek).
 */
const delayed: Handler = async (ctx) => {
  const v = vhostFor(ctx);
  const x = exchangeIn(v, ctx.params.name ?? '');
  const count = intParam(ctx.query, 'count', 20, 0, 1000);
  const truncate = ctx.query.has('truncate') ? intParam(ctx.query, 'truncate', 0, 0, Number.MAX_SAFE_INTEGER) : undefined;
  const encoding = ctx.query.get('encoding') ?? 'auto';
  if (encoding !== 'auto' && encoding !== 'base64') throw badRequest(`unsupported encoding '${encoding}'`);
  if (!(x instanceof DelayedExchange)) throw badRequest(`exchange '${x.name}' in vhost '${v.name}' is not an x-delayed-message exchange`);
  allow(accessFor(ctx, v.name).check('read', 'exchange', x.name));
  const held = await x.peek(count);
  const now = Date.now();
  return ok(
    held.map(({ due, record }) => {
      const msg = new Message(record.exchange, record.routingKey, record.properties, record.body);
      const xDelay = fieldInt(tableGet(msg.properties.headers, 'x-delay'));
      const m = messageJson(msg, encoding, truncate);
      return {
        due: new Date(due).toISOString(),
        due_in_ms: Math.max(0, due - now),
        x_delay: xDelay ?? due - record.publishedAt,
        exchange: m.exchange,
        routing_key: m.routing_key,
        properties: m.properties,
        payload: m.payload,
        payload_bytes: m.payload_bytes,
        payload_encoding: m.payload_encoding,
      };
    }),
  );
};

export function registerExchanges(r: Router<Handler>): void {
  r.get('/api/exchanges', list)
    .get('/api/exchanges/:vhost', listVhost)
    .get('/api/exchanges/:vhost/:name', show)
    .put('/api/exchanges/:vhost/:name', declare)
    .delete('/api/exchanges/:vhost/:name', remove)
    .get('/api/exchanges/:vhost/:name/bindings/source', bindingsSource)
    .get('/api/exchanges/:vhost/:name/bindings/destination', bindingsDestination)
    .post('/api/exchanges/:vhost/:name/publish', publish)
    .get('/api/exchanges/:vhost/:name/delayed', delayed);
}
