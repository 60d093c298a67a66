import type { ApplyTo, PolicyKind } from '../../core/policy';
import { requireAdministrator, requirePolicymaker, vhostFor, visibleVhosts } from '../auth';
import type { Body } from '../body';
import { badRequest, notFound } from '../errors';
import { created, Handler, Management, NO_CONTENT, ok, RequestContext } from '../context';
import { parseListQuery, renderList } from '../listing';
import { APPLY_TO, validatePolicyDefinition } from '../policy-definition';
import type { Router } from '../router';
import { policyView } from '../views/vhost';

function listOf(kind: PolicyKind): Handler {
  return (ctx) => {
    if (kind === 'operator') requireAdministrator(ctx);
    const views = [];
    for (const v of visibleVhosts(ctx)) views.push(...ctx.m.broker.policies.list(kind, v.name).map(policyView));
    return ok(renderList(views, parseListQuery(ctx.query)));
  };
}

function listVhostOf(kind: PolicyKind): Handler {
  return (ctx) => {
    if (kind === 'operator') requireAdministrator(ctx);
    const v = vhostFor(ctx);
    return ok(renderList(ctx.m.broker.policies.list(kind, v.name).map(policyView), parseListQuery(ctx.query), [['name']]));
  };
}

function showOf(kind: PolicyKind): Handler {
  return (ctx) => {
    if (kind === 'operator') requireAdministrator(ctx);
    const v = vhostFor(ctx);
    const p = ctx.m.broker.policies.get(kind, v.name, ctx.params.name ?? '');
    if (p === undefined) throw notFound();
    return ok(policyView(p));
  };
}

/** A policy from a PUT body or a definitions file, validated as RabbitMQ does; nothing is set here. */
export function policyFromBody(kind: PolicyKind, vhost: string, name: string, b: Body): { vhost: string; name: string; pattern: string; applyTo: ApplyTo; priority: number; definition: Record<string, unknown> } {
  b.require('pattern', 'definition');
  const pattern = b.str('pattern', '');
  const definition = b.object('definition') ?? {};
  const priority = b.int('priority', 0);
  const applyTo = b.str('apply-to', 'all');
  if (!(APPLY_TO as readonly string[]).includes(applyTo)) throw badRequest(`Validation failed\n\n"${applyTo}" is not a valid apply-to value\n`);
  try {
    new RegExp(pattern);
  } catch {
    throw badRequest(`Validation failed\n\n"${pattern}" is not a valid regular expression\n`);
  }
  const problem = validatePolicyDefinition(kind, definition);
  if (problem !== undefined) throw badRequest(problem);
  return { vhost, name, pattern, applyTo: applyTo as ApplyTo, priority, definition };
}

function putOf(kind: PolicyKind): Handler {
  return (ctx) => {
    if (kind === 'operator') requireAdministrator(ctx);
    else requirePolicymaker(ctx);
    const v = vhostFor(ctx);
    const name = ctx.params.name ?? '';
    if (name === '') throw badRequest('policy name must not be empty');
    const policy = policyFromBody(kind, v.name, name, ctx.body);
    const isNew = ctx.m.broker.policies.get(kind, v.name, name) === undefined;
    ctx.m.broker.policies.set(kind, policy);
    return isNew ? created() : NO_CONTENT;
  };
}

function deleteOf(kind: PolicyKind): Handler {
  return (ctx) => {
    if (kind === 'operator') requireAdministrator(ctx);
    else requirePolicymaker(ctx);
    const v = vhostFor(ctx);
    if (!ctx.m.broker.policies.delete(kind, v.name, ctx.params.name ?? '')) throw notFound();
    return NO_CONTENT;
  };
}

// ---- runtime parameters ------------------------------------------------------------------
// Warren has no parameter components (federation, shovel); the lists are empty and a PUT
// names the missing component, as RabbitMQ does without the plugin.

const emptyList: Handler = () => ok([]);

const unknownParameter: Handler = () => {
  throw notFound();
};

const putParameter: Handler = (ctx) => {
  requirePolicymaker(ctx);
  throw badRequest(`Validation failed\n\ncomponent ${ctx.params.component ?? ''} not found\n`);
};

function globalParameterList(m: Management): Array<{ name: string; value: unknown }> {
  const out = [{ name: 'cluster_name', value: m.broker.config.clusterName as unknown }];
  for (const [name, value] of m.globalParameters) out.push({ name, value });
  return out;
}

const listGlobal: Handler = (ctx) => {
  requireAdministrator(ctx);
  return ok(globalParameterList(ctx.m));
};

const showGlobal: Handler = (ctx) => {
  requireAdministrator(ctx);
  const p = globalParameterList(ctx.m).find((x) => x.name === ctx.params.name);
  if (p === undefined) throw notFound();
  return ok(p);
};

const putGlobal: Handler = (ctx) => {
  requireAdministrator(ctx);
  const name = ctx.params.name ?? '';
  const value = ctx.body.require('value').raw.value;
  if (name === 'cluster_name') {
    setClusterName(ctx, value);
    return NO_CONTENT;
  }
  const isNew = !ctx.m.globalParameters.has(name);
  ctx.m.globalParameters.set(name, value);
  return isNew ? created() : NO_CONTENT;
};

const deleteGlobal: Handler = (ctx) => {
  requireAdministrator(ctx);
  if (!ctx.m.globalParameters.delete(ctx.params.name ?? '')) throw notFound();
  return NO_CONTENT;
};

function setClusterName(ctx: RequestContext, value: unknown): void {
  if (typeof value !== 'string' || value === '') throw badRequest('cluster name must be a non-empty string');
  ctx.m.broker.config.clusterName = value;
}

const getClusterName: Handler = (ctx) => ok({ name: ctx.m.broker.config.clusterName });

const putClusterName: Handler = (ctx) => {
  requireAdministrator(ctx);
  setClusterName(ctx, ctx.body.require('name').raw.name);
  return NO_CONTENT;
};

export function registerPolicies(r: Router<Handler>): void {
  for (const [path, kind] of [['policies', 'policy'], ['operator-policies', 'operator']] as const) {
    r.get(`/api/${path}`, listOf(kind))
      .get(`/api/${path}/:vhost`, listVhostOf(kind))
      .get(`/api/${path}/:vhost/:name`, showOf(kind))
      .put(`/api/${path}/:vhost/:name`, putOf(kind))
      .delete(`/api/${path}/:vhost/:name`, deleteOf(kind));
  }
  r.get('/api/parameters', emptyList)
    .get('/api/parameters/:component', emptyList)
    .get('/api/parameters/:component/:vhost', emptyList)
    .get('/api/parameters/:component/:vhost/:name', unknownParameter)
    .put('/api/parameters/:component/:vhost/:name', putParameter)
    .delete('/api/parameters/:component/:vhost/:name', unknownParameter)
    .get('/api/global-parameters', listGlobal)
    .get('/api/global-parameters/:name', showGlobal)
    .put('/api/global-parameters/:name', putGlobal)
    .delete('/api/global-parameters/:name', deleteGlobal)
    .get('/api/cluster-name', getClusterName)
    .put('/api/cluster-name', putClusterName);
}
