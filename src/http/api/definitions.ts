import { isHashingAlgorithm, isValidHash } from '../../auth/passwords';
import type { Credentials } from '../../auth/users';
import { isQueue } from '../../core/exchanges/exchange';
import { isExchangeType } from '../../core/exchanges/registry';
import type { Policy, PolicyKind } from '../../core/policy';
import { validateQueueArguments } from '../../core/queue/arguments';
import type { VHost } from '../../core/vhost';
import { AmqpError } from '../../protocol/errors';
import type { FieldTable } from '../../protocol/field-table';
import { requireAdministrator, vhostFor } from '../auth';
import { Body, parseTags } from '../body';
import { amqpReason, badRequest } from '../errors';
import { Handler, Management, NO_CONTENT } from '../context';
import type { Router } from '../router';
import { argumentsTable, tableJson } from '../views/json';
import { API_COMPATIBILITY_VERSION } from '../views/node';
import { userView } from '../views/vhost';
import { policyFromBody } from './policies';
import { limitsProblem } from './limits';
import { USER_LIMITS, VHOST_LIMITS } from '../../core/limits';
import { createVhost } from './vhosts';

// ---- export --------------------------------------------------------------------------------

function queuesOf(v: VHost, withVhost: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const q of v.queues.values()) {
    if (q.exclusiveOwner !== null) continue; // exclusive queues die with their connection
    out.push({ name: q.name, ...(withVhost ? { vhost: v.name } : {}), durable: q.durable, auto_delete: q.autoDelete, arguments: tableJson(q.arguments) });
  }
  return out;
}

function exchangesOf(v: VHost, withVhost: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const x of v.exchanges.values()) {
    if (x.name === '' || x.name.startsWith('amq.')) continue; // predeclared in every vhost
    out.push({
      name: x.name,
      ...(withVhost ? { vhost: v.name } : {}),
      type: x.type,
      durable: x.durable,
      auto_delete: x.autoDelete,
      internal: x.internal,
      arguments: tableJson(x.arguments),
    });
  }
  return out;
}

function bindingsOf(v: VHost, withVhost: boolean): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const x of v.exchanges.values()) {
    for (const b of x.bindings) {
      if (isQueue(b.destination) && b.destination.exclusiveOwner !== null) continue;
      out.push({
        source: x.name,
        ...(withVhost ? { vhost: v.name } : {}),
        destination: b.destination.name,
        destination_type: isQueue(b.destination) ? 'queue' : 'exchange',
        routing_key: b.routingKey,
        arguments: tableJson(b.arguments),
      });
    }
  }
  return out;
}

function policiesOf(m: Management, kind: PolicyKind, vhost: string | undefined, withVhost: boolean): Record<string, unknown>[] {
  return m.broker.policies.list(kind, vhost).map((p: Policy) => ({
    ...(withVhost ? { vhost: p.vhost } : {}),
    name: p.name,
    pattern: p.pattern,
    'apply-to': p.applyTo,
    definition: p.definition,
    priority: p.priority,
  }));
}

/** RabbitMQ exports operator policies as runtime parameters of the component "operator_policy". */
function operatorPolicyParameters(m: Management, vhost: string | undefined, withVhost: boolean): Record<string, unknown>[] {
  return m.broker.policies.list('operator', vhost).map((p: Policy) => ({
    value: { pattern: p.pattern, definition: p.definition, priority: p.priority, 'apply-to': p.applyTo },
    ...(withVhost ? { vhost: p.vhost } : {}),
    component: 'operator_policy',
    name: p.name,
  }));
}

/** RabbitMQ exports vhost limits as the runtime parameter vhost-limits/limits of each vhost. */
function vhostLimitParameters(m: Management, vhost: string | undefined, withVhost: boolean): Record<string, unknown>[] {
  return m.broker.limits
    .listVhostLimits()
    .filter((l) => vhost === undefined || l.vhost === vhost)
    .map((l) => ({ value: l.value, ...(withVhost ? { vhost: l.vhost } : {}), component: 'vhost-limits', name: 'limits' }));
}

