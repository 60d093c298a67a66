import { isAdministrator, isMonitor, requireAdministrator, vhostFor } from '../auth';
import { parseTags } from '../body';
import { badRequest, notFound } from '../errors';
import { created, Handler, Management, NO_CONTENT, ok } from '../context';
import { parseListQuery, renderList, renderOne } from '../listing';
import type { Router } from '../router';
import { vhostView } from '../views/vhost';

/** Monitoring users see every vhost in the list, as in RabbitMQ; others only their own. */
const list: Handler = (ctx) => {
  const all = isMonitor(ctx.user);
  const views = [];
  for (const v of ctx.m.broker.vhosts.values()) {
    if (all || ctx.m.broker.users.permission(v.name, ctx.user.name) !== undefined) views.push(vhostView(ctx.m, v));
  }
  return ok(renderList(views, parseListQuery(ctx.query), [['name']]));
};

const show: Handler = (ctx) => {
  const name = ctx.params.vhost ?? '';
  if (!isAdministrator(ctx.user) && ctx.m.broker.users.permission(name, ctx.user.name) === undefined) requireAdministrator(ctx);
  return ok(renderOne(vhostView(ctx.m, vhostFor(ctx)), parseListQuery(ctx.query)));
};

const put: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.vhost ?? '';
  if (name === '') throw badRequest('vhost name must not be empty');
  const b = ctx.body;
  const description = b.str('description');
  const tags = b.has('tags') ? parseTags(b.raw.tags) : undefined;
  const defaultQueueType = b.str('default_queue_type');
  const tracing = b.has('tracing') ? b.bool('tracing', false) : undefined;
  const isNew = !ctx.m.broker.vhosts.has(name);
  const meta = ctx.m.metadata(name);
  ctx.m.vhostMetadata.set(name, {
    description: description ?? meta.description,
    tags: tags ?? meta.tags,
    defaultQueueType: defaultQueueType ?? meta.defaultQueueType,
    tracing: tracing ?? meta.tracing,
  });
  if (!isNew) return NO_CONTENT;
  createVhost(ctx.m, name, ctx.user.name);
  return created();
};

/** A new vhost is usable over AMQP at once; its creator gets full permissions, as RabbitMQ grants. */
export function createVhost(m: Management, name: string, actingUser: string | undefined): void {
  m.broker.addVhost(name);
  if (actingUser !== undefined && m.broker.users.users.has(actingUser)) {
    m.broker.users.setPermission(name, actingUser, '.*', '.*', '.*');
  }
  m.broker.logger.info({ vhost: name, user: actingUser }, 'vhost created');
}

const remove: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.vhost ?? '';
  if (!ctx.m.broker.vhosts.has(name)) throw notFound();
  deleteVhost(ctx.m, name);
  ctx.m.broker.logger.info({ vhost: name, user: ctx.user.name }, 'vhost deleted');
  return NO_CONTENT;
};

/**
 * Deleting a vhost closes its connections, deletes its queues (consumers are cancelled),
 * and forgets its exchanges, permissions, policies and metadata.
 */
export function deleteVhost(m: Management, name: string): void {
  m.broker.deleteVhost(name);
  m.vhostMetadata.delete(name);
}

const permissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const v = vhostFor(ctx);
  return ok(ctx.m.broker.users.listPermissions({ vhost: v.name }));
};

const topicPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const v = vhostFor(ctx);
  return ok(ctx.m.broker.users.listTopicPermissions({ vhost: v.name }));
};

export function registerVhosts(r: Router<Handler>): void {
  r.get('/api/vhosts', list)
    .get('/api/vhosts/:vhost', show)
    .put('/api/vhosts/:vhost', put)
    .delete('/api/vhosts/:vhost', remove)
    .get('/api/vhosts/:vhost/permissions', permissions)
    .get('/api/vhosts/:vhost/topic-permissions', topicPermissions);
}
