import type { Etcd3, IKeyValue } from 'etcd3';
import type { Broker } from '../broker';
import { Queue } from '../core/queue/queue';
import { Message } from '../core/message';
import type { VHost } from '../core/vhost';
import type { Logger } from '../observability/logger';
import type { ClusterKeys } from './keys';
import type { LinkChannel } from './link-client';
import { LeaderMirror, MirrorControl } from './mirror-leader';
import { MirrorReplicas } from './mirror-replica';
import { RemoteQueue } from './remote-queue';

/** A mirrored queue's replication record in etcd. */
export interface HaRecord {
  /** Grows with every change of leader; mirrors refuse operations from older epochs. */
  epoch: number;
  leader: string;
  /** Nodes the policy wants a mirror on (the leader not included). */
  members: string[];
  /** The leader and the mirrors that hold everything confirmed: the only promotion candidates. */
  isr: string[];
}

interface Known {
  record: HaRecord;
  modRevision: string;
}

/** What the coordinator needs from the cluster node. */
export interface HaHost {
  readonly nodeName: string;
  readonly replicaTimeoutMs: number;
  isUp(node: string): boolean;
  liveNodes(): string[];
  openChannel(node: string, vhost: string, purpose: 'mirror'): Promise<LinkChannel>;
  addPending(p: Promise<void>): void;
  /** Collects what addPending gets from here until takeForwards (as a channel's publish does). */
  beginPublish(localOnly: boolean): void;
  takeForwards(): Array<Promise<void>> | null;
  nodeKey(node: string): string;
  /** Writes the queue's metadata record with this node as its home (after a promotion). */
  claimQueue(vhost: string, queue: string): Promise<void>;
}

interface HaPolicy {
  mode: 'all' | 'exactly' | 'nodes';
  params: unknown;
  automaticSync: boolean;
  batch: number;
  minIsr: number;
  promoteOnShutdown: 'always' | 'when-synced';
}

/**
 * Mirrored queues (RabbitMQ's ha-* policies) on top of etcd: which node leads each mirrored
 * queue and which mirrors are in sync is recorded in etcd and changed only by guarded
 * transactions (compare the record's mod revision), so there is one leader per epoch and only
 * an in-sync mirror can become the next one. Leaders replicate with LeaderMirror; mirrors
 * hold replicas in MirrorReplicas.
 */
export class HaCoordinator {
  private readonly records = new Map<string, Known>();
  private readonly leading = new Map<string, LeaderMirror>();
  private readonly busy = new Set<string>();
  private readonly chains = new Map<string, Promise<unknown>>();
  readonly replicas: MirrorReplicas;
  private timer: NodeJS.Timeout | null = null;
  private fenced = false;

  constructor(
    private readonly etcd: Etcd3,
    private readonly keys: ClusterKeys,
    private readonly broker: Broker,
    private readonly host: HaHost,
    private readonly log: Logger,
  ) {
    this.replicas = new MirrorReplicas(broker.store, (name) => broker.vhosts.get(name));
  }

  start(): void {
    this.timer = setInterval(() => this.reconcile(), 500);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    for (const lm of this.leading.values()) lm.close(new Error('node stopping'));
    this.leading.clear();
  }

  /** Management's sync / cancel_sync of a mirrored queue led here. */
  syncQueue(vhost: string, queue: string, action: 'sync' | 'cancel_sync'): boolean {
    const lm = this.leading.get(this.keys.haKey(vhost, queue));
    if (lm === undefined) return false;
    if (action === 'sync') lm.syncNow();
    else lm.cancelSync();
    return true;
  }

  /** The record of a mirrored queue, for management. */
  record(vhost: string, queue: string): HaRecord | undefined {
    return this.records.get(this.keys.haKey(vhost, queue))?.record;
  }

  // ---- etcd watch ------------------------------------------------------------------------

  load(kvs: IKeyValue[]): void {
    for (const kv of kvs) this.applyEvent(kv.key.toString(), kv.value.toString(), kv.mod_revision);
  }

