import type { Exchange } from '../core/exchanges/exchange';
import type { Message } from '../core/message';
import { AmqpError } from '../protocol/errors';
import type { Queue } from '../core/queue/queue';
import type { RemoteQueueOps } from '../core/queue/remote';
import type { FieldTable } from '../protocol/field-table';
import { M, Method } from '../protocol/spec';
import type { ClusterContext } from './broker-context';
import type { Channel } from './channel';
import type { ChannelConsumer } from './channel-consumer';
import type { ChannelPublisher } from './channel-publish';
import { REPLY_TO_PREFIX } from './direct-reply';
import { handleTopologyMethod } from './topology';

/*
 * The channel paths that exist only in a cluster: publishes whose queues live on other nodes,
 * replication intake from a mirrored queue's leader, topology methods whose reply waits for
 * etcd, and consume/get on a queue whose home is another node. A stand-alone broker never
 * calls into this file.
 */

/** routeInCluster's answer when the publish went to other nodes and its return/confirm is settled here. */
export const ROUTED_REMOTELY = -1;

/**
 * vhost.publish with forwarding to the queues' home nodes. Returns the local route count, for
 * the caller's common tail (direct reply-to, returns, confirms), or ROUTED_REMOTELY.
 */
export function routeInCluster(
  pub: ChannelPublisher,
  cluster: ClusterContext,
  exchange: Exchange,
  msg: Message,
  mandatory: boolean,
  extraKeys: string[] | null,
): number {
  const conn = pub.ch.conn;
  const vhost = pub.ch.session.vhost;
  // A publish forwarded over a link was routed by the sending node: only local queues here.
  cluster.beginPublish(conn.isClusterLink);
  let routed: number;
  try {
    routed = vhost.publish(exchange, msg, extraKeys);
  } finally {
    cluster.localOnly = false;
  }
  if (routed === 0 && exchange.name === '' && msg.routingKey.startsWith(REPLY_TO_PREFIX) && conn.broker.directReply.lookup(msg.routingKey) === undefined) {
    // A direct reply-to name of another node: the reply goes there.
    if (cluster.forwardReply(vhost.name, msg)) routed = 1;
  }
  const forwards = cluster.takeForwards();
  if (forwards === null) return routed;
  routeRemote(pub, msg, mandatory, routed, vhost.lastPublishRejected, forwards);
  return ROUTED_REMOTELY;
}

/** Some queues were on other nodes: the confirm waits for their home nodes (and local disk). */
function routeRemote(pub: ChannelPublisher, msg: Message, mandatory: boolean, routed: number, rejected: boolean, forwards: Array<Promise<void>>): void {
  const ch = pub.ch;
  if (routed === 0 && mandatory) {
    ch.conn.writer.basicReturn(ch.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
  }
  const confirms = pub.confirms;
  if (confirms === null) {
    for (const f of forwards) f.catch(() => undefined);
    return;
  }
  const seq = confirms.next();
  if (rejected) {
    confirms.rejected(seq);
    for (const f of forwards) f.catch(() => undefined);
    return;
  }
  const broker = ch.conn.broker;
  if ((msg.storeId !== 0 && broker.store !== null) || msg.delayDurable) {
    forwards.push(new Promise<void>((resolve, reject) => broker.afterSync(msg.delayDurable, (err) => (err === null ? resolve() : reject(err)))));
  }
  confirms.awaitExternal(seq);
  Promise.all(forwards).then(
    () => {
      if (pub.confirms === confirms) confirms.external(seq, true);
    },
    () => {
      if (pub.confirms === confirms) confirms.external(seq, false);
    },
  );
}

/** Replication from a mirrored queue's leader: applied, then confirmed after our own fsync. */
export function applyMirrorOp(pub: ChannelPublisher, queue: string, properties: Buffer, body: Buffer): void {
  const ch = pub.ch;
  const stored = ch.conn.broker.cluster!.mirrorOp(ch.session.vhost.name, queue, properties, body);
  const confirms = pub.confirms;
  if (confirms === null) return;
  const seq = confirms.next();
  if (stored) pub.awaitSync(confirms, seq);
  else confirms.confirmed(seq);
}

/**
 * exchange.* / queue.* in a cluster: the reply waits until etcd has the change (read-your-writes
 * from any node), and the channel's later frames wait with it. Returns false for other methods.
 */
export function handleClusterTopologyMethod(ch: Channel, cluster: ClusterContext, m: Method): boolean {
  const replies: Method[] = [];
  const remote: Array<Promise<void>> = [];
  const out = { reply: (r: Method) => void replies.push(r), defer: (p: Promise<void>) => void remote.push(p) };
  if (!handleTopologyMethod(ch, m, out)) return false;
  const classMethod = (err: unknown): never => {
    throw err instanceof AmqpError ? err.at(m.key >>> 16, m.key & 0xffff) : err;
  };
  ch.park(
    Promise.all(remote).catch(classMethod).then(() => cluster.commitTopology()).then(
      () => {
        for (const r of replies) ch.conn.sendMethod(ch.id, r);
      },
      (err: unknown) => {
        if (err instanceof AmqpError) throw err;
        ch.conn.log.warn({ err: (err as Error).message }, 'cluster metadata store unavailable');
        throw new AmqpError('INTERNAL_ERROR', 'cluster metadata store (etcd) unavailable; try again', m.key >>> 16, m.key & 0xffff);
      },
    ),
  );
  return true;
}

/** basic.consume on another node's queue: consume-ok and deliveries wait for its home node. */
export function consumeRemote(ch: Channel, remote: RemoteQueueOps, consumer: ChannelConsumer, args: FieldTable, noWait: boolean): void {
  ch.park(
    remote.consume(consumer, args, ch.prefetch).then(
      (accepted) => {
        if (!ch.isOpen) {
          remote.cancel(consumer);
          return;
        }
        if (!noWait) ch.conn.sendMethod(ch.id, { key: M.BasicConsumeOk, consumerTag: consumer.tag });
        ch.consumers.set(consumer.tag, consumer);
        accepted.start();
      },
      (err: unknown) => {
        throw err instanceof AmqpError ? err.at(60, 20) : err;
      },
    ),
  );
}

/** basic.get on another node's queue. */
export function getRemote(ch: Channel, queue: Queue, remote: RemoteQueueOps, noAck: boolean): void {
  ch.park(
    remote.get(noAck).then(
      (got) => {
        if (got === null) ch.conn.sendMethod(ch.id, { key: M.BasicGetEmpty });
        else ch.sendGetOk(queue, got.entry, noAck, got.messageCount);
      },
      (err: unknown) => {
        throw err instanceof AmqpError ? err.at(60, 70) : err;
      },
    ),
  );
}
