import type { Destination } from '../core/exchanges/exchange';
import { AmqpError, erlangBinary } from '../protocol/errors';
import { fieldDisplay, fieldTypeName } from '../protocol/field-compare';
import { fieldString, tableGet } from '../protocol/field-table';
import { M, Method } from '../protocol/spec';
import type { Channel } from './channel';
import { REPLY_TO } from './direct-reply';

/** Where replies go: straight out, or (in a cluster) after the change reached etcd. */
export interface TopologyReplies {
  reply(m: Method): void;
  /** Work on another node that must finish (and may reply) before the reply goes out. */
  defer(work: Promise<void>): void;
}

const X_MATCH = new Set(['all', 'any', 'all-with-x', 'any-with-x']);

/**
 * exchange.* and queue.* methods: permission checks, then the vhost does the work and the
 * reply goes back unless no-wait. Returns false for methods that are not topology methods.
 */
export function handleTopologyMethod(ch: Channel, m: Method, out?: TopologyReplies): boolean {
  const vhost = ch.session.vhost;
  const access = ch.session.access;
  const conn = ch.conn;
  const reply = out?.reply ?? ((r: Method): void => conn.sendMethod(ch.id, r));
  if (out !== undefined && conn.broker.cluster?.metadataAvailable === false && changesTopology(m)) {
    // etcd has been out of reach past our lease: refuse before changing anything here.
    throw new AmqpError('INTERNAL_ERROR', 'cluster metadata store (etcd) unavailable; try again');
  }
  const deny = (text: string | undefined): void => {
    if (text !== undefined) throw new AmqpError('ACCESS_REFUSED', text);
  };
  switch (m.key) {
    case M.ExchangeDeclare: {
      if (!m.passive) deny(access.check('configure', 'exchange', m.exchange));
      vhost.declareExchange({
        name: m.exchange,
        type: m.type,
        passive: m.passive,
        durable: m.durable,
        autoDelete: m.autoDelete,
        internal: m.internal,
        arguments: m.arguments,
      });
      if (!m.noWait) reply({ key: M.ExchangeDeclareOk });
      return true;
    }
    case M.ExchangeDelete:
      deny(access.check('configure', 'exchange', m.exchange));
      vhost.deleteExchange(m.exchange, m.ifUnused);
      if (!m.noWait) reply({ key: M.ExchangeDeleteOk });
      return true;
    case M.ExchangeBind:
    case M.ExchangeUnbind: {
      if (m.key === M.ExchangeUnbind && (!vhost.exchanges.has(m.destination) || !vhost.exchanges.has(m.source))) {
        if (!m.noWait) reply({ key: M.ExchangeUnbindOk });
        return true;
      }
      const destination = vhost.exchange(m.destination);
      const source = vhost.exchange(m.source);
      deny(access.check('write', 'exchange', m.destination));
      deny(access.check('read', 'exchange', m.source));
      bindOrUnbind(ch, m.key === M.ExchangeBind, source.name, destination, m.routingKey, m.arguments);
      if (!m.noWait) reply({ key: m.key === M.ExchangeBind ? M.ExchangeBindOk : M.ExchangeUnbindOk });
      return true;
    }
    case M.QueueDeclare: {
      if (m.queue === REPLY_TO) {
        // RabbitMQ answers for the direct reply-to pseudo-queue without creating anything.
        if (!m.noWait) reply({ key: M.QueueDeclareOk, queue: REPLY_TO, messageCount: 0, consumerCount: 0 });
        return true;
      }
      if (!m.passive && m.queue !== '') deny(access.check('configure', 'queue', m.queue));
      const cluster = conn.broker.cluster;
      if (cluster != null && out !== undefined && !m.passive && !m.exclusive && m.queue !== '' && !vhost.queues.has(m.queue)) {
        const home = cluster.placeQueue(vhost.name, m.queue, m.arguments);
        if (home !== cluster.nodeName) {
          ch.lastDeclaredQueue = m.queue;
          out.defer(
            cluster.declareOn(home, vhost, { name: m.queue, durable: m.durable, autoDelete: m.autoDelete, arguments: m.arguments }).then((c) => {
              if (!m.noWait) reply({ key: M.QueueDeclareOk, queue: m.queue, ...c });
            }),
          );
          return true;
        }
      }
      const { queue } = vhost.declareQueue(
        {
          name: m.queue,
          passive: m.passive,
          durable: m.durable,
          exclusiveOwner: m.exclusive ? conn : null,
          autoDelete: m.autoDelete,
          arguments: m.arguments,
        },
        conn,
      );
      ch.lastDeclaredQueue = queue.name;
      const remote = queue.remote;
      if (remote !== null && out !== undefined && !m.noWait) {
        // Counts live on the queue's home node.
        out.defer(remote.counts().then((c) => reply({ key: M.QueueDeclareOk, queue: queue.name, ...c })));
        return true;
      }
      if (!m.noWait) {
        reply({
          key: M.QueueDeclareOk,
          queue: queue.name,
          messageCount: queue.messageCount,
          consumerCount: queue.consumerCount,
        });
      }
      return true;
    }
    case M.QueueBind:
    case M.QueueUnbind: {
      const bind = m.key === M.QueueBind;
      const queueName = ch.expandQueueName(m.queue);
      // RabbitMQ's routing-key shortcut: an empty key with the queue shortcut means the queue's name.
      const routingKey = m.queue === '' && m.routingKey === '' ? queueName : m.routingKey;
      const noWait = m.key === M.QueueBind ? m.noWait : false;
      if (!bind && (!vhost.queues.has(queueName) || !vhost.exchanges.has(m.exchange))) {
        // Unbinding from a missing queue or exchange is a no-op in RabbitMQ 3.x.
        if (m.exchange === '') throw new AmqpError('ACCESS_REFUSED', 'operation not permitted on the default exchange');
        if (!noWait) reply({ key: M.QueueUnbindOk });
        return true;
      }
      const queue = vhost.queue(queueName, conn);
      const exchange = vhost.exchange(m.exchange);
      deny(access.check('write', 'queue', queue.name));
      deny(access.check('read', 'exchange', exchange.name));
      if (bind && exchange.type === 'topic') deny(access.checkTopic('read', exchange.name, routingKey));
      bindOrUnbind(ch, bind, exchange.name, queue, routingKey, m.arguments);
      if (!noWait) reply({ key: m.key === M.QueueBind ? M.QueueBindOk : M.QueueUnbindOk });
      return true;
    }
    case M.QueuePurge: {
      const queue = vhost.queue(ch.expandQueueName(m.queue), conn);
      deny(access.check('read', 'queue', queue.name));
      if (queue.remote !== null && out !== undefined) {
        out.defer(queue.remote.purge().then((messageCount) => (m.noWait ? undefined : reply({ key: M.QueuePurgeOk, messageCount }))));
        return true;
      }
      const count = queue.purge();
      if (!m.noWait) reply({ key: M.QueuePurgeOk, messageCount: count });
      return true;
    }
    case M.QueueDelete: {
      const name = ch.expandQueueName(m.queue);
      deny(access.check('configure', 'queue', name));
      const target = vhost.queues.get(name);
      if (target?.remote != null && out !== undefined) {
        // The home node deletes it (and its messages); the proxy here goes with it.
        out.defer(
          target.remote.delete(m.ifUnused, m.ifEmpty).then((messageCount) => {
            vhost.deleteQueue(name, conn, false, false);
            if (!m.noWait) reply({ key: M.QueueDeleteOk, messageCount });
          }),
        );
        return true;
      }
      const count = vhost.deleteQueue(name, conn, m.ifUnused, m.ifEmpty);
      if (!m.noWait) reply({ key: M.QueueDeleteOk, messageCount: count });
      return true;
    }
    default:
      return false;
  }
}

