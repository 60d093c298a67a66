import { createServer, Server, Socket } from 'node:net';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Etcd3, Lease, Watcher } from 'etcd3';
import { noop } from 'cockatiel';
import type { Broker } from '../broker';
import type { ClusterContext } from '../amqp/broker-context';
import type { User } from '../auth/users';
import type { Message } from '../core/message';
import type { Queue } from '../core/queue/queue';
import type { VHost } from '../core/vhost';
import { argumentsTable } from '../http/views/json';
import type { Logger } from '../observability/logger';
import { ClusterKeys } from './keys';
import { replyNode } from '../amqp/direct-reply';
import { LinkChannel, LinkClosedError } from './link-client';
import { CLUSTER_LINK_USER, LinkPool, LinkPurpose } from './link-pool';
import { AmqpError } from '../protocol/errors';
import { FieldTable, fieldString, tableGet } from '../protocol/field-table';
import { M } from '../protocol/spec';
import { tableJson } from '../http/views/json';
import { MetadataHost, MetadataSync, QueueRecord } from './metadata-sync';
import { QueueHomeLinks, RemoteQueue } from './remote-queue';
import { HaCoordinator, HaHost } from './ha';

/** A proxy for another connection's exclusive queue: never this node's connections. */
const FOREIGN_OWNER = Object.freeze({ foreign: true });

export interface NodeInfo {
  name: string;
  amqp: string;
  link: string;
  started: number;
}

/**
 * This node's membership in a cluster: etcd (membership lease, shared metadata, the link
 * secret) and the node-to-node links that carry forwarded publishes, consumers and gets to
 * the node that owns a queue. etcd decides; links only move messages.
 */
export class ClusterNode implements ClusterContext, MetadataHost, QueueHomeLinks, HaHost {
  readonly nodeName: string;
  localOnly = false;
  /** Between beginPublish and takeForwards: confirms of what routing sends elsewhere are wanted. */
  private collecting = false;
  readonly nodes = new Map<string, NodeInfo>();
  private readonly etcd: Etcd3;
  private readonly keys: ClusterKeys;
  private readonly log: Logger;
  private lease: Lease | null = null;
  private secret = '';
  private readonly sync: MetadataSync;
  private readonly links: LinkPool;
  private forwards: Array<Promise<void>> | null = null;
  private forwardMsg: Message | null = null;
  private readonly forwardNodes = new Set<string>();
  private watchers: Watcher[] = [];
  private linkServer: Server | null = null;
  private commitTimer: NodeJS.Timeout | null = null;
  private linkPort = 0;
  private amqpAddress = '';
  private stopped = false;
  private accepting = true;
  readonly ha: HaCoordinator;
  /** A mirror that confirms nothing for this long leaves the in-sync set. */
  readonly replicaTimeoutMs = 3000;
  /** Past this instant our lease may have expired in etcd: leaders fence themselves. */
  private leaseDeadline = Number.MAX_SAFE_INTEGER;
  private fenceTimer: NodeJS.Timeout | null = null;

  constructor(private readonly broker: Broker) {
    const config = broker.config;
    this.nodeName = config.nodeName;
    this.keys = new ClusterKeys(config.clusterPrefix);
    this.log = broker.logger.child({ component: 'cluster', node: this.nodeName });
    this.etcd = new Etcd3({
      hosts: config.clusterEtcd,
      dialTimeout: 2000,
      // Every unary call gets a deadline (a lost quorum must fail a declare, not hang it), and
      // no circuit breaker: after an etcd outage the first healthy call must go through.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 3000 }),
      faultHandling: { host: () => noop, global: noop },
    });
    this.sync = new MetadataSync(this.etcd, this.keys, broker, this, () => this.lease!, this.log);
    this.ha = new HaCoordinator(this.etcd, this.keys, broker, this, this.log);
    this.links = new LinkPool({
      nodeName: this.nodeName,
      linkAddress: (node) => this.nodes.get(node)?.link,
      secret: () => this.secret,
    });
  }

