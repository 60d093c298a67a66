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
  /** Cluster membership; absent or null when stand-alone. */
  readonly cluster?: ClusterView | null;
  addVhost(name: string): VHost;
  /** Closes the vhost's connections and forgets everything in it. */
  deleteVhost(name: string): void;
  /** Durable metadata changed in a way the model's own hooks do not see (vhost removal). */
  metadataChanged(): void;
}

/**
 * What the management API reads from cluster membership (src/cluster's ClusterNode satisfies
 * it). Declared here, structurally, so the HTTP layer does not depend on the cluster code.
 */
export interface ClusterView {
  readonly nodeName: string;
  /** Live members, this node included. */
  nodeList(): ClusterMember[];
  describeQueue(vhost: string, name: string): QueuePlacement;
  /** Resolves once this node's metadata changes are in etcd (read-your-writes across nodes). */
  commitTopology?(): Promise<void>;
  /** Manual (re)synchronisation of a mirrored queue led here; false when not led here. */
  syncQueue?(vhost: string, queue: string, action: 'sync' | 'cancel_sync'): boolean;
}

export interface ClusterMember {
  name: string;
  /** host:port of the node's AMQP listener. */
  amqp: string;
  /** host:port of the node-to-node link listener. */
  link: string;
  /** When the node joined, ms since the epoch. */
  started: number;
}

/** Where a queue lives: its leader (home) node, its mirrors and which of them are in sync. */
export interface QueuePlacement {
  node: string;
  /** Leader excluded. */
  mirrors: string[];
  /** Mirrors in sync, leader excluded. */
  inSync: string[];
  /** null when the queue is not mirrored. */
  epoch: number | null;
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

  /**
   * This node's name. Stand-alone, RabbitMQ's single node and its cluster share one name, so
   * the cluster name serves (as it always has); in a cluster each member has its own.
   */
  get nodeName(): string {
    return this.broker.cluster?.nodeName ?? this.broker.config.clusterName;
  }

  /** Every running node's name, sorted. */
  nodeNames(): string[] {
    const cluster = this.broker.cluster;
    if (cluster === undefined || cluster === null) return [this.nodeName];
    const names = cluster.nodeList().map((n) => n.name);
    // The lease that lists us may lapse while we still serve requests; we are running regardless.
    if (!names.includes(cluster.nodeName)) names.push(cluster.nodeName);
    return names.sort((a, b) => a.localeCompare(b));
  }

  placement(vhost: string, queue: string): QueuePlacement {
    const cluster = this.broker.cluster;
    if (cluster === undefined || cluster === null) return { node: this.nodeName, mirrors: [], inSync: [], epoch: null };
    return cluster.describeQueue(vhost, queue);
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
