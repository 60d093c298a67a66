import type { Etcd3, IKeyValue, Lease } from 'etcd3';
import type { Broker } from '../broker';
import type { HashingAlgorithm } from '../auth/users';
import type { ApplyTo, PolicyKind } from '../core/policy';
import { isQueue } from '../core/exchanges/exchange';
import type { Queue } from '../core/queue/queue';
import type { VHost } from '../core/vhost';
import { argumentsTable, tableJson } from '../http/views/json';
import type { Logger } from '../observability/logger';
import { ClusterKeys, kindRank, MetaKind } from './keys';
import { createHash } from 'node:crypto';

/** One metadata entity as stored in etcd. `leased` ones vanish with their home node. */
export interface MetaEntry {
  value: string;
  leased: boolean;
}

export interface QueueRecord {
  durable: boolean;
  autoDelete: boolean;
  exclusive: boolean;
  arguments: Record<string, unknown>;
  home: string;
}

/** What the sync needs from the cluster node that owns it. */
export interface MetadataHost {
  readonly nodeName: string;
  /** The queue of `record` is homed elsewhere: install (or refresh) a proxy for it. */
  installRemoteQueue(vhost: VHost, name: string, record: QueueRecord): void;
  /** Which node owns a queue's messages (this node for plain local queues). */
  homeOf(q: Queue): string;
}

/** etcd refuses transactions with more operations than its --max-txn-ops (128 by default). */
const TXN_OPS = 100;

/**
 * Keeps this node's model (vhosts, users, permissions, policies, limits, exchanges, queues,
 * bindings) and etcd equal. Local changes are found by diffing a snapshot of the model with
 * `cache`, the last state seen in etcd, and written in transactions; remote changes arrive by
 * watch and are applied to the model and the cache together, so they never look like local
 * changes. Diffing whole snapshots is O(entities) per commit: simple and robust, fine for the
 * thousands of entities clusters usually hold (a per-entity change log would be the next step).
 */
