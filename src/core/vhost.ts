import { randomBytes } from 'node:crypto';
import { AmqpError } from '../protocol/errors';
import { FieldTable, encodeTable, tableGet, fieldString } from '../protocol/field-table';
import { Binding, Destination, Exchange, ExchangeOptions, isQueue } from './exchanges/exchange';
import { createExchange, isExchangeType } from './exchanges/registry';
import { DefaultExchange } from './exchanges/default';
import { DelayedExchange, fallbackDelayStores, type DelayStores, type ReturnTarget } from './exchanges/delayed';
import type { Message } from './message';
import { DeadLetterReason, EnqueueOutcome, Queue, QueueDeletedReason, QueueObserver, QueueOptions } from './queue/queue';
import { effectiveSettings, QueueSettings } from './queue/settings';
import { PolicyStore } from './policy';
import { publishedRoutingKeys } from './dead-letter';
import { DeadLetterRouter } from './dead-letter-router';
import type { MessageStore } from '../store/message-store';
import type { TransientPager } from './paging';
import { checkQueueEquivalence, checkExchangeEquivalence } from './equivalence';
import { validateQueueArguments } from './queue/arguments';
import { checkQueueLimit } from './limits';

export interface ExchangeDeclare extends ExchangeOptions {
  name: string;
  type: string;
  passive: boolean;
}

export interface QueueDeclare extends QueueOptions {
  name: string;
  passive: boolean;
}

