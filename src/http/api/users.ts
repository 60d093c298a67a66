import { isHashingAlgorithm, isValidHash } from '../../auth/passwords';
import type { Credentials } from '../../auth/users';
import { requireAdministrator } from '../auth';
import type { Body } from '../body';
import { badRequest, HttpError, notFound } from '../errors';
import { created, Handler, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList, renderOne } from '../listing';
import type { Router } from '../router';
import { userView } from '../views/vhost';

const list: Handler = (ctx) => {
  requireAdministrator(ctx);
  return ok(renderList([...ctx.m.broker.users.users.values()].map(userView), parseListQuery(ctx.query), [['name']]));
};

const withoutPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const store = ctx.m.broker.users;
  return ok([...store.users.values()].filter((u) => store.vhostsOf(u.name).length === 0).map(userView));
};

const show: Handler = (ctx) => {
  requireAdministrator(ctx);
  const u = ctx.m.broker.users.users.get(ctx.params.user ?? '');
  if (u === undefined) throw notFound();
  return ok(renderOne(userView(u), parseListQuery(ctx.query)));
};

/** The password part of a PUT /api/users body: password, or password_hash (+ hashing_algorithm), or neither. */
export function credentialsOf(b: Body): Credentials {
  if (b.has('password')) {
    const password = b.str('password', '');
    return { password };
  }
  if (b.has('password_hash')) {
    const hash = b.str('password_hash', '');
    const algorithm = b.str('hashing_algorithm', 'rabbit_password_hashing_sha256');
    if (!isHashingAlgorithm(algorithm)) throw badRequest(`unknown hashing algorithm '${algorithm}'`);
    if (!isValidHash(hash, algorithm)) throw badRequest('invalid password hash');
    return { passwordHash: hash, hashingAlgorithm: algorithm };
  }
  return { none: true };
}

/**
 * PUT /api/users/name. As in RabbitMQ the whole user is replaced: leaving out both password
 * and password_hash leaves the user without a password (they cannot log in with one).
 */
const put: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.user ?? '';
  if (name === '') throw badRequest('user name must not be empty');
  const b = ctx.body;
  if (!b.has('tags') && !b.has('password') && !b.has('password_hash')) throw badRequest('[{key_missing,tags}]');
  const credentials = credentialsOf(b);
  const tags = b.tags('tags');
  const store = ctx.m.broker.users;
  const isNew = !store.users.has(name);
  store.putUser(name, credentials, tags);
  ctx.m.broker.logger.info({ user: name, by: ctx.user.name }, isNew ? 'user created' : 'user updated');
  return isNew ? created() : NO_CONTENT;
};

const remove: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.user ?? '';
  if (!ctx.m.broker.users.deleteUser(name)) throw notFound();
  ctx.m.broker.logger.info({ user: name, by: ctx.user.name }, 'user deleted');
  return NO_CONTENT;
};

const bulkDelete: Handler = (ctx) => {
  requireAdministrator(ctx);
  const users = ctx.body.require('users').raw.users;
  if (!Array.isArray(users) || !users.every((u) => typeof u === 'string')) throw badRequest(['not_list', 'users']);
  for (const u of users as string[]) ctx.m.broker.users.deleteUser(u);
  return NO_CONTENT;
};

const userPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.user ?? '';
  if (!ctx.m.broker.users.users.has(name)) throw notFound();
  return ok(ctx.m.broker.users.listPermissions({ user: name }));
};

const userTopicPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.user ?? '';
  if (!ctx.m.broker.users.users.has(name)) throw notFound();
  return ok(ctx.m.broker.users.listTopicPermissions({ user: name }));
};

const whoami: Handler = (ctx) => ok({ name: ctx.user.name, tags: ctx.user.tags });

// ---- permissions -------------------------------------------------------------------------

const listPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  return ok(renderList(ctx.m.broker.users.listPermissions() as unknown as Record<string, unknown>[], parseListQuery(ctx.query), []));
};

