import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface Permission {
  configure: RegExp;
  write: RegExp;
  read: RegExp;
}

export interface User {
  name: string;
  /** RabbitMQ's rabbit_password_hashing_sha256 layout: base64(salt(4) ++ sha256(salt ++ password)). */
  passwordHash: string;
  tags: string[];
}

export type PermissionKind = 'configure' | 'write' | 'read';

/** Hashes a password the way RabbitMQ stores it, so definitions files move between the two. */
export function hashPassword(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

export function checkPassword(user: User, password: string): boolean {
  const stored = Buffer.from(user.passwordHash, 'base64');
  if (stored.length !== 36) return false;
  const candidate = Buffer.from(hashPassword(password, stored.subarray(0, 4)), 'base64');
  return timingSafeEqual(stored, candidate);
}

/** Users and their per-vhost permissions. */
export class UserStore {
  readonly users = new Map<string, User>();
  /** vhost → user → permission */
  readonly permissions = new Map<string, Map<string, Permission>>();

  addUser(name: string, password: string, tags: string[] = []): User {
    const user = { name, passwordHash: hashPassword(password), tags };
    this.users.set(name, user);
    return user;
  }

  authenticate(name: string, password: string): User | undefined {
    const user = this.users.get(name);
    if (user === undefined || !checkPassword(user, password)) return undefined;
    return user;
  }

  setPermission(vhost: string, user: string, configure: string, write: string, read: string): void {
    let byUser = this.permissions.get(vhost);
    if (byUser === undefined) this.permissions.set(vhost, (byUser = new Map()));
    byUser.set(user, { configure: anchored(configure), write: anchored(write), read: anchored(read) });
  }

  permission(vhost: string, user: string): Permission | undefined {
    return this.permissions.get(vhost)?.get(user);
  }
}

/** RabbitMQ matches permission patterns against the whole name with re:run, i.e. unanchored. */
function anchored(pattern: string): RegExp {
  return new RegExp(pattern);
}

/** Cached checks for one user in one vhost; '.*' (the common case) short-cuts the regex. */
export class AccessContext {
  private readonly allowAll: Record<PermissionKind, boolean>;

  constructor(
    readonly user: User,
    readonly vhost: string,
    private readonly perm: Permission,
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
}