export class MetadataSync {
  private readonly cache = new Map<string, string>();
  private dirty = true;
  private committing: Promise<void> | null = null;
  /** Set while applying etcd's state: model hooks then must not mark anything dirty. */
  applying = false;
  private lastUsersGeneration = -1;

  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: ClusterKeys,
    private readonly broker: Broker,
    private readonly host: MetadataHost,
    private readonly lease: () => Lease,
    private readonly log: Logger,
  ) {}

  markDirty(): void {
    if (!this.applying) this.dirty = true;
  }

  get isDirty(): boolean {
    return this.dirty || this.broker.users.generation !== this.lastUsersGeneration;
  }

  /** Writes local changes to etcd; resolves once everything changed before the call is there. */
  commit(): Promise<void> {
    if (this.committing !== null) {
      return this.committing.then(() => this.commit());
    }
    if (!this.isDirty) return Promise.resolve();
    const run = this.writeDiff().finally(() => {
      this.committing = null;
    });
    this.committing = run;
    return run;
  }

  private async writeDiff(): Promise<void> {
    this.dirty = false;
    this.lastUsersGeneration = this.broker.users.generation;
    const local = this.snapshot();
    const puts: Array<[string, MetaEntry]> = [];
    const deletes: string[] = [];
    for (const [key, entry] of local) if (this.cache.get(key) !== entry.value) puts.push([key, entry]);
    for (const key of this.cache.keys()) {
      if (local.has(key)) continue;
      deletes.push(key);
    }
    if (puts.length === 0 && deletes.length === 0) return;
    const rank = (key: string): number => kindRank(this.keys.parseMeta(key)?.kind ?? 'binding');
    puts.sort((a, b) => rank(a[0]) - rank(b[0]));
    deletes.sort((a, b) => rank(b) - rank(a));
    try {
      for (let i = 0; i < deletes.length; i += TXN_OPS) {
        const chunk = deletes.slice(i, i + TXN_OPS);
        await this.etcd.if(this.keys.secret, 'Version', '>', -1).then(...chunk.map((k) => this.etcd.delete().key(k))).commit();
        for (const k of chunk) this.cache.delete(k);
      }
      for (let i = 0; i < puts.length; i += TXN_OPS) {
        const chunk = puts.slice(i, i + TXN_OPS);
        const lease = this.lease();
        await this.etcd
          .if(this.keys.secret, 'Version', '>', -1)
          .then(...chunk.map(([k, e]) => (e.leased ? lease.put(k).value(e.value) : this.etcd.put(k).value(e.value))))
          .commit();
        for (const [k, e] of chunk) this.cache.set(k, e.value);
      }
    } catch (err) {
      // Retried by the next commit: the model keeps the change, etcd catches up when it is back.
      this.dirty = true;
      throw err;
    }
  }

  // ---- etcd → model --------------------------------------------------------------------

  /** Makes the model equal to etcd's metadata (startup, or after a watch gap). */
  loadAll(kvs: IKeyValue[]): void {
    const remote = new Map<string, string>();
    for (const kv of kvs) remote.set(kv.key.toString(), kv.value.toString());
    const local = this.snapshot();
    const ordered = [...remote.keys()].sort((a, b) => this.rankOf(a) - this.rankOf(b));
    this.applying = true;
    try {
      for (const key of ordered) {
        const value = remote.get(key)!;
        if (local.get(key)?.value !== value || this.needsProxy(key, value)) this.apply(key, value);
        this.cache.set(key, value);
      }
      const gone = [...local.keys()].filter((k) => !remote.has(k)).sort((a, b) => this.rankOf(b) - this.rankOf(a));
      for (const key of gone) this.apply(key, null);
    } finally {
      this.applying = false;
    }
    this.dirty = false;
    this.lastUsersGeneration = this.broker.users.generation;
  }

  /** True when etcd seeds an empty cluster from this node's model instead. */
  adoptLocal(): void {
    this.cache.clear();
    this.dirty = true;
  }

  /** A watch event: a put (value) or a delete (null). */
  applyEvent(key: string, value: string | null): void {
    if (value !== null && this.cache.get(key) === value) return;
    if (value === null && !this.cache.has(key)) return;
    if (value === null) this.cache.delete(key);
    else this.cache.set(key, value);
    this.applying = true;
    try {
      this.apply(key, value);
    } catch (err) {
      this.log.warn({ key, err: (err as Error).message }, 'could not apply a cluster metadata change');
    } finally {
      this.applying = false;
    }
    this.lastUsersGeneration = this.broker.users.generation;
  }

  private rankOf(key: string): number {
    return kindRank(this.keys.parseMeta(key)?.kind ?? 'binding');
  }

  /** A queue record homed elsewhere while the model holds a plain local queue of that name. */
  private needsProxy(key: string, value: string): boolean {
    const parsed = this.keys.parseMeta(key);
    if (parsed?.kind !== 'queue') return false;
    const record = JSON.parse(value) as QueueRecord;
    const q = this.broker.vhosts.get(parsed.parts[0]!)?.queues.get(parsed.parts[1]!);
    return q !== undefined && this.host.homeOf(q) !== record.home;
  }

  private apply(key: string, value: string | null): void {
    const parsed = this.keys.parseMeta(key);
    if (parsed === null) return;
    const b = this.broker;
    const [a = '', c = '', d = ''] = parsed.parts;
    const json = value === null ? null : (JSON.parse(value) as Record<string, unknown>);
    switch (parsed.kind) {
      case 'vhost':
        if (json === null) b.deleteVhost(a);
        else b.addVhost(a);
        return;
      case 'user':
        if (json === null) b.users.deleteUser(a);
        else {
          const u = json as { hash: string; algorithm: HashingAlgorithm; tags: string[]; limits: Record<string, number> };
          b.users.putUser(a, { passwordHash: u.hash, hashingAlgorithm: u.algorithm }, u.tags, u.limits);
        }
        return;
      case 'perm':
        if (json === null) b.users.clearPermission(a, c);
        else b.users.setPermission(a, c, String(json.configure), String(json.write), String(json.read));
        return;
      case 'topicperm':
        if (json === null) b.users.clearTopicPermissions(a, c, d);
        else b.users.setTopicPermission(a, c, d, String(json.write), String(json.read));
        return;
      case 'policy': {
        const kind = a as PolicyKind;
        if (json === null) b.policies.delete(kind, c, d);
        else b.policies.set(kind, { vhost: c, name: d, pattern: String(json.pattern), applyTo: json.applyTo as ApplyTo, priority: Number(json.priority), definition: json.definition as Record<string, unknown> });
        return;
      }
      case 'limits':
        b.limits.setVhostLimits(a, json === null ? {} : (json as Record<string, number>));
        return;
      case 'exchange': {
        const v = b.vhosts.get(a);
        if (v === undefined) return;
        const existing = v.exchanges.get(c);
        if (existing !== undefined) v.deleteExchange(c, false);
        if (json === null) return;
        v.declareExchange({ name: c, type: String(json.type), passive: false, durable: json.durable === true, autoDelete: json.autoDelete === true, internal: json.internal === true, arguments: argumentsTable(json.arguments as Record<string, unknown>) });
        if (existing !== undefined) this.restoreBindingsOf(v, c);
        return;
      }
      case 'queue': {
        const v = b.vhosts.get(a);
        if (v === undefined) return;
        const existing = v.queues.get(c);
        if (json === null) {
          existing?.delete('deleted');
          return;
        }
        const record = json as unknown as QueueRecord;
        if (record.home === this.host.nodeName) {
          if (existing === undefined || existing.remote !== null) {
            // Ours by etcd but not in the model (lost with a crash of a transient queue, or a
            // proxy left from before): a fresh empty queue takes the name.
            if (existing !== undefined) v.queues.delete(c), existing.delete('deleted');
            v.declareQueue({ name: c, passive: false, durable: record.durable, exclusiveOwner: null, autoDelete: record.autoDelete, arguments: argumentsTable(record.arguments) }, {}, true);
          }
        } else {
          this.host.installRemoteQueue(v, c, record);
        }
        this.restoreBindingsOf(v, c);
        return;
      }
      case 'binding': {
        const v = b.vhosts.get(a);
        if (v === undefined) return;
        if (json === null) {
          const bnd = this.findBinding(v, c);
          if (bnd !== undefined) v.unbind(bnd.source, bnd.destination, bnd.routingKey, bnd.arguments);
          return;
        }
        this.bindFromJson(v, json);
        return;
      }
    }
  }

  /** Bindings in the cache whose ends exist now (a queue or exchange was re-created). */
  private restoreBindingsOf(v: VHost, name: string): void {
    const prefix = this.keys.metaKey('binding', v.name) + '/';
    for (const [key, value] of this.cache) {
      if (!key.startsWith(prefix)) continue;
      const json = JSON.parse(value) as Record<string, unknown>;
      if (json.source === name || json.destination === name) this.bindFromJson(v, json);
    }
  }

  private bindFromJson(v: VHost, json: Record<string, unknown>): void {
    const source = v.exchanges.get(String(json.source));
    const dest = json.destinationType === 'queue' ? v.queues.get(String(json.destination)) : v.exchanges.get(String(json.destination));
    if (source === undefined || dest === undefined) return;
    try {
      v.bind(source, dest, String(json.routingKey), argumentsTable(json.arguments as Record<string, unknown>));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not apply a cluster binding');
    }
  }

  private findBinding(v: VHost, hash: string): import('../core/exchanges/exchange').Binding | undefined {
    for (const x of v.exchanges.values()) {
      for (const bnd of x.bindings) if (bindingHash(bindingJson(bnd)) === hash) return bnd;
    }
    return undefined;
  }

  // ---- model → snapshot ------------------------------------------------------------------

  snapshot(): Map<string, MetaEntry> {
    const b = this.broker;
    const k = this.keys;
    const out = new Map<string, MetaEntry>();
    const put = (key: string, value: unknown, leased = false): void => {
      out.set(key, { value: JSON.stringify(value), leased });
    };
    for (const u of b.users.users.values()) {
      put(k.metaKey('user', u.name), { hash: u.passwordHash, algorithm: u.hashingAlgorithm, tags: u.tags, limits: u.limits });
    }
    for (const p of b.users.listPermissions()) put(k.metaKey('perm', p.vhost, p.user), { configure: p.configure, write: p.write, read: p.read });
    for (const p of b.users.listTopicPermissions()) put(k.metaKey('topicperm', p.vhost, p.user, p.exchange), { write: p.write, read: p.read });
    for (const kind of ['policy', 'operator'] as const) {
      for (const p of b.policies.list(kind)) {
        put(k.metaKey('policy', kind, p.vhost, p.name), { pattern: p.pattern, applyTo: p.applyTo, priority: p.priority, definition: p.definition });
      }
    }
    for (const l of b.limits.listVhostLimits()) put(k.metaKey('limits', l.vhost), l.value);
    for (const v of b.vhosts.values()) {
      put(k.metaKey('vhost', v.name), {});
      for (const x of v.exchanges.values()) {
        if (x.name === '' || x.name.startsWith('amq.')) continue;
        put(k.metaKey('exchange', v.name, x.name), { type: x.type, durable: x.durable, autoDelete: x.autoDelete, internal: x.internal, arguments: tableJson(x.arguments) });
      }
      for (const q of v.queues.values()) {
        const home = this.host.homeOf(q);
        const record: QueueRecord = { durable: q.durable, autoDelete: q.autoDelete, exclusive: q.exclusiveOwner !== null, arguments: tableJson(q.arguments), home };
        put(k.metaKey('queue', v.name, q.name), record, this.leased(q));
      }
      for (const x of v.exchanges.values()) {
        if (x.name === '') continue;
        for (const bnd of x.bindings) {
          const json = bindingJson(bnd);
          const d = bnd.destination;
          put(k.metaKey('binding', v.name, bindingHash(json)), json, isQueue(d) && this.leased(d));
        }
      }
    }
    // Entities homed on another node are that node's to write: if they differ here, it is only
    // because this node has not seen the latest yet.
    for (const [key, entry] of out) {
      if (this.cache.has(key) && !this.writable(key)) out.set(key, { value: this.cache.get(key)!, leased: entry.leased });
    }
    return out;
  }

  /**
   * Whether the snapshot's value for `key` may overwrite etcd's. A queue's home changes only
   * through claim() (a promotion); otherwise a node whose model still shows a queue as its own
   * after another node took it over would take it back.
   */
  private writable(key: string): boolean {
    const parsed = this.keys.parseMeta(key);
    if (parsed?.kind !== 'queue') return true;
    const q = this.broker.vhosts.get(parsed.parts[0]!)?.queues.get(parsed.parts[1]!);
    if (q === undefined) return true;
    const cached = this.cache.get(key);
    if (cached === undefined) return q.remote === null;
    return (JSON.parse(cached) as QueueRecord).home === this.host.homeOf(q);
  }

  /**
   * Transient and exclusive queues live as long as their home node: their keys hang on its
   * lease. A mirrored transient queue outlives its leader (a mirror takes over), as in RabbitMQ.
   */
  private leased(q: Queue): boolean {
    if (q.exclusiveOwner !== null) return true;
    if (q.durable) return false;
    const mode = this.broker.policies.effective('policy', q.vhost, q.name, 'queue')?.definition['ha-mode'];
    return mode !== 'all' && mode !== 'exactly' && mode !== 'nodes';
  }

  /** This node took a queue over (promotion): its record names this node as home, now. */
  async claim(vhost: string, name: string): Promise<void> {
    const q = this.broker.vhosts.get(vhost)?.queues.get(name);
    if (q === undefined) return;
    const key = this.keys.metaKey('queue', vhost, name);
    const record: QueueRecord = { durable: q.durable, autoDelete: q.autoDelete, exclusive: q.exclusiveOwner !== null, arguments: tableJson(q.arguments), home: this.host.nodeName };
    const value = JSON.stringify(record);
    if (this.leased(q)) await this.lease().put(key).value(value);
    else await this.etcd.put(key).value(value);
    this.cache.set(key, value);
  }
}



function bindingJson(bnd: import('../core/exchanges/exchange').Binding): Record<string, unknown> {
  const d = bnd.destination;
  return { source: bnd.source.name, destination: d.name, destinationType: isQueue(d) ? 'queue' : 'exchange', routingKey: bnd.routingKey, arguments: tableJson(bnd.arguments) };
}

function bindingHash(json: Record<string, unknown>): string {
  return createHash('sha1').update(JSON.stringify([json.source, json.destinationType, json.destination, json.routingKey, json.arguments])).digest('hex');
}

export type { MetaKind };