  applyEvent(key: string, value: string | null, modRevision: string): void {
    const id = this.keys.parseHa(key);
    if (id === null) return;
    const me = this.host.nodeName;
    if (value === null) {
      this.records.delete(key);
      this.replicas.drop(id.vhost, id.queue, false);
      return;
    }
    let record: HaRecord;
    try {
      record = JSON.parse(value) as HaRecord;
    } catch {
      return;
    }
    const prev = this.records.get(key);
    if (prev !== undefined && BigInt(prev.modRevision) > BigInt(modRevision)) return;
    this.records.set(key, { record, modRevision });
    const lm = this.leading.get(key);
    if (lm !== undefined && (record.leader !== me || record.epoch !== lm.epoch)) {
      // Someone else leads now (we were partitioned or handed over): stop replicating.
      this.log.warn({ queue: id.queue, leader: record.leader, epoch: record.epoch }, 'no longer leading this mirrored queue');
      lm.close(new Error('leadership moved'));
      this.leading.delete(key);
      return;
    }
    if (record.leader === me && lm === undefined) this.promote(id.vhost, id.queue, record);
    else if (record.leader !== me && !record.members.includes(me) && !record.isr.includes(me)) this.replicas.drop(id.vhost, id.queue, false);
  }

  // ---- membership events -----------------------------------------------------------------

  nodeDown(node: string): void {
    for (const lm of this.leading.values()) lm.nodeDown(node);
    const me = this.host.nodeName;
    for (const [key, known] of this.records) {
      const r = known.record;
      if (r.leader !== node || !r.isr.includes(me)) continue;
      // The preferred candidate (first in the in-sync set) goes first; others wait a little.
      const rank = r.isr.filter((n) => n !== node).indexOf(me);
      setTimeout(() => void this.elect(key), Math.max(0, rank) * 150).unref();
    }
  }

  nodeUp(node: string): void {
    for (const lm of this.leading.values()) lm.nodeUp(node);
  }

  /** Our lease may have expired: stop delivering and confirming until etcd answers again. */
  setFenced(fenced: boolean): void {
    if (fenced === this.fenced) return;
    this.fenced = fenced;
    if (!fenced) {
      // etcd answered again in time: nobody could have taken our queues over.
      this.log.warn('etcd reachable again: mirrored queues led here resume');
      for (const lm of this.leading.values()) lm.fenced = false;
      return;
    }
    this.log.error('etcd unreachable past the lease deadline: mirrored queues led here stop delivering and confirming');
    for (const lm of this.leading.values()) {
      lm.fenced = true;
      lm.queue.cancelConsumers();
    }
  }

  get isFenced(): boolean {
    return this.fenced;
  }

  // ---- leadership ------------------------------------------------------------------------

  /** Policy → mirrors: start leading local mirrored queues, follow policy changes. */
  reconcile(): void {
    if (this.fenced) return;
    for (const v of this.broker.vhosts.values()) {
      for (const q of v.queues.values()) {
        if (q.remote !== null || q.exclusiveOwner !== null || q.deleted) continue;
        const key = this.keys.haKey(v.name, q.name);
        const policy = this.policyOf(v.name, q.name);
        const lm = this.leading.get(key);
        if (policy === null) {
          if (lm !== undefined) void this.stopLeading(key, lm, true);
          continue;
        }
        if (lm === undefined) {
          void this.startLeading(v, q, policy);
          continue;
        }
        lm.minIsr = policy.minIsr;
        lm.setMembers(this.membersFor(policy, lm.members));
        const known = this.records.get(key);
        if (known !== undefined && !sameSet(known.record.members, lm.members)) {
          void this.update(key, (r) => ({ ...r, members: lm.members }));
        }
      }
    }
    for (const [key, lm] of this.leading) {
      const v = this.broker.vhosts.get(lm.queue.vhost);
      if (v?.queues.get(lm.queue.name) === lm.queue && !lm.queue.deleted) continue;
      // Deleted by a client: the record goes too. Replaced by a proxy: someone else leads.
      void this.stopLeading(key, lm, v?.queues.get(lm.queue.name) === undefined);
    }
  }

