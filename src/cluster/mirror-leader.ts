import type { Queue, QueueEntry } from '../core/queue/queue';
import type { QueueMirrorHook } from '../core/queue/remote';
import type { Logger } from '../observability/logger';
import type { LinkChannel } from './link-client';
import { encodeMirror, encodeSettle, MIRROR_EXCHANGE, MirrorOp, NO_PROPERTIES } from './mirror-protocol';

/** What the leader side needs from the HA coordinator. */
export interface MirrorControl {
  /** A confirm-mode link channel to `node` for this queue's vhost. */
  openChannel(node: string): Promise<LinkChannel>;
  /** Changes the in-sync set in etcd, guarded by our leadership; false when deposed. */
  updateIsr(change: (isr: readonly string[]) => string[]): Promise<string[] | null>;
  isUp(node: string): boolean;
  /** Pending publisher confirms of the message being routed now wait on this. */
  addPending(p: Promise<void>): void;
  readonly log: Logger;
  readonly replicaTimeoutMs: number;
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

/** One mirror of the queue, seen from the leader. */
class Follower {
  channel: Promise<LinkChannel> | null = null;
  inSync = false;
  syncing = false;
  failed = false;
  failedAt = 0;
  /** Which catch-up is current: an older one that fails must not touch the newer one's state. */
  syncRun = 0;
  /** cancel_sync: no automatic catch-up until the next sync. */
  paused = false;
  /** Replication acks the leader's publishers wait for. */
  readonly waiters = new Set<Waiter>();
  inflight = 0;
  /** Bumped when the mirror is dropped: acks of operations sent before no longer count. */
  gen = 0;
  /** When the oldest unconfirmed operation was sent (0 when none is out). */
  waitingSince = 0;

  constructor(readonly node: string) {}
}

/**
 * The leader side of a mirrored queue: every message that enters the queue goes to each
 * mirror before the publisher's confirm (which waits for every in-sync mirror's own fsync);
 * messages that leave are settled on the mirrors in per-turn batches. A new or returning
 * mirror catches up from a snapshot walked in batches alongside the live stream, never
 * blocking the queue; it joins the in-sync set (in etcd) once it confirmed everything. A
 * mirror that stops confirming for replicaTimeoutMs is dropped from the in-sync set (in etcd
 * first), and the confirms waiting on it go out.
 */
export class LeaderMirror implements QueueMirrorHook {
  /** Messages in the queue by id (entry seq), in arrival order: the catch-up snapshot. */
  private readonly live = new Map<number, QueueEntry>();
  private readonly followers = new Map<string, Follower>();
  private settles: number[] = [];
  private settleScheduled = false;
  private closed = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly queue: Queue,
    readonly epoch: number,
    private readonly control: MirrorControl,
    private readonly syncBatch: number,
    private readonly automaticSync: boolean,
    inSync: readonly string[],
  ) {
    this.timer = setInterval(() => this.checkTimeouts(), 250);
    this.timer.unref();
    this.isr = [...inSync];
  }

  /** The in-sync set as last recorded in etcd (the leader included). */
  isr: string[];
  /** ha-min-isr: publishes are refused while fewer copies are in sync. */
  minIsr = 1;
  /** Set when this node may have lost its lease: nothing more is confirmed. */
  fenced = false;

  get members(): string[] {
    return [...this.followers.keys()];
  }

  /** Seeds the snapshot with what the queue holds when mirroring starts (or after promotion). */
  adopt(entries: Iterable<QueueEntry>): void {
    for (const e of entries) this.live.set(e.seq, e);
  }

  // ---- QueueMirrorHook -------------------------------------------------------------------

  added(entry: QueueEntry): void {
    this.live.set(entry.seq, entry);
    if (this.closed || this.fenced || this.isr.length < this.minIsr) {
      const why = this.closed ? 'not the leader of this mirrored queue any more' : this.fenced ? 'leader fenced (etcd unreachable)' : `fewer than ha-min-isr ${this.minIsr} copies in sync`;
      const refused = Promise.reject(new Error(why));
      refused.catch(() => undefined);
      this.control.addPending(refused);
    }
    if (this.followers.size === 0) return;
    const msg = entry.msg;
    const body = encodeMirror(
      { op: MirrorOp.Enqueue, epoch: this.epoch, id: entry.seq, exchange: msg.exchange, routingKey: msg.routingKey, publishedAt: Date.now() },
      msg.body,
    );
    const waits: Array<Promise<void>> = [];
    for (const f of this.followers.values()) {
      if (!f.inSync && !f.syncing) continue;
      const sent = this.send(f, msg.rawProperties, body);
      if (f.inSync) waits.push(this.waitFor(f, sent));
    }
    if (waits.length !== 0) this.control.addPending(waits.length === 1 ? waits[0]! : Promise.all(waits).then(() => undefined));
  }

