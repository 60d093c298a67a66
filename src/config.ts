// Placeholder replaced by the config module (flags, env, file). Shape is fixed here.
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** AMQP listener port; 0 picks a free one. */
  port: number;
  /** Interface to listen on; '' means all interfaces. */
  bind: string;
  /** Where durable state lives; null keeps everything in memory. */
  dataDir: string | null;
  managementPort: number;
  logLevel: LogLevel;
  /** Seconds proposed in connection.tune. */
  heartbeat: number;
  frameMax: number;
  channelMax: number;
  handshakeTimeoutMs: number;
  defaultUser: string;
  defaultPass: string;
  defaultVhost: string;
  /** Users that may only log in from loopback, as RabbitMQ's loopback_users. */
  loopbackUsers: string[];
}

export function defaultConfig(): Config {
  return {
    port: 5672,
    bind: '',
    dataDir: null,
    managementPort: 15672,
    logLevel: 'info',
    heartbeat: 60,
    frameMax: 131072,
    channelMax: 2047,
    handshakeTimeoutMs: 10_000,
    defaultUser: 'guest',
    defaultPass: 'guest',
    defaultVhost: '/',
    loopbackUsers: ['guest'],
  };
}