  get advertisedHost(): string {
    const c = this.broker.config;
    if (c.clusterAdvertise !== '') return c.clusterAdvertise;
    if (c.bind !== '' && c.bind !== '0.0.0.0' && c.bind !== '::') return c.bind;
    return '127.0.0.1';
  }

  /** Joins (or forms) the cluster: secret, metadata, watches and the link listener. */
  async start(acceptLink: (socket: Socket) => void): Promise<void> {
    await this.ensureSecret();
    this.lease = this.newLease();
    this.linkPort = await this.listenLinks(acceptLink);
    const meta = await this.etcd.getAll().prefix(this.keys.meta).exec();
    if (meta.kvs.length === 0) {
      this.log.info('forming a new cluster: seeding etcd with this node\'s metadata');
      this.sync.adoptLocal();
    } else {
      this.sync.loadAll(meta.kvs);
    }
    this.watchers.push(await this.watch(this.keys.meta, meta.header.revision, (key, value) => this.sync.applyEvent(key, value)));
    const nodes = await this.etcd.getAll().prefix(this.keys.nodes).exec();
    for (const kv of nodes.kvs) this.nodeUp(kv.key.toString(), kv.value.toString());
    this.watchers.push(
      await this.watch(this.keys.nodes, nodes.header.revision, (key, value) => (value === null ? this.nodeDown(key) : this.nodeUp(key, value))),
    );
    const ha = await this.etcd.getAll().prefix(this.keys.ha).exec();
    this.ha.load(ha.kvs);
    this.watchers.push(await this.watch(this.keys.ha, ha.header.revision, (key, value, mod) => this.ha.applyEvent(key, value, mod)));
    await this.sync.commit();
    this.ha.start();
    this.fenceTimer = setInterval(() => this.ha.setFenced(Date.now() > this.leaseDeadline), 100);
    this.fenceTimer.unref();
    this.commitTimer = setInterval(() => {
      if (this.sync.isDirty) this.sync.commit().catch((err: Error) => this.log.warn({ err: err.message }, 'cluster metadata commit failed; will retry'));
    }, 100);
    this.commitTimer.unref();
  }

  /** Announces this node (AMQP listener known now); waits out a previous incarnation's lease. */
  async register(amqpPort: number): Promise<void> {
    this.amqpAddress = `${this.advertisedHost}:${amqpPort}`;
    const key = this.keys.node(this.nodeName);
    const deadline = Date.now() + (this.broker.config.clusterLeaseSeconds * 2 + 2) * 1000;
    for (;;) {
      const info: NodeInfo = { name: this.nodeName, amqp: this.amqpAddress, link: `${this.advertisedHost}:${this.linkPort}`, started: Date.now() };
      const r = await this.etcd.if(key, 'Create', '==', 0).then(this.lease!.put(key).value(JSON.stringify(info))).commit();
      if (r.succeeded) break;
      if (Date.now() > deadline) throw new Error(`node name '${this.nodeName}' is already in use by a live cluster member`);
      await new Promise((r2) => setTimeout(r2, 250));
    }
    this.log.info({ amqp: this.amqpAddress, link: this.linkPort }, 'joined the cluster');
  }

  /** First step of a graceful stop: no new links (a late forward would reach a leader that is leaving). */
  stopAccepting(): void {
    this.accepting = false;
    this.linkServer?.close();
  }

  /** Graceful stop, first part: mirrored queues led here go to in-sync mirrors. */
  async handOver(): Promise<void> {
    await this.ha.handOver().catch((err: Error) => this.log.warn({ err: err.message }, 'handover failed'));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.accepting = false;
    if (this.commitTimer !== null) clearInterval(this.commitTimer);
    if (this.fenceTimer !== null) clearInterval(this.fenceTimer);
    // Mirrored queues go to an in-sync mirror before this node leaves (no lease wait).
    await this.handOver();
    this.ha.stop();
    try {
      await this.sync.commit();
    } catch {
      // etcd unreachable: nothing more to save there.
    }
    for (const w of this.watchers) await w.cancel().catch(() => undefined);
    // Revoking the lease removes this node and its transient queues at once for the others.
    await this.lease?.revoke().catch(() => undefined);
    this.links.closeAll();
    const server = this.linkServer;
    this.linkServer = null;
    if (server?.listening === true) await new Promise<void>((r) => server.close(() => r()));
    this.etcd.close();
  }

