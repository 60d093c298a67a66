import type { Destination, Exchange } from '../../core/exchanges/exchange';
import type { VHost } from '../../core/vhost';
import { encodeTable, fieldString, tableGet } from '../../protocol/field-table';
import { accessFor, allow, vhostFor, visibleVhosts } from '../auth';
import { amqp, badRequest, HttpError, notFound } from '../errors';
import { created, Handler, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList } from '../listing';
import type { Router } from '../router';
import { argumentsTable } from '../views/json';
import { BindingRow, bindingView, defaultBindingView, propertiesKey, vhostBindings } from '../views/exchange';
import { exchangeName } from './exchanges';

type Kind = 'q' | 'e';

const list: Handler = (ctx) => {
  const rows: BindingRow[] = [];
  for (const v of visibleVhosts(ctx)) rows.push(...vhostBindings(v));
  return ok(renderList(rows as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));
};

const listVhost: Handler = (ctx) => ok(renderList(vhostBindings(vhostFor(ctx)) as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));

/** The source exchange and destination of a /bindings/vhost/e/source/(q|e)/destination path. */
function endpoints(ctx: RequestContext, kind: Kind, missing: 'not-found' | 'amqp'): { v: VHost; source: Exchange; destination: Destination } {
  const v = vhostFor(ctx);
  const sourceName = exchangeName(ctx.params.source ?? '');
  const destName = ctx.params.destination ?? '';
  const source = v.exchanges.get(sourceName);
  const destination = kind === 'q' ? v.queues.get(destName) : v.exchanges.get(exchangeName(destName));
  if (source === undefined || destination === undefined) {
    if (missing === 'not-found') throw notFound();
    // POST names the missing object, as RabbitMQ's declare through a channel would.
    if (source === undefined) throw new HttpError(404, 'not_found', `no exchange '${sourceName}' in vhost '${v.name}'`);
    throw new HttpError(404, 'not_found', kind === 'q' ? `no queue '${destName}' in vhost '${v.name}'` : `no exchange '${destName}' in vhost '${v.name}'`);
  }
  return { v, source, destination };
}

function rowsBetween(v: VHost, source: Exchange, destination: Destination): BindingRow[] {
  const rows = source.bindings.filter((b) => b.destination === destination).map(bindingView);
  if (source.name === '' && v.queues.get(destination.name) === destination) rows.unshift(defaultBindingView(destination as never));
  return rows;
}

function listBetween(kind: Kind): Handler {
  return (ctx) => {
    const { v, source, destination } = endpoints(ctx, kind, 'not-found');
    return ok(rowsBetween(v, source, destination));
  };
}

const X_MATCH = ['all', 'any', 'all-with-x', 'any-with-x'];

function create(kind: Kind): Handler {
  return (ctx) => {
    const b = ctx.body;
    const routingKey = b.str('routing_key', '');
    const args = argumentsTable(b.object('arguments'));
    const { v, source, destination } = endpoints(ctx, kind, 'amqp');
    const access = accessFor(ctx, v.name);
    allow(access.check('write', kind === 'q' ? 'queue' : 'exchange', destination.name));
    allow(access.check('read', 'exchange', source.name));
    if (source.type === 'topic') allow(access.checkTopic('read', source.name, routingKey));
    if (source.type === 'headers') {
      const xMatch = tableGet(args, 'x-match');
      if (xMatch !== undefined && (xMatch.type !== 'S' || !X_MATCH.includes(fieldString(xMatch)!))) {
        throw badRequest(`Invalid x-match field value; expected all, any, all-with-x, or any-with-x`);
      }
    }
    amqp(() => v.bind(source, destination, routingKey, args));
    // Same canonical form the model keys bindings by, so the Location names this binding.
    const key = propertiesKey(routingKey, args.length === 0 ? '' : encodeTable(args).toString('latin1'));
    return created({ location: `${encodeURIComponent(destination.name)}/${encodeURIComponent(key)}` });
  };
}

function findByKey(ctx: RequestContext, kind: Kind): { v: VHost; source: Exchange; destination: Destination; row: BindingRow } {
  const { v, source, destination } = endpoints(ctx, kind, 'not-found');
  const props = ctx.params.props ?? '';
  const row = rowsBetween(v, source, destination).find((r) => r.properties_key === props);
  if (row === undefined) throw notFound();
  return { v, source, destination, row };
}

function show(kind: Kind): Handler {
  return (ctx) => ok(findByKey(ctx, kind).row);
}

function remove(kind: Kind): Handler {
  return (ctx) => {
    const { v, source, destination, row } = findByKey(ctx, kind);
    const access = accessFor(ctx, v.name);
    allow(access.check('write', kind === 'q' ? 'queue' : 'exchange', destination.name));
    allow(access.check('read', 'exchange', source.name));
    const binding = source.bindings.find((b) => b.destination === destination && bindingView(b).properties_key === row.properties_key);
    amqp(() => v.unbind(source, destination, row.routing_key, binding?.arguments ?? []));
    return NO_CONTENT;
  };
}

export function registerBindings(r: Router<Handler>): void {
  r.get('/api/bindings', list).get('/api/bindings/:vhost', listVhost);
  for (const kind of ['q', 'e'] as const) {
    const base = `/api/bindings/:vhost/e/:source/${kind}/:destination`;
    r.get(base, listBetween(kind))
      .post(base, create(kind))
      .get(`${base}/:props`, show(kind))
      .delete(`${base}/:props`, remove(kind));
  }
}