  private async startLeading(v: VHost, q: Queue, policy: HaPolicy): Promise<void> {
    const key = this.keys.haKey(v.name, q.name);
    if (this.busy.has(key)) return;
    this.busy.add(key);
    try {
      const me = this.host.nodeName;
      const known = this.records.get(key);
      if (known !== undefined && known.record.leader !== me) return; // transient: metadata catches up
      const members = this.membersFor(policy, known?.record.members ?? []);
      // Every new leadership is a new epoch: mirrors start over from this leader's ids.
      const record: HaRecord = { epoch: (known?.record.epoch ?? 0) + 1, leader: me, members, isr: [me] };
      const cond = known === undefined ? this.etcd.if(key, 'Create', '==', 0) : this.etcd.if(key, 'Mod', '==', known.modRevision);
      const r = await cond.then(this.etcd.put(key).value(JSON.stringify(record))).commit();
      if (!r.succeeded || q.deleted || v.queues.get(q.name) !== q) return;
      this.records.set(key, { record, modRevision: r.header.revision });
      const lm = this.attach(v, q, record, policy);
      q.warmColdTail();
      lm.adopt(q.peekReady(0, q.messageCount));
      lm.setMembers(members);
      this.log.info({ queue: q.name, vhost: v.name, epoch: record.epoch, members }, 'leading mirrored queue');
    } catch (err) {
      this.log.warn({ queue: q.name, err: (err as Error).message }, 'could not start mirroring');
    } finally {
      this.busy.delete(key);
    }
  }

  private attach(v: VHost, q: Queue, record: HaRecord, policy: HaPolicy): LeaderMirror {
    const key = this.keys.haKey(v.name, q.name);
    const lm = new LeaderMirror(q, record.epoch, this.control(key, v.name), policy.batch, policy.automaticSync, record.isr);
    lm.minIsr = policy.minIsr;
    q.mirror = lm;
    this.leading.set(key, lm);
    return lm;
  }