/** Methods that change shared metadata (passive declares only read it). */
function changesTopology(m: Method): boolean {
  switch (m.key) {
    case M.ExchangeDeclare:
    case M.QueueDeclare:
      return !m.passive;
    case M.ExchangeDelete:
    case M.ExchangeBind:
    case M.ExchangeUnbind:
    case M.QueueBind:
    case M.QueueUnbind:
    case M.QueueDelete:
      return true;
    default:
      return false;
  }
}

function bindOrUnbind(
  ch: Channel,
  bind: boolean,
  sourceName: string,
  destination: Destination,
  routingKey: string,
  args: import('../protocol/field-table').FieldTable,
): void {
  const vhost = ch.session.vhost;
  const source = vhost.exchange(sourceName);
  if (bind && source.type === 'headers') {
    const xMatch = tableGet(args, 'x-match');
    if (xMatch !== undefined) {
      if (xMatch.type !== 'S') {
        throw new AmqpError('PRECONDITION_FAILED', `Invalid x-match field type ${fieldTypeName(xMatch)} (value ${fieldDisplay(xMatch)}); expected longstr`);
      }
      const v = fieldString(xMatch)!;
      if (!X_MATCH.has(v)) {
        throw new AmqpError('PRECONDITION_FAILED', `Invalid x-match field value ${erlangBinary(xMatch.value)}; expected all, any, all-with-x, or any-with-x`);
      }
    }
  }
  if (bind) vhost.bind(source, destination, routingKey, args);
  else vhost.unbind(source, destination, routingKey, args);
}
