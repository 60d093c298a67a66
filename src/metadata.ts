import type { Broker } from './broker';
import { isQueue } from './core/exchanges/exchange';
import type { ApplyTo } from './core/policy';
import type { HashingAlgorithm } from './auth/users';
import { argumentsTable, tableJson } from './http/views/json';
import { Definitions, DefinitionsStore, JsonObject, emptyDefinitions } from './store/definitions-store';

/**
 * Durable metadata (vhosts, users with their limits, permissions, policies, vhost limits,
 * durable exchanges and queues, and bindings between durable ends) kept in the definitions
 * file. Changes mark it dirty; it is saved before the connection that made them writes its
 * reply, so a declare-ok or a confirm never reaches a client ahead of the definitions it
 * depends on.
 */
export class DurableMetadata {
  private dirty = false;
  private usersGeneration = -1;

  constructor(
    private readonly broker: Broker,
    private readonly file: DefinitionsStore,
  ) {}

  markDirty(): void {
    this.dirty = true;
  }

  /** Cheap when nothing changed; called once per connection flush. */
  saveIfChanged(): void {
    const generation = this.broker.users.generation;
    if (!this.dirty && generation === this.usersGeneration) return;
    this.dirty = false;
    this.usersGeneration = generation;
    this.file.save(this.snapshot());
  }

  snapshot(): Definitions {
    const b = this.broker;
    const defs = emptyDefinitions();
    defs.product_name = 'Warren';
    defs.product_version = b.version;
    for (const u of b.users.users.values()) {
      defs.users.push({ name: u.name, password_hash: u.passwordHash, hashing_algorithm: u.hashingAlgorithm, tags: u.tags.join(','), limits: u.limits } as never);
    }
    for (const p of b.users.listPermissions()) defs.permissions.push(p as never);
    for (const p of b.users.listTopicPermissions()) defs.topic_permissions.push(p as never);
    for (const kind of ['policy', 'operator'] as const) {
      for (const p of b.policies.list(kind)) {
        const row = { vhost: p.vhost, name: p.name, pattern: p.pattern, 'apply-to': p.applyTo, definition: p.definition as JsonObject, priority: p.priority };
        if (kind === 'policy') defs.policies.push(row);
        else ((defs as unknown as { operator_policies: unknown[] }).operator_policies ??= []).push(row);
      }
    }
    // RabbitMQ keeps vhost limits as the runtime parameter vhost-limits/limits of the vhost.
    for (const l of b.limits.listVhostLimits()) defs.parameters.push({ vhost: l.vhost, component: 'vhost-limits', name: 'limits', value: l.value });
    for (const v of b.vhosts.values()) {
      defs.vhosts.push({ name: v.name } as never);
      for (const x of v.exchanges.values()) {
        if (!x.durable || x.name === '' || x.name.startsWith('amq.')) continue;
        defs.exchanges.push({ name: x.name, vhost: v.name, type: x.type, durable: true, auto_delete: x.autoDelete, internal: x.internal, arguments: tableJson(x.arguments) as JsonObject });
      }
      for (const q of v.queues.values()) {
        if (!q.durable || q.exclusiveOwner !== null) continue;
        defs.queues.push({ name: q.name, vhost: v.name, durable: true, auto_delete: q.autoDelete, arguments: tableJson(q.arguments) as JsonObject });
      }
      for (const x of v.exchanges.values()) {
        if (!x.durable) continue;
        for (const bnd of x.bindings) {
          const d = bnd.destination;
          if (!d.durable || (isQueue(d) && d.exclusiveOwner !== null)) continue;
          defs.bindings.push({
            source: x.name,
            vhost: v.name,
            destination: d.name,
            destination_type: isQueue(d) ? 'queue' : 'exchange',
            routing_key: bnd.routingKey,
            arguments: tableJson(bnd.arguments) as JsonObject,
          });
        }
      }
    }
    return defs;
  }

  /** Rebuilds the model from the file at startup. Returns false on a first start. */
  restore(): boolean {
    const defs = this.file.load();
    if (defs === null) return false;
    const b = this.broker;
    for (const v of defs.vhosts) b.addVhost(v.name);
    for (const u of defs.users as unknown as Array<{ name: string; password_hash: string; hashing_algorithm: HashingAlgorithm; tags: string | string[]; limits?: Record<string, number> }>) {
      const tags = Array.isArray(u.tags) ? u.tags : u.tags.split(',').filter((t) => t !== '');
      b.users.putUser(u.name, { passwordHash: u.password_hash, hashingAlgorithm: u.hashing_algorithm }, tags, u.limits);
    }
    for (const p of defs.permissions) b.users.setPermission(p.vhost, p.user, p.configure, p.write, p.read);
    for (const p of defs.topic_permissions) b.users.setTopicPermission(p.vhost, p.user, p.exchange, p.write, p.read);
    const operator = (defs as unknown as { operator_policies?: Definitions['policies'] }).operator_policies ?? [];
    for (const [kind, list] of [['policy', defs.policies], ['operator', operator]] as const) {
      for (const p of list) {
        b.policies.set(kind, { vhost: p.vhost, name: p.name, pattern: p.pattern, applyTo: p['apply-to'] as ApplyTo, priority: p.priority, definition: p.definition });
      }
    }
    for (const p of defs.parameters) {
      if (p.component === 'vhost-limits' && typeof p.value === 'object' && p.value !== null && !Array.isArray(p.value)) {
        b.limits.setVhostLimits(p.vhost, p.value as Record<string, number>);
      }
    }
    const owner = {};
    for (const x of defs.exchanges) {
      b.addVhost(x.vhost).declareExchange({ name: x.name, type: x.type, passive: false, durable: true, autoDelete: x.auto_delete, internal: x.internal, arguments: argumentsTable(x.arguments) });
    }
    for (const q of defs.queues) {
      b.addVhost(q.vhost).declareQueue({ name: q.name, passive: false, durable: true, exclusiveOwner: null, autoDelete: q.auto_delete, arguments: argumentsTable(q.arguments) }, owner, true);
    }
    for (const bd of defs.bindings) {
      const v = b.addVhost(bd.vhost);
      const source = v.exchanges.get(bd.source);
      const dest = bd.destination_type === 'queue' ? v.queues.get(bd.destination) : v.exchanges.get(bd.destination);
      if (source === undefined || dest === undefined) continue;
      v.bind(source, dest, bd.routing_key, argumentsTable(bd.arguments));
    }
    this.dirty = false;
    this.usersGeneration = b.users.generation;
    return true;
  }
}
