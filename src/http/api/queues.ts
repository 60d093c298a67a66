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

/**
 * Counts of queues homed on other cluster nodes live there: ask (in parallel, briefly) before
 * rendering; a node that does not answer in time leaves the last known counts.
 */
async function refreshRemoteCounts(queues: Iterable<Queue>): Promise<void> {
  const asks: Array<Promise<unknown>> = [];
  for (const q of queues) {
    if (q.remote !== null) asks.push(Promise.race([q.remote.counts().catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]));
  }
  await Promise.all(asks);
}

async function listQueues(ctx: RequestContext, vhosts: VHost[]): Promise<unknown> {
  await refreshRemoteCounts(vhosts.flatMap((v) => [...v.queues.values()]));
  const views = [];
  for (const v of vhosts) for (const q of v.queues.values()) views.push(queueView(ctx.m, q));
  return renderList(views, parseListQuery(ctx.query));
}

const list: Handler = async (ctx) => ok(await listQueues(ctx, visibleVhosts(ctx)));
const listVhost: Handler = async (ctx) => ok(await listQueues(ctx, [vhostFor(ctx)]));

const show: Handler = async (ctx) => {
  const q = queueIn(ctx, vhostFor(ctx));
  await refreshRemoteCounts([q]);
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

const purge: Handler = async (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  allow(accessFor(ctx, v.name).check('read', 'queue', q.name));
  const queue = amqp(() => v.queue(q.name, q.exclusiveOwner ?? ctx.m.owner));
  if (queue.remote !== null) await remoteCall(queue.remote.purge());
  else queue.purge();
  return NO_CONTENT;
};

const ACKMODES = ['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false'] as const;
type Ackmode = (typeof ACKMODES)[number];

/**
 * POST /get: basic.get `count` times, then settle as `ackmode` says. With requeue the
 * messages go back in place, marked redelivered, exactly as RabbitMQ's get does.
 */
const get: Handler = async (ctx) => {
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
    let entry: QueueEntry | undefined;
    let messageCount: number;
    if (queue.remote !== null) {
      // A queue homed on another cluster node: each get is a round trip to it.
      const got = await remoteCall(queue.remote.get(false));
      entry = got?.entry;
      messageCount = got?.messageCount ?? 0;
    } else {
      entry = queue.get(false);
      messageCount = queue.messageCount;
    }
    if (entry === undefined) break;
    taken.push(entry);
    out.push({
      ...messageJson(entry.msg, encoding, truncate),
      redelivered: entry.redelivered,
      message_count: messageCount,
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

/**
 * POST /actions {"action": "sync" | "cancel_sync"}: RabbitMQ's manual synchronisation of a
 * mirrored queue. Warren's catch-up never blocks the queue, so "sync" only starts it now for
 * mirrors that are not in sync (what ha-sync-mode automatic does by itself).
 */
const actions: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const q = queueIn(ctx, v);
  allow(accessFor(ctx, v.name).check('configure', 'queue', q.name));
  const action = ctx.body.str('action', '');
  if (action !== 'sync' && action !== 'cancel_sync') throw badRequest(`unknown action '${action}'`);
  const cluster = ctx.m.broker.cluster;
  if (cluster?.syncQueue !== undefined && !cluster.syncQueue(v.name, q.name, action)) {
    throw badRequest(`queue '${q.name}' is not a mirrored queue led by node '${cluster.nodeName}'; ask its leader's node`);
  }
  return NO_CONTENT;
};

/** A cluster round trip: its AMQP error (home node down, ...) becomes the HTTP error. */
function remoteCall<T>(work: Promise<T>): Promise<T> {
  return work.catch((err: unknown) => amqp(() => {
    throw err;
  }));
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

export function intParam(q: URLSearchParams, key: string, fallback: number, min: number, max: number): number {
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
    .post('/api/queues/:vhost/:name/actions', actions)
    .delete('/api/queues/:vhost/:name', remove)
    .delete('/api/queues/:vhost/:name/contents', purge)
    .post('/api/queues/:vhost/:name/get', get)
    .get('/api/queues/:vhost/:name/messages', browse)
    .get('/api/queues/:vhost/:name/bindings', bindings);
}
