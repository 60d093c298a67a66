import { createServer as createHttpServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TlsOptions } from 'node:tls';
import { BrokerStats } from '../observability/broker-stats';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../observability/metrics';
import { registerBindings } from './api/bindings';
import { registerConnections } from './api/connections';
import { registerDefinitions } from './api/definitions';
import { registerExchanges } from './api/exchanges';
import { registerOverview } from './api/overview';
import { registerPolicies } from './api/policies';
import { registerLimits } from './api/limits';
import { registerQueues } from './api/queues';
import { registerUsers } from './api/users';
import { registerVhosts } from './api/vhosts';
import { authenticate } from './auth';
import { Body, parseJsonObject, readRaw } from './body';
import { Handler, ManagedBroker, Management, Reply } from './context';
import { HttpError } from './errors';
import { Router } from './router';
import { serveStatic } from './static';
import { systemFacts } from './views/node';

export interface ManagementOptions {
  /** 0 picks a free port. */
  port: number;
  /** Interface to listen on; '' means all interfaces. */
  bind: string;
  /** TLS server options (certificate, key, CA): when given, the API and UI are served over HTTPS. */
  tls?: TlsOptions;
  /** The broker's AMQP listeners, for /api/overview's listeners and the port health checks. */
  listeners?: Array<{ ip: string; port: number; protocol: 'amqp' | 'amqps' }>;
}

export interface ManagementHandle {
  readonly port: number;
  readonly management: Management;
  close(): Promise<void>;
}

function buildRouter(): Router<Handler> {
  const r = new Router<Handler>();
  registerOverview(r);
  registerConnections(r);
  registerExchanges(r);
  registerQueues(r);
  registerBindings(r);
  registerVhosts(r);
  registerUsers(r);
  registerPolicies(r);
  registerLimits(r);
  registerDefinitions(r);
  return r;
}

/**
 * The management plugin: RabbitMQ's HTTP API under /api, Prometheus metrics at /metrics and
 * the web UI at /, all on one port. Starts the once-a-second rate sampler; close() stops both.
 */
export async function startManagement(broker: ManagedBroker, options: ManagementOptions): Promise<ManagementHandle> {
  const stats = new BrokerStats(broker);
  const management = new Management(broker, stats);
  const router = buildRouter();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(management, router, req, res).catch((err: unknown) => {
      broker.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'management request failed');
      if (!res.headersSent) send(res, req, { status: 500, json: { error: 'internal_error', reason: 'internal error' } });
      else res.destroy();
    });
  };
  const server: Server =
    options.tls === undefined
      ? createHttpServer(onRequest)
      : createHttpsServer(options.tls, onRequest);
  // Keep-alive sockets must not hold close() up.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (options.bind === '') server.listen(options.port, done);
    else server.listen(options.port, options.bind, done);
  });
  server.on('error', (err) => broker.logger.error({ err: err.message }, 'management listener error'));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('management listener has no TCP address');
  for (const l of options.listeners ?? []) management.listeners.push({ protocol: l.protocol, ip: l.ip, port: l.port });
  management.listeners.push({ protocol: options.tls === undefined ? 'http' : 'https', ip: addr.address, port: addr.port });
  stats.start();
  broker.logger.info({ port: addr.port }, `management API listening on ${options.tls === undefined ? 'http' : 'https'}://${options.bind === '' ? '0.0.0.0' : options.bind}:${addr.port}`);
  return {
    port: addr.port,
    management,
    close: () =>
      new Promise<void>((resolve) => {
        stats.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(m: Management, router: Router<Handler>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = url.pathname;
  if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
    sendText(res, req, 200, METRICS_CONTENT_TYPE, metrics(m));
    return;
  }
  if (path !== '/api' && !path.startsWith('/api/')) {
    await serveStatic(req, res, path);
    return;
  }
  try {
    const match = router.match(req.method ?? 'GET', path);
    const fromUi = req.headers['x-warren-ui'] !== undefined;
    const user = authenticateRequest(m, req, !fromUi);
    const raw = req.method === 'GET' || req.method === 'HEAD' ? Buffer.alloc(0) : await readRaw(req);
    const body = new Body(parseJsonObject(raw));
    const reply = await match.handler({ m, user, params: match.params, query: url.searchParams, headers: req.headers, body });
    if (req.method !== 'GET' && req.method !== 'HEAD' && m.broker.cluster?.commitTopology !== undefined) {
      // In a cluster a change is answered once etcd has it, so any node sees it right after.
      try {
        await m.broker.cluster.commitTopology();
      } catch (err) {
        send(res, req, { status: 503, json: { error: 'service_unavailable', reason: `cluster metadata store (etcd) unavailable: ${(err as Error).message}` } });
        return;
      }
    }
    send(res, req, reply);
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    if (err.status === 405) {
      send(res, req, { status: 405, headers: { ...err.headers } });
      return;
    }
    send(res, req, { status: err.status, json: err.body, headers: { ...err.headers } });
  }
}

function authenticateRequest(m: Management, req: IncomingMessage, challenge: boolean): ReturnType<typeof authenticate> {
  try {
    return authenticate(req.headers.authorization, req.socket.remoteAddress, { users: m.broker.users, loopbackUsers: m.broker.config.loopbackUsers }, challenge);
  } catch (err) {
    if (err instanceof HttpError && err.status === 401 && req.headers.authorization !== undefined) {
      m.broker.logger.warn({ peer: req.socket.remoteAddress, reason: err.reason, path: req.url }, 'management authentication failed');
    }
    throw err;
  }
}

function metrics(m: Management): string {
  const f = systemFacts(m);
  return renderMetrics({
    source: m.broker,
    totals: m.stats.messageTotals(),
    node: m.nodeName,
    version: m.broker.version,
    memoryLimit: f.memLimit,
    diskFree: f.diskFree,
    diskFreeLimit: f.diskFreeLimit,
    alarms: f.alarms,
    openFds: f.fdUsed,
    startedAt: m.startedAt,
  });
}

function send(res: ServerResponse, req: IncomingMessage, reply: Reply): void {
  const headers: Record<string, string | number> = { 'cache-control': 'no-cache', vary: 'accept, accept-encoding, origin', ...(reply.headers ?? {}) };
  if (reply.json === undefined) {
    headers['content-length'] = 0;
    res.writeHead(reply.status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(reply.json);
  headers['content-type'] = 'application/json';
  headers['content-length'] = Buffer.byteLength(text);
  res.writeHead(reply.status, headers);
  res.end(req.method === 'HEAD' ? undefined : text);
}

function sendText(res: ServerResponse, req: IncomingMessage, status: number, contentType: string, text: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-cache' });
  res.end(req.method === 'HEAD' ? undefined : text);
}
