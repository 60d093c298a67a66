import type { AccessContext, User, UserStore } from '../auth/users';
import type { Config } from '../config';
import type { VHost } from '../core/vhost';
import type { Logger } from '../observability/logger';
import type { DirectReplyRegistry } from './direct-reply';
import type { MessageStore, SyncCallback } from '../store/message-store';
import type { LimitStore } from '../core/limits';

/** What the AMQP layer needs from the broker; passed in, never global. */
export interface BrokerContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: UserStore;
  readonly vhosts: ReadonlyMap<string, VHost>;
  readonly version: string;
  readonly directReply: DirectReplyRegistry;
  /** Null when running in memory: persistent messages are then confirmed like transient ones. */
  readonly store: MessageStore | null;
  /** cb once publishes so far are durable (with `delayed`, in the delayed-message store too). */
  afterSync(delayed: boolean, cb: SyncCallback): void;
  /** Vhost and user limits (max connections, queues, channels). */
  readonly limits?: LimitStore;
  /** Durable metadata changed by this turn's methods is saved before replies go out. */
  persistMetadata(): void;
  /** The cluster this node belongs to; null or absent when stand-alone. */
  readonly cluster?: ClusterContext | null;
}

/** What AMQP connections and channels need from the cluster (src/cluster implements it). */
export interface ClusterContext {
  /**
   * A channel is about to route a publish: from here until takeForwards(), what the routing
   * sends to other nodes (forwards, mirror copies) is collected for the publisher's confirm.
   * `localOnly`: a publish forwarded here over a link reaches local queues only.
   */
  beginPublish(localOnly: boolean): void;
  /** The home nodes' confirms of the publish just routed (forwards to remote queues), or null. */
  takeForwards(): Promise<void>[] | null;
  /** False while etcd has been unreachable past this node's lease: metadata changes are refused. */
  readonly metadataAvailable: boolean;
  /** While true, routing reaches local queues only: a publish forwarded here over a link. */
  localOnly: boolean;
  /** This node's topology changes are in etcd: the reply to the client that made them may go. */
  commitTopology(): Promise<void>;
  /** A mirrored queue's leader replicating to this node; true when it wrote to the store. */
  mirrorOp(vhost: string, queue: string, properties: Buffer, body: Buffer): boolean;
  /** The node a new queue should live on (its leader locator). */
  placeQueue(vhost: string, name: string, args: import('../protocol/field-table').FieldTable): string;
  readonly nodeName: string;
  /** Declares a queue on another node and installs its proxy here. */
  declareOn(node: string, vhost: VHost, d: { name: string; durable: boolean; autoDelete: boolean; arguments: import('../protocol/field-table').FieldTable }): Promise<{ messageCount: number; consumerCount: number }>;
  /** A reply to another node's direct reply-to consumer: forwarded there; false if unknown. */
  forwardReply(vhost: string, msg: import('../core/message').Message): boolean;
  /** A node-to-node link logging in: the cluster's internal user, or undefined. */
  authenticateLink(user: string, password: string): User | undefined;
}

/** Per-connection facts a channel needs. */
export interface SessionContext {
  readonly vhost: VHost;
  readonly access: AccessContext;
}
