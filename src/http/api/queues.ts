import type { Queue, QueueEntry } from '../../core/queue/queue';
import type { VHost } from '../../core/vhost';
import { accessFor, allow, vhostFor, visibleVhosts } from '../auth';
import { amqp, badRequest, HttpError, notFound } from '../errors';
import { created, Handler, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList, renderOne } from '../listing';
import type { Router } from '../router';
import { argumentsTable, messageJson } from '../views/json';
import { defaultBindingView, bindingView } from '../views/exchange';
import { queueDetailView, queueView } from '../views/queue';

/** AMQP short strings cap names at 255 bytes; RabbitMQ's text for the HTTP check. */
export function checkName(kind: 'queue' | 'exchange', name: string): void {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > 255) throw badRequest(`${kind} should be less than 255 bytes, actually was ${bytes}\n`);
}

export function queueIn(ctx: RequestContext, v: VHost, name = ctx.params.name ?? ''): Queue {
  const q = v.queues.get(name);
  if (q === undefined) throw notFound();
  return q;
}

function listQueues(ctx: RequestContext, vhosts: VHost[]): unknown {
  const views = [];
  for (const v of vhosts) for (const q of v.queues.values()) views.push(queueView(ctx.m, q));
  return renderList(views, parseListQuery(ctx.query));
}

const list: Handler = (ctx) => ok(listQueues(ctx, visibleVhosts(ctx)));
const listVhost: Handler = (ctx) => ok(listQueues(ctx, [vhostFor(ctx)]));

const show: Handler = (ctx) => {
  const q = queueIn(ctx, vhostFor(ctx));
  return ok(renderOne(queueDetailView(ctx.m, q), parseListQuery(ctx.query)));
};

const declare: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const name = ctx.params.name ?? '';
  checkName('queue', name);
  const b = ctx.body;
  const durable = b.bool('durable', false);
  const autoDelete = b.bool('auto_delete', false);
  const args = argumentsTable(b.object('arguments'));
  allow(accessFor(ctx, v.name).check('configure', 'queue', name));
  if (name === '') throw badRequest('queue name must not be empty');
  const { created: isNew } = amqp(() =>
    v.declareQueue({ name, passive: false, durable, autoDelete, exclusiveOwner: null, arguments: args }, ctx.m.owner),
  );
  return isNew ? created() : NO_CONTENT;
};

const remove: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  allow(accessFor(ctx, v.name).check('configure', 'queue', q.name));
  const ifEmpty = ctx.query.get('if-empty') === 'true';
  const ifUnused = ctx.query.get('if-unused') === 'true';
  amqp(() => v.deleteQueue(q.name, q.exclusiveOwner ?? ctx.m.owner, ifUnused, ifEmpty));
  return NO_CONTENT;
};

const purge: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  allow(accessFor(ctx, v.name).check('read', 'queue', q.name));
  amqp(() => v.queue(q.name, q.exclusiveOwner ?? ctx.m.owner)).purge();
  return NO_CONTENT;
};

const ACKMODES = ['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false'] as const;
type Ackmode = (typeof ACKMODES)[number];

/**
 * POST /get: basic.get `count` times, then settle as `ackmode` says. With requeue the
 * messages go back in place, marked redelivered, exactly as RabbitMQ's get does.
 */
const get: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  const b = ctx.body.require('count', 'ackmode', 'encoding');
  const count = b.int('count', 1);
  const ackmode = b.str('ackmode', '');
  const encoding = b.str('encoding', 'auto');
  const truncate = b.int('truncate');
  if (!(ACKMODES as readonly string[]).includes(ackmode)) throw badRequest(`unknown ackmode '${ackmode}'`);
  if (encoding !== 'auto' && encoding !== 'base64') throw badRequest(`unsupported encoding '${encoding}'`);
  if (count < 0) throw badRequest(['not_int', 'count']);
  allow(accessFor(ctx, v.name).check('read', 'queue', q.name));
  const queue = amqp(() => v.queue(q.name, q.exclusiveOwner ?? ctx.m.owner));
  const taken: QueueEntry[] = [];
  const out: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const entry = queue.get(false);
    if (entry === undefined) break;
    taken.push(entry);
    out.push({
      ...messageJson(entry.msg, encoding, truncate),
      redelivered: entry.redelivered,
      message_count: queue.messageCount,
    });
  }
  ctx.m.stats.direct.get += taken.length;
  settle(queue, taken, ackmode as Ackmode);
  return ok(out.map(orderGetFields));
};

function settle(queue: Queue, entries: QueueEntry[], mode: Ackmode): void {
  switch (mode) {
    case 'ack_requeue_true':
    case 'reject_requeue_true':
      queue.requeue(entries);
      return;
    case 'ack_requeue_false':
      for (const e of entries) queue.ack(e);
      return;
    case 'reject_requeue_false':
      for (const e of entries) queue.discard(e);
      return;
  }
}

/** RabbitMQ's key order for /get results, so diffs against it read easily. */
function orderGetFields(m: Record<string, unknown>): Record<string, unknown> {
  const { payload_bytes, redelivered, exchange, routing_key, message_count, properties, payload, payload_encoding } = m;
  return { payload_bytes, redelivered, exchange, routing_key, message_count, properties, payload, payload_encoding };
}

/**
 * GET /messages: Warren's non-destructive browse. Lists ready messages from `offset` without
 * taking them: no redelivered flag set, no order changed, no stats counted.
 */
const browse: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  const offset = intParam(ctx.query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
  const count = intParam(ctx.query, 'count', 50, 0, 1000);
  const truncate = ctx.query.has('truncate') ? intParam(ctx.query, 'truncate', 0, 0, Number.MAX_SAFE_INTEGER) : undefined;
  const encoding = ctx.query.get('encoding') ?? 'auto';
  if (encoding !== 'auto' && encoding !== 'base64') throw badRequest(`unsupported encoding '${encoding}'`);
  allow(accessFor(ctx, v.name).check('read', 'queue', q.name));
  const entries = q.peekReady(offset, count);
  return ok({
    offset,
    count: entries.length,
    total: q.messageCount,
    items: entries.map((e, i) => ({
      position: offset + i,
      redelivered: e.redelivered,
      ...messageJson(e.msg, encoding, truncate),
    })),
  });
};

function intParam(q: URLSearchParams, key: string, fallback: number, min: number, max: number): number {
  const raw = q.get(key);
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw badRequest(['not_int', key]);
  const n = Number(raw);
  if (n < min || n > max) throw new HttpError(400, 'bad_request', `${key} must be between ${min} and ${max}`);
  return n;
}

const bindings: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  const rows = [defaultBindingView(q), ...v.bindingsToDestination(q).map(bindingView)];
  return ok(renderList(rows as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));
};

export function registerQueues(r: Router<Handler>): void {
  r.get('/api/queues', list)
    .get('/api/queues/:vhost', listVhost)
    .get('/api/queues/:vhost/:name', show)
    .put('/api/queues/:vhost/:name', declare)
    .delete('/api/queues/:vhost/:name', remove)
    .delete('/api/queues/:vhost/:name/contents', purge)
    .post('/api/queues/:vhost/:name/get', get)
    .get('/api/queues/:vhost/:name/messages', browse)
    .get('/api/queues/:vhost/:name/bindings', bindings);
}
