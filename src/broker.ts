import { createServer, Server, Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { UserStore } from './auth/users';
import { Connection } from './amqp/connection';
import { DirectReplyRegistry } from './amqp/direct-reply';
import type { BrokerContext } from './amqp/broker-context';
import { Config, defaultConfig } from './config';
import { VHost } from './core/vhost';
import { PolicyStore } from './core/policy';
import { ResourceAlarms } from './core/alarms';
import { TransientPager } from './core/paging';
import { LimitStore } from './core/limits';
import { createLogger, Logger } from './observability/logger';
import type { MessageStore } from './store/message-store';
import { SegmentStore } from './store/segment-store';
import { DelayStore } from './store/delay-store';
import { DelayedExchange, type DelayStores } from './core/exchanges/delayed';
import type { SyncCallback } from './store/message-store';
import { DefinitionsStore } from './store/definitions-store';
import { DurableMetadata } from './metadata';
import { restoreMessages } from './recovery';
import { startManagement, type ManagementHandle } from './http';
import { createServer as createTlsServer } from 'node:tls';
import { tlsServerOptions } from './transport/tls';
import { ClusterNode } from './cluster/cluster-node';

export interface BrokerHandle {
  readonly host: string;
  readonly port: number;
  /** amqp://guest:guest@host:port */
  readonly url: string;
  readonly broker: Broker;
  /** The management HTTP port, or null when management is disabled (managementPort -1). */
  readonly managementPort: number | null;
  /** The AMQPS port, or null when TLS is off (tlsPort -1). */
  readonly tlsPort: number | null;
  close(): Promise<void>;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * The composition root: configuration in, model and listeners wired. Tests and embedders
 * build one per test with its own port; nothing here is global.
 */
export class Broker implements BrokerContext {
  readonly logger: Logger;
  readonly users = new UserStore();
  readonly vhosts = new Map<string, VHost>();
  readonly version = packageVersion();
  readonly directReply: DirectReplyRegistry;
  readonly connections = new Set<Connection>();
  readonly policies = new PolicyStore();
  /** Vhost and user resource limits (max-connections, max-queues, max-channels). */
  readonly limits = new LimitStore(this.vhosts, this.users, this.connections);
  readonly alarms: ResourceAlarms;
  readonly pager: TransientPager;
  /** Persistent messages of durable queues; null when running in memory (no dataDir). */
  readonly store: MessageStore | null;
  /** Pending delayed messages (durable: persistent ones on durable exchanges; scratch: the rest). */
  readonly delays: DelayStores & { close(): Promise<void> };
  /** The definitions file for durable metadata; null when running in memory. */
  private readonly metadata: DurableMetadata | null;
  private metadataTimer: NodeJS.Timeout | null = null;
  private server: Server | null = null;
  private management: ManagementHandle | null = null;
  private tlsServer: Server | null = null;
  private tlsBoundPort: number | null = null;
  /** This node's cluster membership; null when stand-alone (no --cluster-etcd). */
  readonly cluster: ClusterNode | null;

  constructor(
    readonly config: Config,
    logger?: Logger,
  ) {
    this.logger = logger ?? createLogger(config.logLevel);
    this.directReply = new DirectReplyRegistry(config.clusterEtcd.length === 0 ? null : config.nodeName);
    this.store =
      config.dataDir === null
        ? null
        : SegmentStore.open({
            dir: join(config.dataDir, 'messages'),
            // Compaction rewrites whole segments synchronously; 16 MiB keeps its pauses short.
            segmentSize: 16 * 1024 * 1024,
            logger: this.logger.child({ component: 'store' }),
          });
    const durableDelays =
      config.dataDir === null || this.store === null
        ? null
        : DelayStore.open({
            dir: join(config.dataDir, 'delayed'),
            durable: true,
            logger: this.logger.child({ component: 'delayed' }),
            routedDurable: (cb) => this.store!.afterSync(cb),
          });
    let scratch: DelayStore | null = null;
    const scratchDir = config.dataDir === null ? join(tmpdir(), `warren-delayed-${process.pid}-${Date.now()}`) : join(config.dataDir, 'delayed-scratch');
    this.delays = {
      durable: durableDelays,
      scratch: () => (scratch ??= DelayStore.open({ dir: scratchDir, durable: false, logger: this.logger.child({ component: 'delayed-scratch' }) })),
      close: async () => {
        await durableDelays?.close();
        await scratch?.close();
      },
    };
    this.alarms = new ResourceAlarms({
      memoryHighWatermark: config.memoryHighWatermark,
      diskFreeLimit: config.diskFreeLimit,
      dataDir: config.dataDir,
    });
    this.pager = TransientPager.forDataDir(config.dataDir, () => this.alarms.paging);
    this.alarms.onChange = (blocked) => {
      this.logger.warn({ alarms: this.alarms.alarms }, blocked ? 'resource alarm raised, blocking publishers' : 'resource alarms cleared');
      for (const c of this.connections) {
        if (blocked) c.alarmRaised();
        else c.alarmCleared();
      }
    };
    this.cluster = config.clusterEtcd.length === 0 ? null : new ClusterNode(this);
    this.policies.onChange = (vhost) => {
      this.vhosts.get(vhost)?.reapplyPolicies();
      this.metadata?.markDirty();
      this.cluster?.markDirty();
    };
    this.limits.onChange = () => {
      this.metadata?.markDirty();
      this.cluster?.markDirty();
    };
    this.metadata =
      config.dataDir === null ? null : new DurableMetadata(this, new DefinitionsStore(config.dataDir, this.logger.child({ component: 'definitions' })));
    if (this.metadata === null || !this.metadata.restore()) {
      // First start: RabbitMQ's defaults (vhost "/", user guest with full rights on it).
      this.addVhost(config.defaultVhost);
      this.users.addUser(config.defaultUser, config.defaultPass, ['administrator']);
      this.users.setPermission(config.defaultVhost, config.defaultUser, '.*', '.*', '.*');
      this.metadata?.markDirty();
      this.metadata?.saveIfChanged();
    }
    if (this.store !== null) restoreMessages(this, this.store);
  }

  /**
   * cb runs once the publishes made so far are durable: in the message store, and also in the
   * delayed-message store when `delayed` (a held persistent message is only there).
   */
  afterSync(delayed: boolean, cb: SyncCallback): void {
    const store = this.store!;
    const delays = this.delays.durable;
    if (!delayed || delays === null) {
      store.afterSync(cb);
      return;
    }
    let left = 2;
    let error: Error | null = null;
    const one = (err: Error | null): void => {
      error ??= err;
      if (--left === 0) cb(error);
    };
    store.afterSync(one);
    delays.afterSync(one);
  }

  /** Something durable changed outside the vhost model's own hooks (e.g. a vhost was removed). */
  metadataChanged(): void {
    this.metadata?.markDirty();
    this.cluster?.markDirty();
  }

  /** Saves durable metadata if it changed; connections call it before writing replies. */
  persistMetadata(): void {
    this.metadata?.saveIfChanged();
  }

  /** The AMQPS port once listen() started it; null when TLS is off. */
  get tlsPort(): number | null {
    return this.tlsBoundPort;
  }

  /** The port management listens on, once listen() started it; null when disabled. */
  get managementPort(): number | null {
    return this.management?.port ?? null;
  }

  addVhost(name: string): VHost {
    let v = this.vhosts.get(name);
    if (v === undefined) {
      const listener = { durableChanged: () => this.metadata?.markDirty(), topologyChanged: () => this.cluster?.markDirty() };
      v = new VHost(name, this.policies, this.store, listener, this.pager, this.delays);
      this.vhosts.set(name, v);
      this.metadata?.markDirty();
      this.cluster?.markDirty();
    }
    return v;
  }

  /**
   * Deleting a vhost closes its connections, deletes its queues (consumers are cancelled),
   * and forgets its exchanges, permissions, policies and metadata.
   */
  deleteVhost(name: string): void {
    const v = this.vhosts.get(name);
    if (v === undefined) return;
    for (const c of [...this.connections]) {
      if (c.vhost === v) c.close('CONNECTION_FORCED', `vhost '${name}' is deleted`);
    }
    for (const q of [...v.queues.values()]) q.delete('deleted');
    for (const x of [...v.exchanges.values()]) {
      if (x.name !== '' && !x.name.startsWith('amq.')) v.deleteExchange(x.name, false);
    }
    this.vhosts.delete(name);
    this.metadataChanged();
    this.users.forgetVhost(name);
    for (const kind of ['policy', 'operator'] as const) {
      for (const p of this.policies.list(kind, name)) this.policies.delete(kind, name, p.name);
    }
  }

  async listen(): Promise<{ host: string; port: number }> {
    // A cluster member takes the shared metadata before any client can see the model.
    if (this.cluster !== null) {
      await this.cluster.start((socket) => {
        this.accept(socket).linkOnly = true;
      });
    }
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const onListening = (): void => {
        server.off('error', reject);
        resolve();
      };
      if (this.config.bind === '') server.listen(this.config.port, onListening);
      else server.listen(this.config.port, this.config.bind, onListening);
    });
    server.on('error', (err) => this.logger.error({ err: err.message }, 'listener error'));
    this.alarms.start();
    if (this.metadata !== null) {
      // Changes made outside AMQP connections (management) are saved within a fraction of a second.
      this.metadataTimer = setInterval(() => this.persistMetadata(), 200);
      this.metadataTimer.unref();
    }
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('listener has no TCP address');
    await this.cluster?.register(addr.port);
    const listeners: Array<{ ip: string; port: number; protocol: 'amqp' | 'amqps' }> = [{ ip: addr.address, port: addr.port, protocol: 'amqp' }];
    try {
      if (this.config.tlsPort >= 0) {
        // AMQPS: the same connections over TLS; the handshake timer starts once TLS is up.
        const tlsServer = createTlsServer(tlsServerOptions(this.config), (socket) => this.accept(socket));
        tlsServer.on('tlsClientError', (err) => this.logger.info({ err: err.message }, 'TLS handshake failed'));
        this.tlsServer = tlsServer;
        this.tlsBoundPort = await listenOn(tlsServer, this.config.tlsPort, this.config.bind);
        listeners.push({ ip: addr.address, port: this.tlsBoundPort, protocol: 'amqps' });
      }
      if (this.config.managementPort >= 0) {
        try {
          this.management = await startManagement(this, {
            port: this.config.managementPort,
            bind: this.config.bind,
            listeners,
            tls: this.config.managementTls ? tlsServerOptions(this.config) : undefined,
          });
        } catch (err) {
          // A taken management port (say, a RabbitMQ next door on 15672) should not keep AMQP
          // clients out: run without the API and say so loudly.
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
          this.logger.error({ port: this.config.managementPort }, `management port ${this.config.managementPort} is already in use; running without the management API`);
        }
      }
    } catch (err) {
      // Fail as a whole (e.g. the management port is taken): no listener left behind.
      this.server = null;
      this.alarms.stop();
      if (this.metadataTimer !== null) clearInterval(this.metadataTimer);
      await new Promise<void>((r) => server.close(() => r()));
      const tls = this.tlsServer;
      this.tlsServer = null;
      if (tls !== null) await new Promise<void>((r) => tls.close(() => r()));
      throw err;
    }
    return { host: addr.address, port: addr.port };
  }

  private accept(socket: Socket): Connection {
    const conn = new Connection(socket, this, (c) => this.connections.delete(c));
    this.connections.add(conn);
    if (this.alarms.blocked) conn.alarmRaised();
    return conn;
  }

  /** Graceful stop: no new connections, 320 CONNECTION_FORCED to every client, then wait for sockets. */
  async close(): Promise<void> {
    this.cluster?.stopAccepting();
    const server = this.server;
    this.server = null;
    this.alarms.stop();
    const management = this.management;
    this.management = null;
    const managementClosed = management === null ? Promise.resolve() : management.close();
    const closed = server === null ? Promise.resolve() : new Promise<void>((r) => server.close(() => r()));
    const tls = this.tlsServer;
    this.tlsServer = null;
    const tlsClosed = tls === null ? Promise.resolve() : new Promise<void>((r) => tls.close(() => r()));
    for (const c of [...this.connections]) c.close('CONNECTION_FORCED', 'broker forced connection closure with reason \'shutdown\'');
    // No publish is taken any more: mirrored queues go to their mirrors now, not after every
    // client has acknowledged the close.
    await this.cluster?.handOver();
    const deadline = setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, 2000);
    await closed;
    await tlsClosed;
    await managementClosed;
    clearTimeout(deadline);
    await this.cluster?.stop();
    if (this.metadataTimer !== null) clearInterval(this.metadataTimer);
    this.persistMetadata();
    // No releases once the store closes; the delayed store closes after it, so its final
    // watermark covers only releases whose routed copies the store has synced.
    for (const v of this.vhosts.values()) for (const x of v.exchanges.values()) if (x instanceof DelayedExchange) x.stopTimers();
    await this.store?.close();
    await this.delays.close();
    await this.pager.close();
  }
}

/** Starts a broker; options default to an in-memory broker (dataDir null). */
export async function startBroker(options: Partial<Config> & { logger?: Logger } = {}): Promise<BrokerHandle> {
  const { logger, ...rest } = options;
  const config: Config = { ...defaultConfig(), ...rest };
  const broker = new Broker(config, logger);
  const { host, port } = await broker.listen();
  const urlHost = host === '::' || host === '0.0.0.0' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    host: urlHost,
    port,
    url: `amqp://${encodeURIComponent(config.defaultUser)}:${encodeURIComponent(config.defaultPass)}@${urlHost}:${port}`,
    broker,
    managementPort: broker.managementPort,
    tlsPort: broker.tlsPort,
    close: () => broker.close(),
  };
}

/** Listens and resolves with the bound port ('' binds every interface). */
function listenOn(server: Server, port: number, bind: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      const a = server.address();
      resolve(a !== null && typeof a !== 'string' ? a.port : port);
    };
    if (bind === '') server.listen(port, done);
    else server.listen(port, bind, done);
  });
}