/** The whole broker in RabbitMQ's definitions format (what `rabbitmqctl export_definitions` writes). */
export function exportDefinitions(m: Management): Record<string, unknown> {
  const users = m.broker.users;
  const vhosts = [...m.broker.vhosts.values()];
  return {
    rabbit_version: API_COMPATIBILITY_VERSION,
    rabbitmq_version: API_COMPATIBILITY_VERSION,
    product_name: 'Warren',
    product_version: m.broker.version,
    users: [...users.users.values()].map(userView),
    vhosts: vhosts.map((v) => {
      const meta = m.metadata(v.name);
      const out: Record<string, unknown> = { name: v.name };
      if (meta.description !== '') out.description = meta.description;
      if (meta.tags.length !== 0) out.tags = meta.tags;
      if (meta.defaultQueueType !== 'undefined') out.default_queue_type = meta.defaultQueueType;
      return out;
    }),
    permissions: users.listPermissions(),
    topic_permissions: users.listTopicPermissions(),
    parameters: [...vhostLimitParameters(m, undefined, true), ...operatorPolicyParameters(m, undefined, true)],
    global_parameters: [{ name: 'cluster_name', value: m.broker.config.clusterName }, ...[...m.globalParameters].map(([name, value]) => ({ name, value }))],
    policies: policiesOf(m, 'policy', undefined, true),
    queues: vhosts.flatMap((v) => queuesOf(v, true)),
    exchanges: vhosts.flatMap((v) => exchangesOf(v, true)),
    bindings: vhosts.flatMap((v) => bindingsOf(v, true)),
  };
}

/** One vhost's objects, without vhost fields, as GET /api/definitions/vhost gives them. */
export function exportVhostDefinitions(m: Management, v: VHost): Record<string, unknown> {
  return {
    rabbit_version: API_COMPATIBILITY_VERSION,
    rabbitmq_version: API_COMPATIBILITY_VERSION,
    parameters: [...vhostLimitParameters(m, v.name, false), ...operatorPolicyParameters(m, v.name, false)],
    policies: policiesOf(m, 'policy', v.name, false),
    queues: queuesOf(v, false),
    exchanges: exchangesOf(v, false),
    bindings: bindingsOf(v, false),
  };
}

// ---- import --------------------------------------------------------------------------------

interface UserDef {
  name: string;
  credentials: Credentials;
  tags: string[];
  limits: Record<string, number> | undefined;
}

interface PermissionDef {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}

interface TopicPermissionDef {
  user: string;
  vhost: string;
  exchange: string;
  write: string;
  read: string;
}

interface QueueDef {
  name: string;
  vhost: string;
  durable: boolean;
  autoDelete: boolean;
  arguments: FieldTable;
}

interface ExchangeDef {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  autoDelete: boolean;
  internal: boolean;
  arguments: FieldTable;
}

interface BindingDef {
  source: string;
  vhost: string;
  destination: string;
  destinationType: 'queue' | 'exchange';
  routingKey: string;
  arguments: FieldTable;
}

/** A definitions file parsed and checked in full before anything is applied. */
interface Plan {
  users: UserDef[];
  vhosts: Array<{ name: string; description?: string; tags?: string[]; defaultQueueType?: string }>;
  permissions: PermissionDef[];
  topicPermissions: TopicPermissionDef[];
  policies: Array<{ kind: PolicyKind; policy: Policy }>;
  vhostLimits: Array<{ vhost: string; limits: Record<string, number> }>;
  globalParameters: Array<{ name: string; value: unknown }>;
  queues: QueueDef[];
  exchanges: ExchangeDef[];
  bindings: BindingDef[];
  skipped: string[];
}