function vhostAndUser(ctx: RequestContext): { vhost: string; user: string } {
  const vhost = ctx.params.vhost ?? '';
  const user = ctx.params.user ?? '';
  return { vhost, user };
}

const showPermission: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  const p = ctx.m.broker.users.permission(vhost, user);
  if (p === undefined) throw notFound();
  return ok({ user, vhost, ...p.patterns });
};

/** Compiles the patterns first, so a bad regular expression changes nothing. */
function compileOrReject(patterns: string[]): void {
  for (const p of patterns) {
    try {
      new RegExp(p);
    } catch (err) {
      throw badRequest(['invalid_regexp', p, err instanceof Error ? err.message : String(err)]);
    }
  }
}

const putPermission: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  const b = ctx.body.require('configure', 'write', 'read');
  const configure = b.str('configure', '');
  const write = b.str('write', '');
  const read = b.str('read', '');
  const store = ctx.m.broker.users;
  if (!ctx.m.broker.vhosts.has(vhost) || !store.users.has(user)) throw badRequest('vhost_or_user_not_found');
  compileOrReject([configure, write, read]);
  const isNew = store.permission(vhost, user) === undefined;
  store.setPermission(vhost, user, configure, write, read);
  return isNew ? created() : NO_CONTENT;
};

const deletePermission: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  if (!ctx.m.broker.users.clearPermission(vhost, user)) throw notFound();
  return NO_CONTENT;
};

// ---- topic permissions ---------------------------------------------------------------------

const listTopicPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  return ok(ctx.m.broker.users.listTopicPermissions());
};

const showTopicPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  const rows = ctx.m.broker.users.listTopicPermissions({ vhost, user });
  if (rows.length === 0) throw notFound();
  return ok(rows);
};

const putTopicPermission: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  const b = ctx.body.require('exchange', 'write', 'read');
  const exchange = b.str('exchange', '');
  const write = b.str('write', '');
  const read = b.str('read', '');
  const store = ctx.m.broker.users;
  if (!ctx.m.broker.vhosts.has(vhost) || !store.users.has(user)) throw badRequest('vhost_or_user_not_found');
  compileOrReject([write, read]);
  const isNew = store.topicPermission(vhost, user, exchange) === undefined;
  try {
    store.setTopicPermission(vhost, user, exchange, write, read);
  } catch (err) {
    throw new HttpError(400, 'bad_request', err instanceof Error ? err.message : String(err));
  }
  return isNew ? created() : NO_CONTENT;
};

const deleteTopicPermissions: Handler = (ctx) => {
  requireAdministrator(ctx);
  const { vhost, user } = vhostAndUser(ctx);
  const exchange = ctx.query.get('exchange') ?? undefined;
  if (!ctx.m.broker.users.clearTopicPermissions(vhost, user, exchange)) throw notFound();
  return NO_CONTENT;
};

export function registerUsers(r: Router<Handler>): void {
  r.get('/api/users', list)
    .get('/api/users/without-permissions', withoutPermissions)
    .post('/api/users/bulk-delete', bulkDelete)
    .get('/api/users/:user', show)
    .put('/api/users/:user', put)
    .delete('/api/users/:user', remove)
    .get('/api/users/:user/permissions', userPermissions)
    .get('/api/users/:user/topic-permissions', userTopicPermissions)
    .get('/api/whoami', whoami)
    .get('/api/permissions', listPermissions)
    .get('/api/permissions/:vhost/:user', showPermission)
    .put('/api/permissions/:vhost/:user', putPermission)
    .delete('/api/permissions/:vhost/:user', deletePermission)
    .get('/api/topic-permissions', listTopicPermissions)
    .get('/api/topic-permissions/:vhost/:user', showTopicPermissions)
    .put('/api/topic-permissions/:vhost/:user', putTopicPermission)
    .delete('/api/topic-permissions/:vhost/:user', deleteTopicPermissions);
}