  removed(entry: QueueEntry): void {
    if (!this.live.delete(entry.seq)) return;
    if (this.followers.size === 0) return;
    this.settles.push(entry.seq);
    if (!this.settleScheduled) {
      this.settleScheduled = true;
      setImmediate(() => this.flushSettles());
    }
  }

  // ---- membership ------------------------------------------------------------------------

  /** Mirrors wanted by the policy; new ones start catching up, dropped ones are forgotten. */
  setMembers(nodes: readonly string[]): void {
    for (const node of nodes) {
      if (!this.followers.has(node)) this.followers.set(node, new Follower(node));
    }
    for (const [node, f] of this.followers) {
      if (nodes.includes(node)) continue;
      this.followers.delete(node);
      this.release(f);
      void f.channel?.then((c) => c.close()).catch(() => undefined);
      if (this.isr.includes(node)) void this.commitIsr((isr) => isr.filter((n) => n !== node));
    }
    for (const f of this.followers.values()) if (!f.inSync && !f.syncing) this.startSync(f);
  }

  /** Operator's sync: every mirror not in sync catches up now, with backfill even in manual mode. */
  syncNow(): void {
    for (const f of this.followers.values()) {
      if (f.inSync) continue;
      f.syncing = false;
      f.paused = false;
      this.startSync(f, true);
    }
  }

  /** Operator's cancel_sync: catch-ups in progress stop (the mirrors stay out of sync). */
  cancelSync(): void {
    for (const f of this.followers.values()) {
      if (f.inSync) continue;
      f.syncing = false;
      f.paused = true;
    }
  }

  /** A mirror's node is gone: drop it from the in-sync set now rather than at the timeout. */
  nodeDown(node: string): void {
    const f = this.followers.get(node);
    if (f !== undefined) this.evict(f, 'node down');
  }

  /** A mirror's node is back: catch it up. */
  nodeUp(node: string): void {
    const f = this.followers.get(node);
    if (f !== undefined && !f.inSync && !f.syncing) this.startSync(f);
  }

