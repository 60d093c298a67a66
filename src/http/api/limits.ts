import { USER_LIMITS, VHOST_LIMITS } from '../../core/limits';
import { canSeeVhost, isAdministrator, isMonitor, requireAdministrator } from '../auth';
import { badRequest, HttpError, notAuthorised, notFound } from '../errors';
import { Handler, NO_CONTENT, ok, RequestContext } from '../context';
import type { Router } from '../router';

// RabbitMQ's limits API: GET /api/vhost-limits[/vhost], PUT/DELETE /api/vhost-limits/vhost/name,
// GET /api/user-limits[/user], PUT/DELETE /api/user-limits/user/name, each PUT with {"value": N}.

/** How RabbitMQ's validation messages print a JSON value (an Erlang term). */
export function erlangTerm(v: unknown): string {
  if (typeof v === 'string') return `<<"${v}">>`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return `[${v.map(erlangTerm).join(',')}]`;
  if (typeof v === 'object') return `#{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${erlangTerm(k)} => ${erlangTerm(x)}`).join(',')}}`;
  return String(v);
}

/**
 * Checks limits as RabbitMQ's validation does: known names only, integer values (negative
 * means no limit). Returns RabbitMQ's message for the first problem, or undefined.
 */
export function limitsProblem(limits: Record<string, unknown>, known: readonly string[], what: 'limits' | 'user-limits'): string | undefined {
  const unknown = Object.entries(limits).filter(([k]) => !known.includes(k));
  if (unknown.length !== 0) return `Unrecognised terms [${unknown.map(([k, v]) => `{${erlangTerm(k)},${erlangTerm(v)}}`).join(',')}] in ${what}`;
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) return `${k} should be a number, actually was ${erlangTerm(v)}`;
  }
  return undefined;
}

/** The {"value": N} of a limit PUT, checked as RabbitMQ checks it. */
function limitValue(ctx: RequestContext, known: readonly string[], what: 'limits' | 'user-limits', wrap: (reason: string) => string): { name: string; value: number } {
  const name = ctx.params.name ?? '';
  const value = ctx.body.require('value').raw.value;
  const problem = limitsProblem({ [name]: value }, known, what);
  if (problem !== undefined) throw badRequest(wrap(problem));
  return { name, value: value as number };
}

// ---- vhost limits ----------------------------------------------------------------------------

/** Monitoring users see every vhost's limits, as in RabbitMQ; management users their own vhosts'. */
function seesVhost(ctx: RequestContext, vhost: string): boolean {
  return isMonitor(ctx.user) || canSeeVhost(ctx, vhost);
}

const listVhostLimits: Handler = (ctx) => ok(ctx.m.broker.limits.listVhostLimits().filter((l) => seesVhost(ctx, l.vhost)));

const showVhostLimits: Handler = (ctx) => {
  const vhost = ctx.params.vhost ?? '';
  if (!ctx.m.broker.vhosts.has(vhost)) throw notFound();
  if (!seesVhost(ctx, vhost)) throw notAuthorised('User not authorised to access virtual host');
  return ok(ctx.m.broker.limits.listVhostLimits().filter((l) => l.vhost === vhost));
};

const putVhostLimit: Handler = (ctx) => {
  requireAdministrator(ctx);
  const vhost = ctx.params.vhost ?? '';
  if (!ctx.m.broker.vhosts.has(vhost)) throw new HttpError(404, 'not_found', 'vhost_not_found');
  const { name, value } = limitValue(ctx, VHOST_LIMITS, 'limits', (reason) => `Validation failed\n\n${reason}\n`);
  ctx.m.broker.limits.setVhostLimit(vhost, name, value);
  ctx.m.broker.logger.info({ vhost, limit: name, value, user: ctx.user.name }, 'vhost limit set');
  return NO_CONTENT;
};

const deleteVhostLimit: Handler = (ctx) => {
  requireAdministrator(ctx);
  const vhost = ctx.params.vhost ?? '';
  // RabbitMQ answers 500 for a missing vhost; 404 says what happened.
  if (!ctx.m.broker.limits.clearVhostLimit(vhost, ctx.params.name ?? '')) throw notFound();
  return NO_CONTENT;
};

// ---- user limits -----------------------------------------------------------------------------

/** Monitoring users see everyone's limits, as in RabbitMQ; other users only their own. */
function userLimitsFor(ctx: RequestContext, only?: string): Array<{ user: string; value: Record<string, number> }> {
  const all = isMonitor(ctx.user) || isAdministrator(ctx.user);
  return ctx.m.broker.limits.listUserLimits().filter((l) => (all || l.user === ctx.user.name) && (only === undefined || l.user === only));
}

const listUserLimits: Handler = (ctx) => ok(userLimitsFor(ctx));

const showUserLimits: Handler = (ctx) => {
  const user = ctx.params.user ?? '';
  if (!ctx.m.broker.users.users.has(user)) throw notFound();
  return ok(userLimitsFor(ctx, user));
};

const putUserLimit: Handler = (ctx) => {
  requireAdministrator(ctx);
  const user = ctx.params.user ?? '';
  const { name, value } = limitValue(ctx, USER_LIMITS, 'user-limits', (reason) => reason);
  if (!ctx.m.broker.users.setLimit(user, name, value)) throw badRequest(['no_such_user', user]);
  ctx.m.broker.logger.info({ user, limit: name, value, by: ctx.user.name }, 'user limit set');
  return NO_CONTENT;
};

const deleteUserLimit: Handler = (ctx) => {
  requireAdministrator(ctx);
  // RabbitMQ answers 500 for a missing user; 404 says what happened.
  if (!ctx.m.broker.users.clearLimit(ctx.params.user ?? '', ctx.params.name ?? '')) throw notFound();
  return NO_CONTENT;
};

export function registerLimits(r: Router<Handler>): void {
  r.get('/api/vhost-limits', listVhostLimits)
    .get('/api/vhost-limits/:vhost', showVhostLimits)
    .put('/api/vhost-limits/:vhost/:name', putVhostLimit)
    .delete('/api/vhost-limits/:vhost/:name', deleteVhostLimit)
    .get('/api/user-limits', listUserLimits)
    .get('/api/user-limits/:user', showUserLimits)
    .put('/api/user-limits/:user/:name', putUserLimit)
    .delete('/api/user-limits/:user/:name', deleteUserLimit);
}
