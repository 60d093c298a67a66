import { Message } from '../core/message';
import type { VHost } from '../core/vhost';
import { AmqpError } from '../protocol/errors';
import type { MessageStore } from '../store/message-store';
import { decodeMirror, MirrorOp, settleIds } from './mirror-protocol';

/** One message a mirror holds, under the leader's id for it. */
export interface ReplicaMessage {
  readonly id: number;
  readonly msg: Message;
  readonly publishedAt: number;
}

/** What this node holds of one mirrored queue led elsewhere, for one leader epoch. */
export class Replica {
  readonly messages = new Map<number, ReplicaMessage>();

  constructor(
    readonly epoch: number,
    readonly storeKey: string,
  ) {}

  /** The messages in the leader's order (ids grow with arrival; requeues keep theirs). */
  ordered(): ReplicaMessage[] {
    return [...this.messages.values()].sort((a, b) => a.id - b.id);
  }
}

/**
 * The mirror side of replication: applies the leader's operations to in-memory replicas and
 * writes persistent messages of durable queues to this node's store under the queue's own
 * store key, so a promotion finds them where a local queue would keep them. Operations from
 * an older epoch are refused, which fences a deposed leader: its confirms turn into nacks.
 */
export class MirrorReplicas {
  private readonly replicas = new Map<string, Replica>();

  constructor(
    private readonly store: MessageStore | null,
    private readonly vhost: (name: string) => VHost | undefined,
  ) {}

  get(vhost: string, queue: string): Replica | undefined {
    return this.replicas.get(`${vhost}\u0000${queue}`);
  }

  /** Promotion took the messages over, or the queue stopped being mirrored here. */
  drop(vhost: string, queue: string, keepStored: boolean): Replica | undefined {
    const key = `${vhost}\u0000${queue}`;
    const r = this.replicas.get(key);
    if (r === undefined) return undefined;
    this.replicas.delete(key);
    if (!keepStored) this.clearStored(r);
    return r;
  }

  /** Returns true when it wrote to the store: the confirm must wait for the group commit. */
  apply(vhostName: string, queue: string, properties: Buffer, body: Buffer): boolean {
    let decoded;
    try {
      decoded = decodeMirror(body);
    } catch (err) {
      throw new AmqpError('FRAME_ERROR', `malformed mirror operation: ${(err as Error).message}`);
    }
    const { header: h, payload } = decoded;
    const key = `${vhostName}\u0000${queue}`;
    let r = this.replicas.get(key);
    if (r !== undefined && h.epoch < r.epoch) {
      throw new AmqpError('PRECONDITION_FAILED', `stale mirror epoch ${h.epoch} for queue '${queue}' (now ${r.epoch})`);
    }
    if (h.op === MirrorOp.Reset) {
      if (r !== undefined) this.clearStored(r);
      this.replicas.set(key, new Replica(h.epoch, key));
      return false;
    }
    if (r === undefined || h.epoch > r.epoch) {
      throw new AmqpError('PRECONDITION_FAILED', `mirror of queue '${queue}' was not reset for epoch ${h.epoch}`);
    }
    switch (h.op) {
      case MirrorOp.Enqueue: {
        if (r.messages.has(h.id)) return false;
        const msg = new Message(h.exchange, h.routingKey, Buffer.from(properties), Buffer.from(payload));
        const q = this.vhost(vhostName)?.queues.get(queue);
        let stored = false;
        if (this.store !== null && msg.persistent && q?.durable === true) {
          msg.storeId = this.store.publish({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.rawProperties, body: msg.body }, [key]);
          msg.pageable = true;
          // A mirror needs the bytes only if it is promoted: keep them on disk until then.
          msg.pageOut(this.store);
          stored = true;
        }
        r.messages.set(h.id, { id: h.id, msg, publishedAt: h.publishedAt });
        return stored;
      }
      case MirrorOp.Settle:
        for (const id of settleIds(payload)) {
          const m = r.messages.get(id);
          if (m === undefined) continue;
          r.messages.delete(id);
          if (m.msg.storeId !== 0) this.store?.ack(key, m.msg.storeId);
        }
        return false;
      case MirrorOp.SyncDone:
        return false;
      default:
        throw new AmqpError('FRAME_ERROR', `unknown mirror operation ${h.op as number}`);
    }
  }

  private clearStored(r: Replica): void {
    if (this.store === null) return;
    for (const m of r.messages.values()) if (m.msg.storeId !== 0) this.store.ack(r.storeKey, m.msg.storeId);
  }
}