const PREDECLARED: ReadonlyArray<[string, string]> = [
  ['amq.direct', 'direct'],
  ['amq.fanout', 'fanout'],
  ['amq.topic', 'topic'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
];

/** Hooks the rest of the broker hangs on the model (durability, management events). */
export interface VHostListener {
  queueDeleted?(queue: Queue, reason: QueueDeletedReason): void;
  /** A durable exchange, queue or binding came or went: the definitions file must be saved. */
  durableChanged?(): void;
  /** Any exchange, queue or binding came or went, durable or not (the cluster shares them all). */
  topologyChanged?(): void;
}

/**
 * A virtual host: its exchanges, queues and bindings, and publish(). AMQP channels and the
 * HTTP API both go through these methods, so every entry point enforces the same rules.
 */
export class VHost implements QueueObserver {
  readonly exchanges = new Map<string, Exchange>();
  readonly queues = new Map<string, Queue>();
  /** Bindings by destination, so deleting a queue or exchange unbinds it without a scan. */
  private readonly bindingsTo = new Map<Destination, Binding[]>();
  private epoch = 0;
  private readonly candidates: Destination[] = [];
  private readonly pendingExchanges: Exchange[] = [];
  private readonly routed: Queue[] = [];

  constructor(
    readonly name: string,
    private readonly policies: PolicyStore = new PolicyStore(),
    private readonly store: MessageStore | null = null,
    private readonly listener: VHostListener = {},
    private readonly pager: TransientPager | null = null,
    private readonly delays: DelayStores = fallbackDelayStores,
  ) {
    const opts = { durable: true, autoDelete: false, internal: false, arguments: [] as FieldTable };
    this.exchanges.set('', new DefaultExchange(name, opts, this.queues));
    for (const [x, type] of PREDECLARED) this.addSystemExchange(createExchange(type, name, x, opts));
    this.addSystemExchange(createExchange('topic', name, 'amq.rabbitmq.trace', { ...opts, internal: true }));
  }

  // ---- exchanges -------------------------------------------------------------------------

  /** Pre-declared exchanges; they cannot be deleted. */
  private readonly system = new Set<Exchange>();

  private addSystemExchange(x: Exchange): void {
    this.system.add(x);
    this.exchanges.set(x.name, x);
  }

  declareExchange(d: ExchangeDeclare): Exchange {
    if (d.name === '') throw new AmqpError('ACCESS_REFUSED', `operation not permitted on the default exchange`);
    const existing = this.exchanges.get(d.name);
    if (d.passive) {
      if (existing === undefined) throw this.noExchange(d.name);
      return existing;
    }
    if (existing !== undefined) {
      checkExchangeEquivalence(existing, d);
      return existing;
    }
    if (d.name.startsWith('amq.')) {
      throw new AmqpError('ACCESS_REFUSED', `exchange name '${d.name}' contains reserved prefix 'amq.*'`);
    }
    if (!isExchangeType(d.type)) {
      throw new AmqpError('COMMAND_INVALID', `unknown exchange type '${d.type}'`);
    }
    if (d.type === 'x-delayed-message') {
      const inner = fieldString(tableGet(d.arguments, 'x-delayed-type'));
      if (inner === undefined || inner === 'x-delayed-message' || !isExchangeType(inner)) {
        throw new AmqpError('PRECONDITION_FAILED', "Invalid argument, 'x-delayed-type' must be an existing exchange type");
      }
    }
    const x = createExchange(d.type, this.name, d.name, d);
    if (x instanceof DelayedExchange) {
      x.release = (dx, msg) => this.publishReleased(dx, msg);
      x.attach(this.delays);
    }
    this.exchanges.set(d.name, x);
    this.changed(x.durable);
    return x;
  }

  /** Exchanges named by clients; `forWrite` mirrors RabbitMQ's error for the default exchange. */
  exchange(name: string): Exchange {
    const x = this.exchanges.get(name);
    if (x === undefined) throw this.noExchange(name);
    return x;
  }

  deleteExchange(name: string, ifUnused: boolean): void {
    if (name === '') throw new AmqpError('ACCESS_REFUSED', 'operation not permitted on the default exchange');
    const x = this.exchanges.get(name);
    if (x === undefined) return; // RabbitMQ 3.x: deleting a missing exchange succeeds
    if (this.system.has(x)) {
      throw new AmqpError('ACCESS_REFUSED', `deletion of system exchange '${name}' in vhost '${this.name}' not allowed`);
    }
    if (ifUnused && x.bindings.length !== 0) {
      throw new AmqpError('PRECONDITION_FAILED', `exchange '${name}' in vhost '${this.name}' in use`);
    }
    this.removeExchange(x);
  }

  // ---- queues ----------------------------------------------------------------------------

  /** `restoring` is set when definitions are reloaded: server-named (amq.gen-) queues come back too. */
  declareQueue(d: QueueDeclare, owner: object, restoring = false): { queue: Queue; created: boolean } {
    let name = d.name;
    if (name === '') {
      if (d.passive) throw this.noQueue('');
      name = `amq.gen-${randomBytes(16).toString('base64url')}`;
    } else if (!d.passive && !restoring && name.startsWith('amq.')) {
      throw new AmqpError('ACCESS_REFUSED', `queue name '${name}' contains reserved prefix 'amq.*'`);
    }
    const existing = this.queues.get(name);
    if (existing !== undefined) {
      this.checkExclusiveAccess(existing, owner);
      if (!d.passive) checkQueueEquivalence(existing, d);
      existing.touch();
      return { queue: existing, created: false };
    }
    if (d.passive) throw this.noQueue(name);
    if (!restoring) checkQueueLimit(this, name);
    validateQueueArguments(name, this.name, d.arguments);
    const q = new Queue(this.name, name, { ...d, store: this.store, pager: this.pager }, this, this.settingsFor(name, d.arguments));
    this.queues.set(name, q);
    this.changed(q.durable && q.exclusiveOwner === null);
    return { queue: q, created: true };
  }

  /**
   * Installs a queue built elsewhere (a cluster peer's queue seen through a proxy), replacing
   * any queue of that name here. Not a declaration: no limits, no change notifications.
   */
  adoptQueue(name: string, args: FieldTable, build: (observer: QueueObserver, settings: QueueSettings) => Queue): Queue {
    // The new queue takes over the old one's bindings; deleting the old one while it is
    // still registered removes them (and cancels its consumers).
    const old = this.queues.get(name);
    const bindings = old === undefined ? [] : [...this.bindingsToDestination(old)];
    old?.delete('deleted');
    const q = build(this, this.settingsFor(name, args));
    this.queues.set(name, q);
    for (const b of bindings) this.bind(b.source, q, b.routingKey, b.arguments);
    return q;
  }

  /** A queue the given connection may use: missing gives 404, someone else's exclusive queue 405. */
  queue(name: string, owner: object): Queue {
    const q = this.queues.get(name);
    if (q === undefined) throw this.noQueue(name);
    this.checkExclusiveAccess(q, owner);
    return q;
  }

  deleteQueue(name: string, owner: object, ifUnused: boolean, ifEmpty: boolean): number {
    const q = this.queues.get(name);
    if (q === undefined) return 0; // RabbitMQ 3.x: deleting a missing queue succeeds with count 0
    this.checkExclusiveAccess(q, owner);
    if (ifUnused && q.consumerCount !== 0) {
      throw new AmqpError('PRECONDITION_FAILED', `queue '${name}' in vhost '${this.name}' in use`);
    }
    if (ifEmpty && q.messageCount !== 0) {
      throw new AmqpError('PRECONDITION_FAILED', `queue '${name}' in vhost '${this.name}' not empty`);
    }
    return q.delete('deleted');
  }

  queueDeleted(queue: Queue, reason: QueueDeletedReason): void {
    if (this.queues.get(queue.name) !== queue) return;
    this.queues.delete(queue.name);
    this.unbindAllTo(queue);
    this.listener.queueDeleted?.(queue, reason);
    this.changed(queue.durable);
  }

  // ---- bindings --------------------------------------------------------------------------

  bind(source: Exchange, destination: Destination, routingKey: string, args: FieldTable): void {
    if (source.name === '') throw this.defaultExchangeRefusal(destination);
    if (!isQueue(destination) && destination.name === '') throw this.defaultExchangeRefusal(destination);
    const b = this.makeBinding(source, destination, routingKey, args);
    if (source.bind(b)) {
      let list = this.bindingsTo.get(destination);
      if (list === undefined) this.bindingsTo.set(destination, (list = []));
      list.push(b);
      this.changed(source.durable && destination.durable);
    }
  }

  unbind(source: Exchange, destination: Destination, routingKey: string, args: FieldTable): void {
    if (source.name === '') throw this.defaultExchangeRefusal(destination);
    if (!isQueue(destination) && destination.name === '') throw this.defaultExchangeRefusal(destination);
    const b = source.unbind(destination, routingKey, argumentsKey(args));
    if (b === undefined) return; // RabbitMQ 3.x treats a missing binding as already gone
    this.forgetBinding(b);
    this.changed(source.durable && destination.durable);
    this.maybeAutoDelete(source);
  }

  /** Every binding whose destination is `d` (management's /bindings/destination view). */
  bindingsToDestination(d: Destination): readonly Binding[] {
    return this.bindingsTo.get(d) ?? [];
  }

  // ---- publish ---------------------------------------------------------------------------

  /**
   * Route a message and enqueue it on every matching queue. Exchange-to-exchange bindings
   * and alternate exchanges are followed with a work list and per-pass epoch marks instead
   * of recursion and Sets, so cycles end and nothing is allocated per publish.
   * Returns the number of queues that received the message.
   */
  /**
   * Route and enqueue. Returns the number of queues that took the message; sets
   * `lastPublishRejected` when a queue refused it (x-overflow reject-publish), which the
   * publisher's confirm turns into a nack.
   */
  publish(exchange: Exchange, msg: Message, extraKeys: readonly string[] | null = null): number {
    if (extraKeys === null && exchange instanceof DefaultExchange) {
      // The default exchange names one queue directly: no routing pass needed.
      this.lastPublishRejected = false;
      this.held = false;
      exchange.stats.publishIn++;
      const q = this.queues.get(msg.routingKey);
      if (q === undefined) return 0;
      exchange.stats.publishOut++;
      if (q.persists && msg.persistent) this.persist(msg, this.single(q));
      if (q.enqueue(msg) !== EnqueueOutcome.Accepted) this.lastPublishRejected = true;
      if (q.backlogged) this.backloggedQueue = q;
      if (this.deadLetters.hasPending) this.deadLetters.flush();
      return this.lastPublishRejected ? 0 : 1;
    }
    const queues = this.route(exchange, msg, extraKeys);
    const n = queues.length;
    if (this.store !== null && n !== 0 && msg.persistent) this.persist(msg, queues);
    let accepted = 0;
    this.lastPublishRejected = false;
    const held = this.held;
    // The routed array is the vhost's scratch: dead letters wait until the loop is done.
    const nested = this.deadLetters.deferred;
    this.deadLetters.deferred = true;
    try {
      for (let i = 0; i < n; i++) {
        const q = queues[i]!;
        if (q.enqueue(msg) === EnqueueOutcome.Accepted) accepted++;
        else this.lastPublishRejected = true;
        if (q.backlogged) this.backloggedQueue = q;
      }
    } finally {
      this.deadLetters.deferred = nested;
    }
    queues.length = 0;
    if (this.deadLetters.hasPending && !nested) this.deadLetters.flush();
    // A delayed exchange took it (and wrote it to its schedule): routed, as far as the
    // publisher knows.
    if (held && n === 0) return 1;
    return this.lastPublishRejected ? accepted : n;
  }

  /** A delayed message is due: route it like a fresh publish through its exchange. */
  private publishReleased(x: DelayedExchange, msg: Message): void {
    if (x.deleted) return;
    const extra = publishedRoutingKeys(msg).slice(1);
    const routed = this.publish(x, msg, extra.length === 0 ? null : extra);
    if (routed === 0 && msg.returnTo !== null) msg.returnTo.returnUnroutable(msg);
    msg.returnTo = null;
  }

  /** The last publish was a held mandatory message: its return, if any, goes to `to`. */
  returnHeldTo(to: ReturnTarget): void {
    if (this.held) this.heldBy?.returnHeldTo(to);
  }

  /** True when the last publish was taken by a delayed exchange (routing happens later). */
  get lastPublishHeld(): boolean {
    return this.held;
  }

  /** Set by route() when a delayed exchange held the message. */
  private held = false;
  private heldBy: DelayedExchange | null = null;

  lastPublishRejected = false;
  /** A queue the last publishes pushed past its flow high-water mark; the publisher should pause. */
  backloggedQueue: Queue | null = null;

  // ---- durability ------------------------------------------------------------------------

  private readonly one: Queue[] = [];

  private single(q: Queue): Queue[] {
    this.one[0] = q;
    return this.one;
  }

  /**
   * A persistent message bound for durable queues is written once for all of them before it
   * is enqueued; the publisher's confirm then waits for the group commit (msg.storeId != 0).
   */
  private persist(msg: Message, queues: readonly Queue[]): void {
    let keys: string[] | null = null;
    for (const q of queues) if (q.persists) (keys ??= []).push(q.storeKey);
    if (keys === null) return;
    msg.storeId = this.storeMessage(msg, keys);
    msg.pageable = keys.length === queues.length;
  }

  private storeMessage(msg: Message, keys: string[]): number {
    return this.store!.publish({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.rawProperties, body: msg.body }, keys);
  }

  // ---- dead-lettering --------------------------------------------------------------------

  private readonly deadLetters = new DeadLetterRouter({
    exchange: (name) => this.exchanges.get(name),
    routeToQueues: (x, copy, extraKeys) => {
      const scratch = this.route(x, copy, extraKeys);
      const queues = scratch.slice();
      scratch.length = 0;
      return queues;
    },
    persist: (copy, queues) => {
      if (this.store !== null) this.persist(copy, queues);
    },
  });

  /** QueueObserver: a message left `queue` without an ack. */
  deadLetter(queue: Queue, msg: Message, reason: DeadLetterReason): void {
    this.deadLetters.add(queue, msg, reason);
  }

  // ---- policies --------------------------------------------------------------------------

  private settingsFor(name: string, args: import('../protocol/field-table').FieldTable): QueueSettings {
    return effectiveSettings(
      args,
      this.policies.effective('policy', this.name, name, 'queue'),
      this.policies.effective('operator', this.name, name, 'queue'),
    );
  }

  /** Policies changed: every queue re-reads its effective settings. */
  reapplyPolicies(): void {
    for (const q of this.queues.values()) q.applySettings(this.settingsFor(q.name, q.arguments));
  }

  /**
   * The queues a message would reach; the returned array is reused by the next call.
   * extraKeys are sender-selected (CC/BCC) routing keys tried after the message's own.
   */
  route(exchange: Exchange, msg: Message, extraKeys: readonly string[] | null = null): Queue[] {
    // Queues are marked once per publish (deduplicated across CC/BCC keys); exchanges once
    // per key, since another key may legitimately route through the same exchange again.
    const publishMark = ++this.epoch;
    const out = this.routed;
    out.length = 0;
    this.held = false;
    exchange.stats.publishIn++;
    this.routeKey(exchange, msg, msg.routingKey, publishMark, ++this.epoch);
    if (extraKeys !== null) {
      for (const key of extraKeys) this.routeKey(exchange, msg, key, publishMark, ++this.epoch);
    }
    if (out.length !== 0) exchange.stats.publishOut++;
    return out;
  }

  private routeKey(exchange: Exchange, msg: Message, key: string, publishMark: number, epoch: number): void {
    const out = this.routed;
    const work = this.pendingExchanges;
    const cand = this.candidates;
    work.length = 0;
    work.push(exchange);
    exchange.routeEpoch = epoch;
    while (work.length !== 0) {
      const x = work.pop()!;
      if (x instanceof DelayedExchange && x.hold(msg, key)) {
        this.held = true;
        this.heldBy = x;
        continue;
      }
      cand.length = 0;
      x.route(msg, key, cand);
      if (cand.length === 0) {
        const ae = this.alternateOf(x);
        if (ae !== undefined && ae.routeEpoch !== epoch) {
          ae.routeEpoch = epoch;
          work.push(ae);
        }
        continue;
      }
      for (let i = 0; i < cand.length; i++) {
        const d = cand[i]!;
        if (isQueue(d)) {
          if (d.routeEpoch === publishMark) continue;
          d.routeEpoch = publishMark;
          out.push(d);
        } else if (d.routeEpoch !== epoch) {
          d.routeEpoch = epoch;
          work.push(d);
        }
      }
    }
    cand.length = 0;
  }

  // ---- connection teardown ---------------------------------------------------------------

  /** An exclusive queue's owner closed: its queues go too (AMQP 0-9-1 §1.7.2.1.2). */
  deleteExclusiveQueues(owner: object): void {
    for (const q of [...this.queues.values()]) {
      if (q.exclusiveOwner === owner) q.delete('owner-closed');
    }
  }

  // ---- internals -------------------------------------------------------------------------

  /** The exchange's alternate-exchange argument, or else the alternate-exchange of its policy. */
  private alternateOf(x: Exchange): Exchange | undefined {
    const v = tableGet(x.arguments, 'alternate-exchange');
    let name = v === undefined ? undefined : fieldString(v);
    if (name === undefined) {
      const fromPolicy = this.policies.effective('policy', this.name, x.name, 'exchange')?.definition['alternate-exchange'];
      if (typeof fromPolicy === 'string') name = fromPolicy;
    }
    return name === undefined ? undefined : this.exchanges.get(name);
  }

  private checkExclusiveAccess(q: Queue, owner: object): void {
    if (q.exclusiveOwner !== null && q.exclusiveOwner !== owner) {
      throw new AmqpError(
        'RESOURCE_LOCKED',
        `cannot obtain exclusive access to locked queue '${q.name}' in vhost '${this.name}'. ` +
          `It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`,
      );
    }
  }

  private changed(durable: boolean): void {
    if (durable) this.listener.durableChanged?.();
    this.listener.topologyChanged?.();
  }

  private makeBinding(source: Exchange, destination: Destination, routingKey: string, args: FieldTable): Binding {
    return { source, destination, routingKey, arguments: args, argumentsKey: argumentsKey(args) };
  }

  private removeExchange(x: Exchange): void {
    x.deleted = true;
    this.changed(x.durable);
    if (x instanceof DelayedExchange) {
      x.dispose();
      // Messages stored by versions that kept delayed messages in the message store.
      this.store?.deleteQueue(x.storeKey);
    }
    this.exchanges.delete(x.name);
    for (const b of [...x.bindings]) {
      x.unbind(b.destination, b.routingKey, b.argumentsKey);
      this.forgetBinding(b);
    }
    this.unbindAllTo(x);
  }

  private unbindAllTo(d: Destination): void {
    const list = this.bindingsTo.get(d);
    if (list === undefined) return;
    this.bindingsTo.delete(d);
    for (const b of list) {
      b.source.unbind(d, b.routingKey, b.argumentsKey);
      this.maybeAutoDelete(b.source);
    }
  }

  private forgetBinding(b: Binding): void {
    const list = this.bindingsTo.get(b.destination);
    if (list === undefined) return;
    const at = list.indexOf(b);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.bindingsTo.delete(b.destination);
  }

  /** An auto-delete exchange goes when its last binding as a source goes. */
  private maybeAutoDelete(x: Exchange): void {
    if (x.autoDelete && !x.deleted && x.bindings.length === 0) this.removeExchange(x);
  }

  private defaultExchangeRefusal(_d: Destination): AmqpError {
    return new AmqpError('ACCESS_REFUSED', `operation not permitted on the default exchange`);
  }

  noExchange(name: string): AmqpError {
    return new AmqpError('NOT_FOUND', `no exchange '${name}' in vhost '${this.name}'`);
  }

  noQueue(name: string): AmqpError {
    return new AmqpError('NOT_FOUND', `no queue '${name}' in vhost '${this.name}'`);
  }
}

function argumentsKey(args: FieldTable): string {
  return args.length === 0 ? '' : encodeTable(args).toString('latin1');
}