  private async stopLeading(key: string, lm: LeaderMirror, deleteRecord: boolean): Promise<void> {
    this.leading.delete(key);
    if (deleteRecord) lm.detach();
    else lm.close(null);
    const known = this.records.get(key);
    if (!deleteRecord || known === undefined) return;
    await this.etcd
      .if(key, 'Mod', '==', known.modRevision)
      .then(this.etcd.delete().key(key))
      .commit()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'could not remove a mirror record'));
  }

  /** Leader gone: the first in-sync mirror to win the guarded write leads the next epoch. */
  private async elect(key: string): Promise<void> {
    const known = this.records.get(key);
    const id = this.keys.parseHa(key);
    if (known === undefined || id === null || this.fenced) return;
    const r = known.record;
    const me = this.host.nodeName;
    if (this.host.isUp(r.leader) || !r.isr.includes(me) || r.leader === me) return;
    const replica = this.replicas.get(id.vhost, id.queue);
    if (replica === undefined || replica.epoch !== r.epoch) return;
    const next: HaRecord = { ...r, epoch: r.epoch + 1, leader: me, isr: [me], members: r.members.filter((n) => n !== me) };
    try {
      const res = await this.etcd
        .if(key, 'Mod', '==', known.modRevision)
        .and(this.host.nodeKey(r.leader), 'Create', '==', 0)
        .then(this.etcd.put(key).value(JSON.stringify(next)))
        .commit();
      if (!res.succeeded) return;
      this.records.set(key, { record: next, modRevision: res.header.revision });
      this.log.warn({ queue: id.queue, from: r.leader, epoch: next.epoch }, 'leader of mirrored queue lost: taking over');
      this.promote(id.vhost, id.queue, next);
    } catch (err) {
      this.log.warn({ queue: id.queue, err: (err as Error).message }, 'election failed');
    }
  }

  /**
   * This node leads now (won an election or was handed the queue): the replica becomes a
   * local queue, every message marked redelivered (the old leader may have delivered it), and
   * the metadata sync announces the new home to the other nodes.
   */
  private promote(vhostName: string, queueName: string, record: HaRecord): void {
    const v = this.broker.vhosts.get(vhostName);
    const proxy = v?.queues.get(queueName);
    const replica = this.replicas.get(vhostName, queueName);
    if (v === undefined || proxy === undefined || proxy.remote === null || replica === undefined) return;
    if (replica.epoch !== record.epoch - 1) return;
    this.replicas.drop(vhostName, queueName, true);
    const consumers = proxy instanceof RemoteQueue ? proxy.takeConsumers() : [];
    const held = proxy instanceof RemoteQueue ? proxy.takeHeld() : [];
    const store = proxy.durable ? this.broker.store : null;
    const local = v.adoptQueue(
      queueName,
      proxy.arguments,
      (observer, settings) =>
        new Queue(vhostName, queueName, { durable: proxy.durable, exclusiveOwner: null, autoDelete: proxy.autoDelete, arguments: proxy.arguments, store, pager: this.broker.pager }, observer, settings),
    );
    const policy = this.policyOf(vhostName, queueName) ?? defaultPolicy();
    const lm = this.attach(v, local, record, policy);
    for (const m of replica.ordered()) {
      if (m.msg.storeId !== 0) m.msg.pageable = true;
      local.restore(m.msg, true, m.publishedAt);
    }
    lm.setMembers(this.membersFor(policy, record.members));
    // Publishes that waited here for the new leader: it is us. Their confirms follow the
    // mirrors' as any publish's do.
    for (const h of held) {
      // A copy: the original may also sit in other queues here, under its own store record.
      const msg = new Message(h.msg.exchange, h.msg.routingKey, h.msg.rawProperties, h.msg.body);
      const waits: Array<Promise<void>> = [];
      const s = this.broker.store;
      if (s !== null && local.persists && msg.persistent) {
        msg.storeId = s.publish({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.rawProperties, body: msg.body }, [local.storeKey]);
        waits.push(new Promise<void>((resolve, reject) => s.afterSync((err) => (err === null ? resolve() : reject(err)))));
      }
      this.host.beginPublish(false);
      local.enqueue(msg);
      waits.push(...(this.host.takeForwards() ?? []));
      Promise.all(waits).then(() => h.resolve(), (err: Error) => h.reject(err));
    }
    // Consumers that reached the queue through this node carry on, now locally.
    for (const c of consumers) {
      if (c.cancelOnFailover === true) {
        c.cancelledByQueue(local);
        continue;
      }
      c.movedTo?.(local);
      try {
        local.addConsumer(c);
      } catch {
        c.cancelledByQueue(local);
      }
    }
    this.host.claimQueue(vhostName, queueName).catch((err: Error) => this.log.error({ queue: queueName, err: err.message }, 'could not record the new home of a promoted queue'));
    this.log.warn({ queue: queueName, vhost: vhostName, epoch: record.epoch, messages: replica.messages.size }, 'promoted to leader of mirrored queue');
  }

  /** Graceful stop: hand each led queue to an in-sync mirror after it confirmed everything. */
  async handOver(): Promise<void> {
    const me = this.host.nodeName;
    await Promise.all(
      [...this.leading].map(async ([key, lm]) => {
        const known = this.records.get(key);
        const policy = this.policyOf(lm.queue.vhost, lm.queue.name);
        let target = lm.isr.find((n) => n !== me && this.host.isUp(n));
        if (target === undefined && policy?.promoteOnShutdown === 'always') target = lm.members.find((n) => this.host.isUp(n));
        if (known === undefined || target === undefined) return;
        await lm.drained(1000);
        const next: HaRecord = { ...known.record, epoch: known.record.epoch + 1, leader: target, isr: [target], members: [...lm.members.filter((n) => n !== target), me] };
        lm.close(null);
        this.leading.delete(key);
        const res = await this.etcd.if(key, 'Mod', '==', known.modRevision).then(this.etcd.put(key).value(JSON.stringify(next))).commit().catch(() => null);
        if (res?.succeeded === true) this.log.info({ queue: lm.queue.name, to: target }, 'handed mirrored queue over');
      }),
    );
  }

  // ---- helpers ---------------------------------------------------------------------------

  private control(key: string, vhost: string): MirrorControl {
    return {
      openChannel: (node) => this.host.openChannel(node, vhost, 'mirror'),
      updateIsr: (change) => this.update(key, (r) => ({ ...r, isr: change(r.isr) })).then((r) => r?.isr ?? null),
      addPending: (p) => this.host.addPending(p),
      isUp: (node) => this.host.isUp(node),
      log: this.log,
      replicaTimeoutMs: this.host.replicaTimeoutMs,
    };
  }

  /** A guarded change of a record we lead; changes to one record run one at a time. */
  private update(key: string, change: (r: HaRecord) => HaRecord): Promise<HaRecord | null> {
    const run = async (): Promise<HaRecord | null> => {
      const known = this.records.get(key);
      if (known === undefined || known.record.leader !== this.host.nodeName) return null;
      const next = change(known.record);
      const res = await this.etcd.if(key, 'Mod', '==', known.modRevision).then(this.etcd.put(key).value(JSON.stringify(next))).commit();
      if (!res.succeeded) return null;
      const latest = this.records.get(key);
      if (latest === undefined || BigInt(latest.modRevision) < BigInt(res.header.revision)) this.records.set(key, { record: next, modRevision: res.header.revision });
      return next;
    };
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev.then(run, run);
    this.chains.set(key, next.catch(() => null));
    return next;
  }

  private policyOf(vhost: string, queue: string): HaPolicy | null {
    const d = this.broker.policies.effective('policy', vhost, queue, 'queue')?.definition;
    const mode = d?.['ha-mode'];
    if (d === undefined || (mode !== 'all' && mode !== 'exactly' && mode !== 'nodes')) return null;
    return {
      mode,
      params: d['ha-params'],
      automaticSync: d['ha-sync-mode'] !== 'manual',
      batch: typeof d['ha-sync-batch-size'] === 'number' && d['ha-sync-batch-size'] > 0 ? d['ha-sync-batch-size'] : 4096,
      minIsr: typeof d['ha-min-isr'] === 'number' ? d['ha-min-isr'] : 1,
      promoteOnShutdown: d['ha-promote-on-shutdown'] === 'always' ? 'always' : 'when-synced',
    };
  }

  /** The mirrors a policy asks for among live nodes; current members are kept when possible. */
  private membersFor(policy: HaPolicy, current: readonly string[]): string[] {
    const me = this.host.nodeName;
    const live = this.host.liveNodes().filter((n) => n !== me).sort();
    if (policy.mode === 'all') return live;
    if (policy.mode === 'nodes') {
      const wanted = Array.isArray(policy.params) ? policy.params.map(String) : [];
      return live.filter((n) => wanted.includes(n));
    }
    const n = typeof policy.params === 'number' ? policy.params : Number(policy.params);
    const want = Number.isFinite(n) ? Math.max(0, Math.floor(n) - 1) : 0;
    const kept = current.filter((m) => live.includes(m)).slice(0, want);
    for (const node of live) if (kept.length < want && !kept.includes(node)) kept.push(node);
    return kept;
  }
}

function defaultPolicy(): HaPolicy {
  return { mode: 'all', params: undefined, automaticSync: true, batch: 4096, minIsr: 1, promoteOnShutdown: 'when-synced' };
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}
