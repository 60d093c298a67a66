import { createServer, Server, Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserStore } from './auth/users';
import { Connection } from './amqp/connection';
import { DirectReplyRegistry } from './amqp/direct-reply';
import type { BrokerContext } from './amqp/broker-context';
import { Config, defaultConfig } from './config';
import { VHost } from './core/vhost';
import { PolicyStore } from './core/policy';
import { ResourceAlarms } from './core/alarms';
import { createLogger, Logger } from './observability/logger';

export interface BrokerHandle {
  readonly host: string;
  readonly port: number;
  /** amqp://guest:guest@host:port */
  readonly url: string;
  readonly broker: Broker;
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
  readonly directReply = new DirectReplyRegistry();
  readonly connections = new Set<Connection>();
  readonly policies = new PolicyStore();
  readonly alarms: ResourceAlarms;
  private server: Server | null = null;

  constructor(
    readonly config: Config,
    logger?: Logger,
  ) {
    this.logger = logger ?? createLogger(config.logLevel);
    this.alarms = new ResourceAlarms({
      memoryHighWatermark: config.memoryHighWatermark,
      diskFreeLimit: config.diskFreeLimit,
      dataDir: config.dataDir,
    });
    this.alarms.onChange = (blocked) => {
      this.logger.warn({ alarms: this.alarms.alarms }, blocked ? 'resource alarm raised, blocking publishers' : 'resource alarms cleared');
      for (const c of this.connections) {
        if (blocked) c.alarmRaised();
        else c.alarmCleared();
      }
    };
    this.policies.onChange = (vhost) => this.vhosts.get(vhost)?.reapplyPolicies();
    this.addVhost(config.defaultVhost);
    this.users.addUser(config.defaultUser, config.defaultPass, ['administrator']);
    this.users.setPermission(config.defaultVhost, config.defaultUser, '.*', '.*', '.*');
  }

  addVhost(name: string): VHost {
    let v = this.vhosts.get(name);
    if (v === undefined) {
      v = new VHost(name, this.policies);
      this.vhosts.set(name, v);
    }
    return v;
  }

  async listen(): Promise<{ host: string; port: number }> {
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
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('listener has no TCP address');
    return { host: addr.address, port: addr.port };
  }

  private accept(socket: Socket): void {
    const conn = new Connection(socket, this, (c) => this.connections.delete(c));
    this.connections.add(conn);
    if (this.alarms.blocked) conn.alarmRaised();
  }

  /** Graceful stop: no new connections, 320 CONNECTION_FORCED to every client, then wait for sockets. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.alarms.stop();
    const closed = server === null ? Promise.resolve() : new Promise<void>((r) => server.close(() => r()));
    for (const c of [...this.connections]) c.close('CONNECTION_FORCED', 'broker forced connection closure with reason \'shutdown\'');
    const deadline = setTimeout(() => {
      for (const c of this.connections) c.destroy();
    }, 2000);
    await closed;
    clearTimeout(deadline);
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
    close: () => broker.close(),
  };
}
