import { DEFAULT_HASHING, HashingAlgorithm, hashPassword, verifyPassword } from './passwords';

export { hashPassword } from './passwords';
export type { HashingAlgorithm } from './passwords';

/** The three regular expressions of a vhost permission, compiled, with the text they came from. */
export interface Permission {
  configure: RegExp;
  write: RegExp;
  read: RegExp;
  /** The patterns as the operator wrote them (management shows and exports these). */
  patterns: PermissionPatterns;
}

export interface PermissionPatterns {
  configure: string;
  write: string;
  read: string;
}

/** Topic permissions: routing-key patterns for one topic exchange (RabbitMQ 3.7+). */
export interface TopicPermission {
  exchange: string;
  write: string;
  read: string;
}

export interface User {
  name: string;
  /** RabbitMQ's layout: base64(salt(4) ++ H(salt ++ password)); '' means no password login. */
  passwordHash: string;
  hashingAlgorithm: HashingAlgorithm;
  tags: string[];
  limits: Record<string, number>;
}

export type PermissionKind = 'configure' | 'write' | 'read';

export function checkPassword(user: User, password: string): boolean {
  return verifyPassword(user.passwordHash, user.hashingAlgorithm ?? DEFAULT_HASHING, password);
}

/** How a user's password is given when the user is created or replaced. */
export type Credentials =
  | { password: string }
  | { passwordHash: string; hashingAlgorithm?: HashingAlgorithm }
  | { none: true };

/** A permission row as management lists it. */
export interface PermissionEntry extends PermissionPatterns {
  user: string;
  vhost: string;
}

export interface TopicPermissionEntry extends TopicPermission {
  user: string;
  vhost: string;
}

/**
 * Users, their vhost permissions and topic permissions. Insertion order is kept, so listings
 * are stable. Every change bumps `generation`, which lets a persistence layer notice changes
 * without hooks into each method.
 */
export class UserStore {
  readonly users = new Map<string, User>();
  /** vhost → user → permission */
  readonly permissions = new Map<string, Map<string, Permission>>();
  /** vhost → user → exchange → topic permission */
  private readonly topicPermissions = new Map<string, Map<string, Map<string, TopicPermission>>>();
  /** How many topic permissions exist; while 0, topic checks cost nothing on the publish path. */
  topicPermissionCount = 0;
  generation = 0;

  addUser(name: string, password: string, tags: string[] = []): User {
    return this.putUser(name, { password }, tags);
  }

  /** Creates or replaces a user (RabbitMQ's PUT /api/users/name: the password is replaced too). */
  putUser(name: string, credentials: Credentials, tags: string[], limits?: Record<string, number>): User {
    const existing = this.users.get(name);
    let passwordHash = '';
    let hashingAlgorithm: HashingAlgorithm = DEFAULT_HASHING;
    if ('password' in credentials) {
      passwordHash = hashPassword(credentials.password);
    } else if ('passwordHash' in credentials) {
      passwordHash = credentials.passwordHash;
      hashingAlgorithm = credentials.hashingAlgorithm ?? DEFAULT_HASHING;
    }
    const user: User = { name, passwordHash, hashingAlgorithm, tags: [...tags], limits: limits ?? existing?.limits ?? {} };
    this.users.set(name, user);
    this.generation++;
    return user;
  }

  /** Sets one of the user's limits (max-connections, max-channels); false when there is no such user. */
  setLimit(name: string, limit: string, value: number): boolean {
    const user = this.users.get(name);
    if (user === undefined) return false;
    user.limits = { ...user.limits, [limit]: value };
    this.generation++;
    return true;
  }

  /** Clears one of the user's limits; clearing one that is not set succeeds. */
  clearLimit(name: string, limit: string): boolean {
    const user = this.users.get(name);
    if (user === undefined) return false;
    if (limit in user.limits) {
      const rest = { ...user.limits };
      delete rest[limit];
      user.limits = rest;
      this.generation++;
    }
    return true;
  }

  /** Removes the user with every permission they had. */
  deleteUser(name: string): boolean {
    if (!this.users.delete(name)) return false;
    for (const byUser of this.permissions.values()) byUser.delete(name);
    for (const byUser of this.topicPermissions.values()) byUser.delete(name);
    this.countTopicPermissions();
    return true;
  }

  authenticate(name: string, password: string): User | undefined {
    const user = this.users.get(name);
    if (user === undefined || !checkPassword(user, password)) return undefined;
    return user;
  }

  /** Throws SyntaxError for a pattern that is not a valid regular expression. */
  setPermission(vhost: string, user: string, configure: string, write: string, read: string): void {
    const perm: Permission = {
      configure: compilePattern(configure),
      write: compilePattern(write),
      read: compilePattern(read),
      patterns: { configure, write, read },
    };
    let byUser = this.permissions.get(vhost);
    if (byUser === undefined) this.permissions.set(vhost, (byUser = new Map()));
    byUser.set(user, perm);
    this.generation++;
  }

  clearPermission(vhost: string, user: string): boolean {
    const removed = this.permissions.get(vhost)?.delete(user) ?? false;
    if (removed) this.generation++;
    return removed;
  }

  permission(vhost: string, user: string): Permission | undefined {
    return this.permissions.get(vhost)?.get(user);
  }

  /** Permission rows, optionally for one vhost and/or one user. */
  listPermissions(filter: { vhost?: string; user?: string } = {}): PermissionEntry[] {
    const out: PermissionEntry[] = [];
    for (const [vhost, byUser] of this.permissions) {
      if (filter.vhost !== undefined && vhost !== filter.vhost) continue;
      for (const [user, p] of byUser) {
        if (filter.user !== undefined && user !== filter.user) continue;
        out.push({ user, vhost, ...p.patterns });
      }
    }
    return out;
  }

