import type { User, UserStore } from '../auth/users';
import { AmqpError } from '../protocol/errors';
import type { VHost } from './vhost';

/**
 * RabbitMQ's resource limits (3.10): per vhost max-connections and max-queues, per user
 * max-connections and max-channels. A negative value means no limit, 0 allows none. Limits are
 * durable metadata: vhost limits are the runtime parameter "vhost-limits"/"limits" of the vhost
 * in a definitions file, user limits the user record's `limits` field.
 */
export const VHOST_LIMITS = ['max-connections', 'max-queues'] as const;
export const USER_LIMITS = ['max-connections', 'max-channels'] as const;

export type Limits = Record<string, number>;

/**
 * Limits of each vhost, keyed by the VHost object itself: a deleted vhost takes its limits with
 * it and one created again under the same name starts without any, as in RabbitMQ (deleting a
 * vhost clears its runtime parameters). VHost objects belong to one broker, so nothing is
 * shared between brokers in one process.
 */
const vhostLimits = new WeakMap<VHost, Limits>();

/** The limit in force, or undefined when none (unset or negative). */
function effective(limits: Limits | undefined, name: string): number | undefined {
  const v = limits?.[name];
  return v === undefined || v < 0 ? undefined : v;
}

/** RabbitMQ's refusal when a queue would be created over the vhost's max-queues (406). */
export function checkQueueLimit(vhost: VHost, queueName: string): void {
  const limit = effective(vhostLimits.get(vhost), 'max-queues');
  if (limit !== undefined && vhost.queues.size >= limit) {
    throw new AmqpError('PRECONDITION_FAILED', `cannot declare queue '${queueName}': queue limit in vhost '${vhost.name}' (${limit}) is reached`);
  }
}

/** What the checks need to know about an open connection (src/amqp/connection.ts). */
export interface TrackedConnection {
  readonly isOpen: boolean;
  readonly vhost: VHost | null;
  readonly userName: string;
  readonly channelCount: number;
}

/**
 * The broker's limits: vhost limits set and read by vhost name, user limits kept on the user
 * records, and the checks connection.open and channel.open make. Counts come from the live
 * connections, so nothing has to be untracked when a connection or channel goes away.
 */
export class LimitStore {
  /** Called after every change (the broker marks durable metadata dirty). */
  onChange: () => void = () => {};

  constructor(
    private readonly vhosts: ReadonlyMap<string, VHost>,
    private readonly users: UserStore,
    private readonly connections: Iterable<TrackedConnection>,
  ) {}

  /** The vhost's limits (a copy); undefined for a vhost that does not exist. */
  vhost(name: string): Limits | undefined {
    const v = this.vhosts.get(name);
    if (v === undefined) return undefined;
    return { ...(vhostLimits.get(v) ?? {}) };
  }

  /** Sets one limit of an existing vhost; false when the vhost does not exist. */
  setVhostLimit(vhost: string, name: string, value: number): boolean {
    const v = this.vhosts.get(vhost);
    if (v === undefined) return false;
    vhostLimits.set(v, { ...(vhostLimits.get(v) ?? {}), [name]: value });
    this.onChange();
    return true;
  }

  /** Replaces all limits of an existing vhost (definitions import, restore). */
  setVhostLimits(vhost: string, limits: Limits): boolean {
    const v = this.vhosts.get(vhost);
    if (v === undefined) return false;
    if (Object.keys(limits).length === 0) vhostLimits.delete(v);
    else vhostLimits.set(v, { ...limits });
    this.onChange();
    return true;
  }

  /** Clears one limit; clearing one that is not set succeeds. False when the vhost does not exist. */
  clearVhostLimit(vhost: string, name: string): boolean {
    const v = this.vhosts.get(vhost);
    if (v === undefined) return false;
    const current = vhostLimits.get(v);
    if (current !== undefined && name in current) {
      const rest = { ...current };
      delete rest[name];
      if (Object.keys(rest).length === 0) vhostLimits.delete(v);
      else vhostLimits.set(v, rest);
      this.onChange();
    }
    return true;
  }

  /** Vhosts that have limits, in vhost order. */
  listVhostLimits(): Array<{ vhost: string; value: Limits }> {
    const out: Array<{ vhost: string; value: Limits }> = [];
    for (const v of this.vhosts.values()) {
      const l = vhostLimits.get(v);
      if (l !== undefined && Object.keys(l).length !== 0) out.push({ vhost: v.name, value: { ...l } });
    }
    return out;
  }

  /** Users that have limits, in user order. */
  listUserLimits(): Array<{ user: string; value: Limits }> {
    const out: Array<{ user: string; value: Limits }> = [];
    for (const u of this.users.users.values()) {
      if (Object.keys(u.limits).length !== 0) out.push({ user: u.name, value: { ...u.limits } });
    }
    return out;
  }

  // ---- checks -----------------------------------------------------------------------------

  /**
   * connection.open, after the vhost was found and before the permission check, in RabbitMQ's
   * order: the vhost's connection limit, then the user's. Both are 530 NOT_ALLOWED.
   */
  checkConnectionOpen(vhost: VHost, user: User): void {
    const vhostLimit = effective(vhostLimits.get(vhost), 'max-connections');
    if (vhostLimit !== undefined && this.count((c) => c.vhost === vhost) >= vhostLimit) {
      throw new AmqpError('NOT_ALLOWED', `access to vhost '${vhost.name}' refused for user '${user.name}': connection limit (${vhostLimit}) is reached`, 10, 40);
    }
    const userLimit = effective(this.userLimits(user), 'max-connections');
    if (userLimit !== undefined && this.count((c) => c.userName === user.name) >= userLimit) {
      throw new AmqpError('NOT_ALLOWED', `connection refused for user '${user.name}': user connection limit (${userLimit}) is reached`, 10, 40);
    }
  }

  /** channel.open: the user's max-channels over all their connections (530, as RabbitMQ: class and method 0). */
  checkChannelOpen(user: User): void {
    const limit = effective(this.userLimits(user), 'max-channels');
    if (limit === undefined) return;
    let channels = 0;
    for (const c of this.connections) if (c.isOpen && c.userName === user.name) channels += c.channelCount;
    if (channels >= limit) {
      throw new AmqpError('NOT_ALLOWED', `number of channels opened for user '${user.name}' has reached the maximum allowed user limit of (${limit})`, 0, 0);
    }
  }

  /** The user's current record may have replaced the one the connection logged in with. */
  private userLimits(user: User): Limits {
    return (this.users.users.get(user.name) ?? user).limits;
  }

  private count(pred: (c: TrackedConnection) => boolean): number {
    let n = 0;
    for (const c of this.connections) if (c.isOpen && pred(c)) n++;
    return n;
  }
}
