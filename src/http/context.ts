import type { IncomingHttpHeaders } from 'node:http';
import type { User, UserStore } from '../auth/users';
import type { Connection } from '../amqp/connection';
import type { Config } from '../config';
import type { PolicyStore } from '../core/policy';
import type { LimitStore } from '../core/limits';
import type { VHost } from '../core/vhost';
import type { Logger } from '../observability/logger';
import type { BrokerStats } from '../observability/broker-stats';
import type { Body } from './body';

/** What the management API needs from the broker (src/broker.ts's Broker satisfies it). */
export interface ManagedBroker {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: UserStore;
  readonly vhosts: Map<string, VHost>;
  readonly policies: PolicyStore;
  /** Vhost and user resource limits. */
  readonly limits: LimitStore;
  readonly connections: Set<Connection>;
  readonly version: string;
  /** Memory and disk alarms (src/core/alarms.ts), when the broker runs them. */
  readonly alarms?: ResourceAlarmsView;
  addVhost(name: string): VHost;
  /** Closes the vhost's connections and forgets everything in it. */
  deleteVhost(name: string): void;
  /** Durable metadata changed in a way the model's own hooks do not see (vhost removal). */
  metadataChanged(): void;
}

export interface ResourceAlarmsView {
  readonly alarms: readonly string[];
  readonly memoryLimit: number;
  diskFree(): number;
}

/** Vhost metadata RabbitMQ keeps beside the vhost record (description, tags, default queue type). */
export interface VhostMetadata {
  description: string;
  tags: string[];
  defaultQueueType: string;
  tracing: boolean;
}

/** Where the broker listens, for /api/overview's listeners and the health checks. */
export interface Listener {
  protocol: 'amqp' | 'amqps' | 'http' | 'https';
  ip: string;
  port: number;
}

/**
 * Per-broker state of the management plugin: the model it serves, the rate sampler, and the
 * few things RabbitMQ stores that Warren's model has no place for (vhost metadata, global
 * parameters). One per running management server; nothing global.
 */
export class Management {
  readonly vhostMetadata = new Map<string, VhostMetadata>();
  readonly globalParameters = new Map<string, unknown>();
  /** Owner of queues declared over HTTP; never exclusive, but the model wants an owner. */
  readonly owner = Object.freeze({ kind: 'management' });
  readonly listeners: Listener[] = [];
  readonly startedAt = Date.now();

  constructor(
    readonly broker: ManagedBroker,
    readonly stats: BrokerStats,
  ) {}

  get nodeName(): string {
    return this.broker.config.clusterName;
  }

  metadata(vhost: string): VhostMetadata {
    return this.vhostMetadata.get(vhost) ?? { description: vhost === this.broker.config.defaultVhost ? 'Default virtual host' : '', tags: [], defaultQueueType: 'undefined', tracing: false };
  }
}

export interface RequestContext {
  readonly m: Management;
  readonly user: User;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  /** The JSON body (read before the handler runs, for PUT, POST and DELETE). */
  readonly body: Body;
}

export interface Reply {
  status: number;
  json?: unknown;
  headers?: Record<string, string>;
}

export type Handler = (ctx: RequestContext) => Reply | Promise<Reply>;

export function ok(json: unknown): Reply {
  return { status: 200, json };
}

export function created(headers?: Record<string, string>): Reply {
  return headers === undefined ? { status: 201 } : { status: 201, headers };
}

export const NO_CONTENT: Reply = { status: 204 };