  /** Vhosts in which the user has a permission entry. */
  vhostsOf(user: string): string[] {
    const out: string[] = [];
    for (const [vhost, byUser] of this.permissions) if (byUser.has(user)) out.push(vhost);
    return out;
  }

  /** Throws SyntaxError for a pattern that is not a valid regular expression. */
  setTopicPermission(vhost: string, user: string, exchange: string, write: string, read: string): void {
    compilePattern(expandTopicVariables(write, user, vhost));
    compilePattern(expandTopicVariables(read, user, vhost));
    let byUser = this.topicPermissions.get(vhost);
    if (byUser === undefined) this.topicPermissions.set(vhost, (byUser = new Map()));
    let byExchange = byUser.get(user);
    if (byExchange === undefined) byUser.set(user, (byExchange = new Map()));
    byExchange.set(exchange, { exchange, write, read });
    this.countTopicPermissions();
  }

  /** Clears one exchange's topic permission, or all of the user's in the vhost. */
  clearTopicPermissions(vhost: string, user: string, exchange?: string): boolean {
    const byUser = this.topicPermissions.get(vhost);
    const byExchange = byUser?.get(user);
    if (byUser === undefined || byExchange === undefined) return false;
    let removed: boolean;
    if (exchange === undefined) removed = byUser.delete(user);
    else {
      removed = byExchange.delete(exchange);
      if (byExchange.size === 0) byUser.delete(user);
    }
    if (removed) this.countTopicPermissions();
    return removed;
  }

  topicPermission(vhost: string, user: string, exchange: string): TopicPermission | undefined {
    return this.topicPermissions.get(vhost)?.get(user)?.get(exchange);
  }

  listTopicPermissions(filter: { vhost?: string; user?: string } = {}): TopicPermissionEntry[] {
    const out: TopicPermissionEntry[] = [];
    for (const [vhost, byUser] of this.topicPermissions) {
      if (filter.vhost !== undefined && vhost !== filter.vhost) continue;
      for (const [user, byExchange] of byUser) {
        if (filter.user !== undefined && user !== filter.user) continue;
        for (const t of byExchange.values()) out.push({ user, vhost, ...t });
      }
    }
    return out;
  }

  /** A vhost was deleted: its permissions go with it. */
  forgetVhost(vhost: string): void {
    this.permissions.delete(vhost);
    this.topicPermissions.delete(vhost);
    this.countTopicPermissions();
  }

  private countTopicPermissions(): void {
    let n = 0;
    for (const byUser of this.topicPermissions.values()) for (const byExchange of byUser.values()) n += byExchange.size;
    this.topicPermissionCount = n;
    this.generation++;
  }
}

/**
 * RabbitMQ matches permission patterns with re:run, unanchored; the empty pattern is its
 * shorthand for '^$' (match nothing but the empty name).
 */
export function compilePattern(pattern: string): RegExp {
  return new RegExp(pattern === '' ? '^$' : pattern);
}

/** Topic permission patterns may use {username} and {vhost}, expanded per check (RabbitMQ 3.7.?). */
function expandTopicVariables(pattern: string, user: string, vhost: string): string {
  if (!pattern.includes('{')) return pattern;
  return pattern.replace(/\{username\}/g, escapeRegExp(user)).replace(/\{vhost\}/g, escapeRegExp(vhost));
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Cached checks for one user in one vhost; '.*' (the common case) short-cuts the regex. */
export class AccessContext {
  private readonly allowAll: Record<PermissionKind, boolean>;

  constructor(
    readonly user: User,
    readonly vhost: string,
    private readonly perm: Permission,
    /** When given, topic permissions are checked too (see checkTopic). */
    private readonly store?: UserStore,
  ) {
    this.allowAll = {
      configure: perm.configure.source === '.*',
      write: perm.write.source === '.*',
      read: perm.read.source === '.*',
    };
  }

  /** RabbitMQ's resource text: "access to queue 'q' in vhost '/' refused for user 'u'". */
  check(kind: PermissionKind, resourceType: 'queue' | 'exchange', name: string): string | undefined {
    if (this.allowAll[kind]) return undefined;
    // The default exchange is named "amq.default" for permission purposes, as in RabbitMQ.
    const subject = resourceType === 'exchange' && name === '' ? 'amq.default' : name;
    if (this.perm[kind].test(subject)) return undefined;
    return `access to ${resourceType} '${name}' in vhost '${this.vhost}' refused for user '${this.user.name}'`;
  }

  /**
   * Topic authorisation for a topic exchange: `write` on publish, `read` on queue.bind, with
   * the routing key matched against the user's pattern for that exchange. No topic permission
   * for the exchange means allowed, as in RabbitMQ.
   */
  checkTopic(kind: 'write' | 'read', exchange: string, routingKey: string): string | undefined {
    if (this.store === undefined || this.store.topicPermissionCount === 0) return undefined;
    const t = this.store.topicPermission(this.vhost, this.user.name, exchange);
    if (t === undefined) return undefined;
    const re = compilePattern(expandTopicVariables(t[kind], this.user.name, this.vhost));
    if (re.test(routingKey)) return undefined;
    return `access to topic '${routingKey}' in exchange '${exchange}' in vhost '${this.vhost}' refused for user '${this.user.name}'`;
  }
}