function section(defs: Record<string, unknown>, key: string): Body[] {
  const v = defs[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw badRequest(`definitions: '${key}' must be a list`);
  return v.map((item, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw badRequest(`definitions: ${key}[${i}] must be an object`);
    return new Body(item as Record<string, unknown>);
  });
}

function regexOk(patterns: string[]): void {
  for (const p of patterns) {
    try {
      new RegExp(p);
    } catch {
      throw badRequest(['invalid_regexp', p]);
    }
  }
}

/**
 * Parses and validates a definitions document. `onlyVhost` is set for the per-vhost import,
 * where objects carry no vhost field (and one given is overridden).
 */
function planImport(m: Management, defs: Record<string, unknown>, onlyVhost: string | undefined): Plan {
  const plan: Plan = { users: [], vhosts: [], permissions: [], topicPermissions: [], policies: [], vhostLimits: [], globalParameters: [], queues: [], exchanges: [], bindings: [], skipped: [] };
  const broker = m.broker;
  const vhostOf = (b: Body): string => onlyVhost ?? b.require('vhost').str('vhost', '');

  if (onlyVhost === undefined) {
    for (const b of section(defs, 'users')) {
      b.require('name');
      const name = b.str('name', '');
      let credentials: Credentials = { none: true };
      if (b.has('password_hash')) {
        const hash = b.str('password_hash', '');
        const algorithm = b.str('hashing_algorithm', 'rabbit_password_hashing_sha256');
        if (!isHashingAlgorithm(algorithm)) throw badRequest(`user '${name}': unknown hashing algorithm '${algorithm}'`);
        if (!isValidHash(hash, algorithm)) throw badRequest(`user '${name}': invalid password hash`);
        credentials = { passwordHash: hash, hashingAlgorithm: algorithm };
      } else if (b.has('password')) {
        credentials = { password: b.str('password', '') };
      }
      const tags = b.has('tags') ? parseTags(b.raw.tags) : [];
      const limits = b.object('limits') as Record<string, number> | undefined;
      const limitsBad = limits === undefined ? undefined : limitsProblem(limits, USER_LIMITS, 'user-limits');
      if (limitsBad !== undefined) throw badRequest(`user '${name}': ${limitsBad}`);
      plan.users.push({ name, credentials, tags, limits });
    }
    for (const b of section(defs, 'vhosts')) {
      b.require('name');
      const name = b.str('name', '');
      if (name === '') throw badRequest('vhost name must not be empty');
      const meta = b.object('metadata');
      const description = b.str('description') ?? (typeof meta?.description === 'string' ? meta.description : undefined);
      const tagsRaw = b.has('tags') ? b.raw.tags : meta?.tags;
      const tags = tagsRaw === undefined ? undefined : parseTags(tagsRaw);
      plan.vhosts.push({ name, description, tags, defaultQueueType: b.str('default_queue_type') });
    }
  }
  const knownVhosts = new Set([...broker.vhosts.keys(), ...plan.vhosts.map((v) => v.name)]);
  const knownUsers = new Set([...broker.users.users.keys(), ...plan.users.map((u) => u.name)]);
  const needVhost = (name: string): void => {
    if (!knownVhosts.has(name)) throw badRequest(['no_such_vhost', name]);
  };

  if (onlyVhost === undefined) {
    for (const b of section(defs, 'permissions')) {
      b.require('user', 'vhost', 'configure', 'write', 'read');
      const p = { user: b.str('user', ''), vhost: b.str('vhost', ''), configure: b.str('configure', ''), write: b.str('write', ''), read: b.str('read', '') };
      needVhost(p.vhost);
      if (!knownUsers.has(p.user)) throw badRequest(['no_such_user', p.user]);
      regexOk([p.configure, p.write, p.read]);
      plan.permissions.push(p);
    }
    for (const b of section(defs, 'topic_permissions')) {
      b.require('user', 'vhost', 'exchange', 'write', 'read');
      const p = { user: b.str('user', ''), vhost: b.str('vhost', ''), exchange: b.str('exchange', ''), write: b.str('write', ''), read: b.str('read', '') };
      needVhost(p.vhost);
      if (!knownUsers.has(p.user)) throw badRequest(['no_such_user', p.user]);
      regexOk([p.write, p.read]);
      plan.topicPermissions.push(p);
    }
    for (const b of section(defs, 'global_parameters')) {
      b.require('name');
      plan.globalParameters.push({ name: b.str('name', ''), value: b.raw.value });
    }
  }
  for (const b of section(defs, 'parameters')) {
    const component = b.require('component', 'name').str('component', '');
    const name = b.str('name', '');
    if (component === 'vhost-limits' && name === 'limits') {
      const vhost = vhostOf(b);
      needVhost(vhost);
      const value = b.require('value').raw.value;
      // RabbitMQ writes a vhost whose limits were all cleared as an empty list.
      const limits = Array.isArray(value) && value.length === 0 ? {} : value;
      if (typeof limits !== 'object' || limits === null || Array.isArray(limits)) throw badRequest(`Validation failed\n\nvhost limits must be an object\n (${vhost}/vhost-limits/limits)`);
      const problem = limitsProblem(limits as Record<string, unknown>, VHOST_LIMITS, 'limits');
      if (problem !== undefined) throw badRequest(`Validation failed\n\n${problem}\n (${vhost}/vhost-limits/limits)`);
      plan.vhostLimits.push({ vhost, limits: limits as Record<string, number> });
      continue;
    }
    if (component !== 'operator_policy') {
      plan.skipped.push(`parameter ${component}/${name} (no such component)`);
      continue;
    }
    const vhost = vhostOf(b);
    needVhost(vhost);
    const value = b.require('value').object('value') ?? {};
    plan.policies.push({ kind: 'operator', policy: policyFromBody('operator', vhost, name, new Body(value)) });
  }
  for (const b of section(defs, 'policies')) {
    const vhost = vhostOf(b);
    needVhost(vhost);
    const name = b.require('name').str('name', '');
    plan.policies.push({ kind: 'policy', policy: policyFromBody('policy', vhost, name, b) });
  }
  for (const b of section(defs, 'queues')) {
    const vhost = vhostOf(b);
    needVhost(vhost);
    const name = b.require('name').str('name', '');
    if (name === '' || Buffer.byteLength(name) > 255) throw badRequest(`invalid queue name '${name}'`);
    const q: QueueDef = { name, vhost, durable: b.bool('durable', true), autoDelete: b.bool('auto_delete', false), arguments: argumentsTable(b.object('arguments')) };
    try {
      validateQueueArguments(name, vhost, q.arguments);
    } catch (err) {
      if (err instanceof AmqpError) throw badRequest(amqpReason(err));
      throw err;
    }
    plan.queues.push(q);
  }
  for (const b of section(defs, 'exchanges')) {
    const vhost = vhostOf(b);
    needVhost(vhost);
    b.require('name', 'type');
    const x: ExchangeDef = {
      name: b.str('name', ''),
      vhost,
      type: b.str('type', ''),
      durable: b.bool('durable', true),
      autoDelete: b.bool('auto_delete', false),
      internal: b.bool('internal', false),
      arguments: argumentsTable(b.object('arguments')),
    };
    if (!isExchangeType(x.type)) throw badRequest(`unknown exchange type '${x.type}'`);
    if (x.name === '' || Buffer.byteLength(x.name) > 255) throw badRequest(`invalid exchange name '${x.name}'`);
    plan.exchanges.push(x);
  }
  for (const b of section(defs, 'bindings')) {
    const vhost = vhostOf(b);
    needVhost(vhost);
    b.require('source', 'destination', 'destination_type');
    const type = b.str('destination_type', '');
    if (type !== 'queue' && type !== 'exchange') throw badRequest(`invalid destination_type '${type}'`);
    plan.bindings.push({
      source: b.str('source', ''),
      vhost,
      destination: b.str('destination', ''),
      destinationType: type,
      routingKey: b.str('routing_key', ''),
      arguments: argumentsTable(b.object('arguments')),
    });
  }
  checkQueueLimits(m, plan);
  return plan;
}

/**
 * RabbitMQ refuses a whole import whose new queues would take a vhost over its current
 * max-queues, before anything is applied.
 */
function checkQueueLimits(m: Management, plan: Plan): void {
  const added = new Map<string, Set<string>>();
  for (const q of plan.queues) {
    const v = m.broker.vhosts.get(q.vhost);
    if (v === undefined || v.queues.has(q.name)) continue;
    let names = added.get(q.vhost);
    if (names === undefined) added.set(q.vhost, (names = new Set()));
    names.add(q.name);
  }
  for (const [vhost, names] of added) {
    const limit = m.broker.limits.vhost(vhost)?.['max-queues'];
    const count = m.broker.vhosts.get(vhost)!.queues.size;
    if (limit === undefined || limit < 0 || count + names.size <= limit) continue;
    throw badRequest(
      `Adding ${names.size} queue(s) to virtual host "${vhost}" would exceed the limit of ${limit} queue(s).\n\nThis virtual host currently has ${count} queue(s) defined.\n\nImport aborted!`,
    );
  }
}

/**
 * Applies a checked plan in RabbitMQ's order: users, vhosts, permissions, parameters,
 * policies, queues, exchanges, bindings. As in RabbitMQ, objects that already exist with
 * other properties are kept as they are, and bindings whose ends do not exist are skipped.
 */
function applyPlan(m: Management, plan: Plan, actingUser: string): void {
  const broker = m.broker;
  for (const u of plan.users) broker.users.putUser(u.name, u.credentials, u.tags, u.limits);
  for (const v of plan.vhosts) {
    if (!broker.vhosts.has(v.name)) createVhost(m, v.name, undefined);
    const meta = m.metadata(v.name);
    m.vhostMetadata.set(v.name, {
      description: v.description ?? meta.description,
      tags: v.tags ?? meta.tags,
      defaultQueueType: v.defaultQueueType ?? meta.defaultQueueType,
      tracing: meta.tracing,
    });
  }
  for (const p of plan.permissions) broker.users.setPermission(p.vhost, p.user, p.configure, p.write, p.read);
  for (const t of plan.topicPermissions) broker.users.setTopicPermission(t.vhost, t.user, t.exchange, t.write, t.read);
  for (const l of plan.vhostLimits) broker.limits.setVhostLimits(l.vhost, l.limits);
  for (const g of plan.globalParameters) {
    if (g.name === 'cluster_name' && typeof g.value === 'string' && g.value !== '') broker.config.clusterName = g.value;
    else if (g.name !== 'cluster_name') m.globalParameters.set(g.name, g.value);
  }
  for (const { kind, policy } of plan.policies) broker.policies.set(kind, policy);
  const skip = (what: string, err: unknown): void => {
    plan.skipped.push(`${what}: ${err instanceof AmqpError ? amqpReason(err) : String(err)}`);
  };
  for (const q of plan.queues) {
    const v = broker.vhosts.get(q.vhost)!;
    try {
      v.declareQueue({ name: q.name, passive: false, durable: q.durable, autoDelete: q.autoDelete, exclusiveOwner: null, arguments: q.arguments }, m.owner);
    } catch (err) {
      skip(`queue '${q.name}' in vhost '${q.vhost}'`, err);
    }
  }
  for (const x of plan.exchanges) {
    const v = broker.vhosts.get(x.vhost)!;
    try {
      v.declareExchange({ name: x.name, type: x.type, passive: false, durable: x.durable, autoDelete: x.autoDelete, internal: x.internal, arguments: x.arguments });
    } catch (err) {
      skip(`exchange '${x.name}' in vhost '${x.vhost}'`, err);
    }
  }
  for (const b of plan.bindings) {
    const v = broker.vhosts.get(b.vhost)!;
    const source = v.exchanges.get(b.source);
    const destination = b.destinationType === 'queue' ? v.queues.get(b.destination) : v.exchanges.get(b.destination);
    if (source === undefined || destination === undefined) {
      plan.skipped.push(`binding ${b.source} -> ${b.destination} in vhost '${b.vhost}': missing end`);
      continue;
    }
    try {
      v.bind(source, destination, b.routingKey, b.arguments);
    } catch (err) {
      skip(`binding ${b.source} -> ${b.destination} in vhost '${b.vhost}'`, err);
    }
  }
  if (plan.skipped.length !== 0) broker.logger.warn({ skipped: plan.skipped, user: actingUser }, 'definitions import skipped some objects');
  broker.logger.info({ user: actingUser }, 'definitions imported');
}

/** Import used by HTTP and tests: throws HttpError (400) before changing anything when the file is bad. */
export function importDefinitions(m: Management, defs: Record<string, unknown>, actingUser: string, onlyVhost?: string): string[] {
  const plan = planImport(m, defs, onlyVhost);
  applyPlan(m, plan, actingUser);
  return plan.skipped;
}

const getAll: Handler = (ctx) => {
  requireAdministrator(ctx);
  return { status: 200, json: exportDefinitions(ctx.m), headers: downloadHeaders(ctx.query, 'warren-definitions.json') };
};

const getVhost: Handler = (ctx) => {
  requireAdministrator(ctx);
  const v = vhostFor(ctx);
  return { status: 200, json: exportVhostDefinitions(ctx.m, v), headers: downloadHeaders(ctx.query, `warren-definitions-${v.name}.json`) };
};

/** ?download=name makes browsers save the export (RabbitMQ's UI uses the same parameter). */
function downloadHeaders(q: URLSearchParams, fallback: string): Record<string, string> {
  if (!q.has('download')) return {};
  const name = (q.get('download') || fallback).replace(/[^A-Za-z0-9._-]/g, '_');
  return { 'content-disposition': `attachment; filename="${name}"` };
}

const postAll: Handler = (ctx) => {
  requireAdministrator(ctx);
  importDefinitions(ctx.m, ctx.body.raw, ctx.user.name);
  return NO_CONTENT;
};

const postVhost: Handler = (ctx) => {
  requireAdministrator(ctx);
  const v = vhostFor(ctx);
  importDefinitions(ctx.m, ctx.body.raw, ctx.user.name, v.name);
  return NO_CONTENT;
};

export function registerDefinitions(r: Router<Handler>): void {
  r.get('/api/definitions', getAll)
    .post('/api/definitions', postAll)
    .get('/api/definitions/:vhost', getVhost)
    .post('/api/definitions/:vhost', postVhost)
    .get('/api/all-configuration', getAll)
    .post('/api/all-configuration', postAll);
}