  syncQueue(vhost: string, queue: string, action: 'sync' | 'cancel_sync'): boolean {
    return this.ha.syncQueue(vhost, queue, action);
  }

  /** Members as etcd lists them (alive = holding a lease), this node included. */
  nodeList(): NodeInfo[] {
    return [...this.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Where a queue lives: its home (leader) and, when mirrored, its mirrors and in-sync set. */
  describeQueue(vhost: string, name: string): { node: string; mirrors: string[]; inSync: string[]; epoch: number | null } {
    const q = this.broker.vhosts.get(vhost)?.queues.get(name);
    const home = q === undefined ? this.nodeName : this.homeOf(q);
    const r = this.ha.record(vhost, name);
    if (r === undefined) return { node: home, mirrors: [], inSync: [], epoch: null };
    return { node: r.leader, mirrors: r.members.filter((n) => n !== r.leader), inSync: r.isr.filter((n) => n !== r.leader), epoch: r.epoch };
  }

  get linkListenPort(): number {
    return this.linkPort;
  }

  // ---- ClusterContext ---------------------------------------------------------------------

  markDirty(): void {
    this.sync.markDirty();
  }

  /**
   * x-queue-leader-locator (or the queue-leader-locator policy): 'client-local' (the default)
   * keeps a new queue here; 'balanced' puts it on the live node that homes the fewest queues.
   */
  placeQueue(vhost: string, name: string, args: FieldTable): string {
    const policy = this.broker.policies.effective('policy', vhost, name, 'queue')?.definition['queue-leader-locator'];
    const locator = fieldString(tableGet(args, 'x-queue-leader-locator')) ?? fieldString(tableGet(args, 'x-queue-master-locator')) ?? policy;
    if (locator !== 'balanced' && locator !== 'min-masters') return this.nodeName;
    const counts = new Map<string, number>();
    for (const n of this.nodes.keys()) counts.set(n, 0);
    counts.set(this.nodeName, 0);
    for (const v of this.broker.vhosts.values()) {
      for (const q of v.queues.values()) {
        const home = this.homeOf(q);
        if (counts.has(home)) counts.set(home, counts.get(home)! + 1);
      }
    }
    let best = this.nodeName;
    for (const [node, n] of counts) if (n < counts.get(best)!) best = node;
    return best;
  }

  /** Declares a queue homed on another node (balanced placement) and installs its proxy here. */
  async declareOn(node: string, vhost: VHost, d: { name: string; durable: boolean; autoDelete: boolean; arguments: FieldTable }): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await this.openChannel(node, vhost.name);
    try {
      const r = await ch.rpc({ key: M.QueueDeclare, queue: d.name, passive: false, durable: d.durable, exclusive: false, autoDelete: d.autoDelete, noWait: false, arguments: d.arguments });
      this.installRemoteQueue(vhost, d.name, { durable: d.durable, autoDelete: d.autoDelete, exclusive: false, arguments: tableJson(d.arguments), home: node });
      return r.key === M.QueueDeclareOk ? { messageCount: r.messageCount, consumerCount: r.consumerCount } : { messageCount: 0, consumerCount: 0 };
    } catch (err) {
      if (err instanceof LinkClosedError) throw new AmqpError(err.code === 406 ? 'PRECONDITION_FAILED' : err.code === 403 ? 'ACCESS_REFUSED' : 'INTERNAL_ERROR', err.replyText);
      throw err;
    } finally {
      void ch.close().catch(() => undefined);
    }
  }

  forwardReply(vhost: string, msg: Message): boolean {
    const node = replyNode(msg.routingKey);
    if (node === null || node === this.nodeName || !this.isUp(node)) return false;
    this.forward(node, vhost, msg);
    return true;
  }

  mirrorOp(vhost: string, queue: string, properties: Buffer, body: Buffer): boolean {
    return this.ha.replicas.apply(vhost, queue, properties, body);
  }

  addPending(p: Promise<void>): void {
    p.catch(() => undefined);
    // Outside a channel's publish (dead letters, delayed releases) nobody waits for a confirm.
    if (this.collecting) (this.forwards ??= []).push(p);
  }

  beginPublish(localOnly: boolean): void {
    this.localOnly = localOnly;
    this.collecting = true;
    this.forwards = null;
    this.forwardMsg = null;
  }

  get metadataAvailable(): boolean {
    return !this.ha.isFenced;
  }

  liveNodes(): string[] {
    return [...this.nodes.keys()];
  }

  nodeKey(node: string): string {
    return this.keys.node(node);
  }

  claimQueue(vhost: string, queue: string): Promise<void> {
    return this.sync.claim(vhost, queue);
  }

  takeForwards(): Array<Promise<void>> | null {
    const f = this.forwards;
    this.collecting = false;
    this.forwards = null;
    this.forwardMsg = null;
    return f;
  }

  commitTopology(): Promise<void> {
    return this.sync.commit();
  }

  authenticateLink(user: string, password: string): User | undefined {
    if (user !== CLUSTER_LINK_USER || this.secret === '' || !this.accepting) return undefined;
    const a = Buffer.from(password);
    const b = Buffer.from(this.secret);
    if (a.length !== b.length || !timingSafeEqual(a, b)) return undefined;
    return { name: CLUSTER_LINK_USER, passwordHash: '', hashingAlgorithm: 'rabbit_password_hashing_sha256', tags: ['administrator'], limits: {} };
  }

  // ---- MetadataHost ----------------------------------------------------------------------

  installRemoteQueue(vhost: VHost, name: string, record: QueueRecord): void {
    const existing = vhost.queues.get(name);
    if (existing instanceof RemoteQueue && existing.home === record.home) return;
    if (existing instanceof RemoteQueue && this.ha.record(vhost.name, name) !== undefined) {
      // A mirrored queue failed over: the proxy follows its new leader, consumers and all.
      existing.rehome(record.home);
      return;
    }
    const args = argumentsTable(record.arguments);
    vhost.adoptQueue(name, args, (observer, settings) => {
      const options = { durable: record.durable, autoDelete: record.autoDelete, exclusiveOwner: record.exclusive ? FOREIGN_OWNER : null, arguments: args };
      return new RemoteQueue(vhost.name, name, options, observer, settings, record.home, this);
    });
  }

  homeOf(q: Queue): string {
    return q instanceof RemoteQueue ? q.home : this.nodeName;
  }

  // ---- QueueHomeLinks --------------------------------------------------------------------

  isUp(node: string): boolean {
    return this.nodes.has(node);
  }

  isMirrored(vhost: string, queue: string): boolean {
    return this.ha.record(vhost, queue) !== undefined;
  }

  forward(node: string, vhost: string, msg: Message): void {
    if (this.localOnly) return;
    if (msg !== this.forwardMsg) {
      this.forwardMsg = msg;
      this.forwardNodes.clear();
    }
    // One copy per home node: the home routes it again and keeps its own local matches.
    if (this.forwardNodes.has(node)) return;
    this.forwardNodes.add(node);
    const sent = this.links.publish(node, vhost, msg);
    sent.catch((err: Error) => this.log.debug({ node, err: err.message }, 'forwarded publish failed'));
    if (this.collecting) (this.forwards ??= []).push(sent);
  }

  openChannel(node: string, vhost: string, purpose: LinkPurpose = 'consume'): Promise<LinkChannel> {
    return this.links.openChannel(node, vhost, purpose);
  }

  forwardOnce(node: string, vhost: string, msg: Message): Promise<void> {
    return this.links.publishOnce(node, vhost, msg);
  }

  // ---- membership ------------------------------------------------------------------------

  private newLease(): Lease {
    const ttlMs = this.broker.config.clusterLeaseSeconds * 1000;
    const lease = this.etcd.lease(this.broker.config.clusterLeaseSeconds, { autoKeepAlive: true });
    // Our own deadline, measured from when a successful keepalive was sent: etcd3's 'lost'
    // comes only after twice the TTL, long after etcd may have handed our queues to others.
    let firedAt = Date.now();
    this.leaseDeadline = firedAt + ttlMs - 500;
    lease.on('keepaliveFired', () => {
      firedAt = Date.now();
    });
    lease.on('keepaliveSucceeded', () => {
      if (this.lease === lease) this.leaseDeadline = firedAt + ttlMs - 500;
    });
    lease.on('lost', (err: Error) => {
      if (this.stopped || this.lease !== lease) return;
      // etcd dropped this node (it was unreachable past the lease): others removed its
      // transient queues. Come back with a new lease; the metadata sync re-announces ours.
      this.log.error({ err: err.message }, 'cluster lease lost; rejoining');
      this.lease = this.newLease();
      this.sync.markDirty();
      this.register(Number(this.amqpAddress.slice(this.amqpAddress.lastIndexOf(':') + 1))).catch((e: Error) =>
        this.log.error({ err: e.message }, 'could not rejoin the cluster'),
      );
    });
    return lease;
  }

  private nodeUp(key: string, value: string): void {
    try {
      const info = JSON.parse(value) as NodeInfo;
      const name = this.keys.nodeName(key);
      const isNew = !this.nodes.has(name);
      this.nodes.set(name, info);
      if (isNew) this.ha.nodeUp(name);
    } catch {
      this.log.warn({ key }, 'ignoring a malformed node record');
    }
  }

  private nodeDown(key: string): void {
    const name = this.keys.nodeName(key);
    if (!this.nodes.delete(name) || name === this.nodeName) return;
    this.log.warn({ node: name }, 'cluster node is down');
    this.links.dropNode(name);
    for (const v of this.broker.vhosts.values()) {
      for (const q of v.queues.values()) if (q instanceof RemoteQueue && q.home === name) q.homeLost();
    }
    this.ha.nodeDown(name);
  }

  private async watch(prefix: string, revision: string, apply: (key: string, value: string | null, modRevision: string) => void): Promise<Watcher> {
    const w = await this.etcd
      .watch()
      .prefix(prefix)
      .startRevision(String(BigInt(revision) + 1n))
      .create();
    w.on('put', (kv) => apply(kv.key.toString(), kv.value.toString(), kv.mod_revision));
    w.on('delete', (kv) => apply(kv.key.toString(), null, kv.mod_revision));
    w.on('error', (err: Error) => this.log.warn({ err: err.message }, 'etcd watch error'));
    return w;
  }

  private async ensureSecret(): Promise<void> {
    const candidate = randomBytes(32).toString('base64url');
    await this.etcd.if(this.keys.secret, 'Create', '==', 0).then(this.etcd.put(this.keys.secret).value(candidate)).commit();
    const secret = await this.etcd.get(this.keys.secret).string();
    if (secret === null) throw new Error('cluster secret missing in etcd');
    this.secret = secret;
  }

  private listenLinks(accept: (socket: Socket) => void): Promise<number> {
    const server = createServer(accept);
    this.linkServer = server;
    const c = this.broker.config;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      const done = (): void => {
        server.off('error', reject);
        const a = server.address();
        resolve(a !== null && typeof a !== 'string' ? a.port : c.clusterPort);
      };
      if (c.bind === '') server.listen(c.clusterPort, done);
      else server.listen(c.clusterPort, c.bind, done);
    });
  }
}
