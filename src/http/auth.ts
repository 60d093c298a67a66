import { AccessContext, User, UserStore } from '../auth/users';
import type { VHost } from '../core/vhost';
import { ACCESS_REFUSED, HttpError, notAuthorised, notFound } from './errors';
import type { RequestContext } from './context';

/**
 * Management's user tags, as RabbitMQ defines them: management sees its own vhosts and
 * connections; policymaker adds policies and parameters in those vhosts; monitoring sees
 * every vhost, connection and channel and the node; administrator does everything.
 */
export const MANAGEMENT_TAGS = ['management', 'policymaker', 'monitoring', 'administrator'] as const;

export function isAdministrator(u: User): boolean {
  return u.tags.includes('administrator');
}

export function isMonitor(u: User): boolean {
  return isAdministrator(u) || u.tags.includes('monitoring');
}

export function isPolicymaker(u: User): boolean {
  return isAdministrator(u) || u.tags.includes('policymaker');
}

export function isManagementUser(u: User): boolean {
  return u.tags.some((t) => (MANAGEMENT_TAGS as readonly string[]).includes(t));
}

/** RabbitMQ's realm, so tools that look for it find it. */
const CHALLENGE = { 'www-authenticate': 'Basic realm="RabbitMQ Management"' };

export interface LoginPolicy {
  users: UserStore;
  loopbackUsers: readonly string[];
}

/**
 * Basic authentication. `challenge` is false for the web UI's own requests, so a failed
 * login shows the UI's form instead of the browser's password dialog.
 */
export function authenticate(header: string | undefined, remoteAddress: string | undefined, policy: LoginPolicy, challenge: boolean): User {
  const headers = challenge ? CHALLENGE : {};
  if (header === undefined || !/^basic /i.test(header)) throw new HttpError(401, 'not_authorized', 'Login failed', headers);
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const name = colon < 0 ? decoded : decoded.slice(0, colon);
  const password = colon < 0 ? '' : decoded.slice(colon + 1);
  const user = policy.users.authenticate(name, password);
  if (user === undefined) throw new HttpError(401, 'not_authorized', 'Login failed', headers);
  if (policy.loopbackUsers.includes(user.name) && !isLoopback(remoteAddress)) {
    throw new HttpError(401, 'not_authorised', 'User can only log in via localhost', headers);
  }
  if (!isManagementUser(user)) throw notAuthorised('Not management user');
  return user;
}

export function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}

export function requireAdministrator(ctx: RequestContext): void {
  if (!isAdministrator(ctx.user)) throw notAuthorised('Not administrator user');
}

export function requireMonitor(ctx: RequestContext): void {
  if (!isMonitor(ctx.user)) throw notAuthorised('Not monitor user');
}

export function requirePolicymaker(ctx: RequestContext): void {
  if (!isPolicymaker(ctx.user)) throw notAuthorised('User not authorised to access object');
}

/** True when the user may read this vhost's objects: administrators, or a permission entry. */
export function canSeeVhost(ctx: RequestContext, vhost: string): boolean {
  return isAdministrator(ctx.user) || ctx.m.broker.users.permission(vhost, ctx.user.name) !== undefined;
}

/** The vhost named in the path: 404 when missing, 401 when the user has no access to it. */
export function vhostFor(ctx: RequestContext, name = ctx.params.vhost ?? ''): VHost {
  const vhost = ctx.m.broker.vhosts.get(name);
  if (vhost === undefined) throw notFound();
  if (!canSeeVhost(ctx, name)) throw notAuthorised('User not authorised to access virtual host');
  return vhost;
}

/** Vhosts whose objects appear in the user's lists (all for administrators). */
export function visibleVhosts(ctx: RequestContext): VHost[] {
  const out: VHost[] = [];
  for (const v of ctx.m.broker.vhosts.values()) if (canSeeVhost(ctx, v.name)) out.push(v);
  return out;
}

/**
 * Resource-level checks for operations: like an AMQP client, the user needs a permission in
 * the vhost (administrators too), and RabbitMQ answers "Access refused." otherwise.
 */
export function accessFor(ctx: RequestContext, vhost: string): AccessContext {
  const perm = ctx.m.broker.users.permission(vhost, ctx.user.name);
  if (perm === undefined) throw notAuthorised(ACCESS_REFUSED);
  return new AccessContext(ctx.user, vhost, perm, ctx.m.broker.users);
}

/** Throws RabbitMQ's refusal when an access check returned a denial text. */
export function allow(denied: string | undefined): void {
  if (denied !== undefined) throw notAuthorised(ACCESS_REFUSED);
}
