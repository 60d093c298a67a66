import { Message } from '../../core/message';
import { encodeProperties } from '../../protocol/properties';
import { accessFor, allow, isMonitor, requireMonitor, vhostFor, visibleVhosts } from '../auth';
import { amqp, HttpError, notFound } from '../errors';
import { Handler, ok } from '../context';
import { parseListQuery, renderOne } from '../listing';
import type { Router } from '../router';
import { nodesView, nodeViewByName, overviewView, SampleRange, systemFacts } from '../views/node';

function ageParam(q: URLSearchParams, key: string): number | undefined {
  const raw = q.get(key);
  if (raw === null || !/^\d+$/.test(raw)) return undefined;
  return Math.min(Number(raw), 600);
}

const overview: Handler = (ctx) => {
  const q = ctx.query;
  const range: SampleRange = {
    lengthsAge: ageParam(q, 'lengths_age'),
    lengthsIncr: ageParam(q, 'lengths_incr'),
    ratesAge: ageParam(q, 'msg_rates_age'),
    ratesIncr: ageParam(q, 'msg_rates_incr'),
  };
  const view = overviewView(ctx.m, visibleVhosts(ctx), range, isMonitor(ctx.user));
  return ok(renderOne(view, parseListQuery(q)));
};

const nodes: Handler = (ctx) => {
  requireMonitor(ctx);
  return ok(nodesView(ctx.m));
};

const node: Handler = (ctx) => {
  requireMonitor(ctx);
  const view = nodeViewByName(ctx.m, ctx.params.node ?? '');
  if (view === undefined) throw notFound();
  return ok(view);
};

/**
 * RabbitMQ's aliveness test: declare the queue "aliveness-test", publish a message to it
 * through the default exchange and get it back. It needs full permissions in the vhost.
 */
const aliveness: Handler = (ctx) => {
  const v = vhostFor(ctx);
  const access = accessFor(ctx, v.name);
  const name = 'aliveness-test';
  allow(access.check('configure', 'queue', name));
  allow(access.check('write', 'exchange', ''));
  allow(access.check('read', 'queue', name));
  const { queue } = amqp(() =>
    v.declareQueue({ name, passive: false, durable: false, autoDelete: false, exclusiveOwner: null, arguments: [] }, ctx.m.owner),
  );
  const x = v.exchanges.get('')!;
  v.publish(x, new Message('', name, encodeProperties({}), Buffer.from('test_message')));
  const entry = queue.get(true);
  if (entry === undefined) throw new HttpError(503, 'failed', 'aliveness test message was not received');
  return ok({ status: 'ok' });
};

function alarms(ctx: Parameters<Handler>[0]): string[] {
  return systemFacts(ctx.m).alarms;
}

/** 200 {"status":"ok"} or 503 {"status":"failed","reason":...}, as RabbitMQ's health checks. */
function healthAlarms(): Handler {
  return (ctx) => {
    const active = alarms(ctx);
    if (active.length === 0) return ok({ status: 'ok' });
    return { status: 503, json: { status: 'failed', reason: 'resource alarm(s) in effect in the cluster', alarms: active.map((resource) => ({ node: ctx.m.nodeName, resource })) } };
  };
}

const virtualHosts: Handler = () => ok({ status: 'ok' });

const portListener: Handler = (ctx) => {
  const port = Number(ctx.params.port);
  if (ctx.m.listeners.some((l) => l.port === port)) return ok({ status: 'ok', port });
  return { status: 503, json: { status: 'failed', reason: `No active listener on port ${ctx.params.port ?? ''}`, missing: port, ports: ctx.m.listeners.map((l) => l.port) } };
};

const protocolListener: Handler = (ctx) => {
  const protocol = ctx.params.protocol ?? '';
  if (ctx.m.listeners.some((l) => l.protocol === protocol)) return ok({ status: 'ok', protocol });
  return { status: 503, json: { status: 'failed', reason: `No active listener for protocol ${protocol}`, missing: protocol, protocols: ctx.m.listeners.map((l) => l.protocol) } };
};

const okStatus: Handler = () => ok({ status: 'ok' });

export function registerOverview(r: Router<Handler>): void {
  r.get('/api/overview', overview)
    .get('/api/nodes', nodes)
    .get('/api/nodes/:node', node)
    .get('/api/aliveness-test/:vhost', aliveness)
    .get('/api/health/checks/alarms', healthAlarms())
    .get('/api/health/checks/local-alarms', healthAlarms())
    .get('/api/health/checks/virtual-hosts', virtualHosts)
    .get('/api/health/checks/port-listener/:port', portListener)
    .get('/api/health/checks/protocol-listener/:protocol', protocolListener)
    .get('/api/health/checks/node-is-quorum-critical', okStatus)
    .get('/api/health/checks/node-is-mirror-sync-critical', okStatus)
    .get('/api/health/checks/certificate-expiration/:within/:unit', okStatus)
    .get('/api/extensions', () => ok([]))
    .get('/api/auth', () => ok({ oauth_enabled: false }));
}