  /**
   * Leadership ends (deposed, handed over, queue deleted): nothing more is sent, and the hook
   * stays on the queue so that whatever still reaches it is refused (nacked), never confirmed
   * unreplicated, until the proxy for the new leader replaces it.
   */
  close(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const f of this.followers.values()) {
      for (const w of f.waiters) err === null ? w.resolve() : w.reject(err);
      f.waiters.clear();
      void f.channel?.then((c) => c.close()).catch(() => undefined);
    }
    this.followers.clear();
  }

  /** The policy no longer mirrors the queue: it carries on as a plain local queue. */
  detach(): void {
    this.close(null);
    if (this.queue.mirror === this) this.queue.mirror = null;
  }

  /** Resolves once every in-sync mirror confirmed everything sent so far (graceful handover). */
  async drained(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    this.flushSettles();
    while (Date.now() < deadline) {
      let busy = false;
      for (const f of this.followers.values()) if (f.inSync && f.inflight !== 0) busy = true;
      if (!busy) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  }

  // ---- replication -----------------------------------------------------------------------

  private channelOf(f: Follower): Promise<LinkChannel> {
    if (f.channel === null) {
      const ch = this.control.openChannel(f.node).then(async (c) => {
        await c.confirmSelect();
        c.onClose = (err) => this.evict(f, `link closed: ${err.message}`);
        return c;
      });
      ch.catch((err: Error) => this.evict(f, `link failed: ${err.message}`));
      f.channel = ch;
    }
    return f.channel;
  }

  /** Sends one operation; the returned promise settles with the mirror's confirm. */
  private send(f: Follower, properties: Buffer, body: Buffer): Promise<void> {
    if (f.inflight++ === 0) f.waitingSince = Date.now();
    const gen = f.gen;
    const done = this.channelOf(f).then((c) => c.publish(MIRROR_EXCHANGE, this.queue.name, false, properties, body));
    done.then(
      () => {
        if (f.gen !== gen) return;
        f.inflight--;
        f.waitingSince = f.inflight === 0 ? 0 : Date.now();
      },
      (err: Error) => {
        if (f.gen !== gen) return;
        f.inflight--;
        this.evict(f, err.message);
      },
    );
    return done;
  }

  /** A publisher's confirm waits for this mirror, unless it is dropped from the in-sync set first. */
  private waitFor(f: Follower, sent: Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        resolve: () => {
          f.waiters.delete(w);
          resolve();
        },
        reject: (err) => {
          f.waiters.delete(w);
          reject(err);
        },
      };
      f.waiters.add(w);
      sent.then(w.resolve, () => undefined);
    });
  }

  private flushSettles(): void {
    this.settleScheduled = false;
    if (this.settles.length === 0 || this.closed) return;
    const body = encodeSettle(this.epoch, this.settles);
    this.settles = [];
    for (const f of this.followers.values()) {
      if (f.inSync || f.syncing) this.send(f, NO_PROPERTIES, body).catch(() => undefined);
    }
  }

  private startSync(f: Follower, backfill = this.automaticSync): void {
    if (this.closed || f.paused) return;
    f.syncing = true;
    f.failed = false;
    f.failedAt = Date.now();
    const attempt = ++f.syncRun;
    void this.catchUp(f, backfill, attempt).catch((err: Error) => {
      if (f.syncRun !== attempt) return;
      f.syncing = false;
      this.control.log.info({ queue: this.queue.name, mirror: f.node, err: err.message }, 'mirror catch-up interrupted; will retry');
    });
  }

  /**
   * Reset, then the snapshot in batches (each waits for the previous batch's confirms, so a
   * slow mirror cannot fill the leader's memory), then SyncDone; its confirm means the mirror
   * holds everything the queue holds, because live operations went out in the same stream.
   */
  private async catchUp(f: Follower, backfill: boolean, run: number): Promise<void> {
    const stale = (): boolean => this.closed || !f.syncing || f.syncRun !== run;
    const header = { epoch: this.epoch, id: 0, exchange: '', routingKey: '', publishedAt: 0 };
    this.flushSettles();
    await this.send(f, NO_PROPERTIES, encodeMirror({ ...header, op: MirrorOp.Reset }, null));
    const boundary = this.lastSeq();
    if (backfill) {
      let batch: Array<Promise<void>> = [];
      for (const [seq, e] of this.live) {
        if (seq > boundary) break;
        if (stale()) return;
        const msg = e.msg;
        batch.push(this.send(f, msg.rawProperties, encodeMirror({ ...header, op: MirrorOp.Enqueue, id: seq, exchange: msg.exchange, routingKey: msg.routingKey, publishedAt: Date.now() }, msg.body)));
        if (batch.length >= this.syncBatch) {
          await Promise.all(batch);
          batch = [];
        }
      }
      await Promise.all(batch);
    } else {
      // ha-sync-mode manual (RabbitMQ's meaning): no backfill; in sync once the old head drained.
      while (!stale() && this.oldestSeq() !== undefined && this.oldestSeq()! <= boundary) {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (stale()) return;
    await this.send(f, NO_PROPERTIES, encodeMirror({ ...header, op: MirrorOp.SyncDone }, null));
    if (stale() || !this.followers.has(f.node)) return;
    if (!(await this.commitIsr((isr) => (isr.includes(f.node) ? [...isr] : [...isr, f.node])))) throw new Error('deposed while adding a mirror to the in-sync set');
    f.inSync = true;
    f.syncing = false;
    this.control.log.info({ queue: this.queue.name, mirror: f.node, epoch: this.epoch }, 'mirror in sync');
  }

  private lastSeq(): number {
    let last = 0;
    for (const seq of this.live.keys()) last = seq;
    return last;
  }

  private oldestSeq(): number | undefined {
    for (const seq of this.live.keys()) return seq;
    return undefined;
  }

  private checkTimeouts(): void {
    const now = Date.now();
    for (const f of this.followers.values()) {
      // A mirror that failed but whose node is still (or again) up gets another catch-up.
      if (!f.inSync && !f.syncing && now - f.failedAt > 1000 && this.control.isUp(f.node)) this.startSync(f);
      if ((f.inSync || f.syncing) && f.waitingSince !== 0 && now - f.waitingSince > this.control.replicaTimeoutMs) {
        this.evict(f, `no confirm for ${this.control.replicaTimeoutMs} ms`);
      }
    }
  }

  /**
   * Out of the in-sync set, recorded in etcd before anything relies on it: only then do the
   * confirms waiting on this mirror go out. Deposed (the guarded write fails): they are nacked.
   */
  private evict(f: Follower, why: string): void {
    if (this.closed || f.failed) return;
    f.failed = true;
    f.failedAt = Date.now();
    const wasInSync = f.inSync;
    f.inSync = false;
    f.syncing = false;
    f.gen++;
    f.inflight = 0;
    f.waitingSince = 0;
    const ch = f.channel;
    f.channel = null;
    void ch?.then((c) => c.close()).catch(() => undefined);
    this.control.log.warn({ queue: this.queue.name, mirror: f.node, why }, 'mirror dropped from the in-sync set');
    if (!wasInSync) {
      this.release(f);
      return;
    }
    void this.commitIsr((isr) => isr.filter((n) => n !== f.node)).then((ok) => {
      if (ok) this.release(f);
      else for (const w of [...f.waiters]) w.reject(new Error('deposed: in-sync set not updated'));
    });
  }

  private release(f: Follower): void {
    for (const w of [...f.waiters]) w.resolve();
  }

  private async commitIsr(change: (isr: readonly string[]) => string[]): Promise<boolean> {
    const isr = await this.control.updateIsr(change).catch(() => null);
    if (isr !== null) this.isr = isr;
    return isr !== null;
  }
}
