import type { Broker } from './broker';
import { Message } from './core/message';
import { readExpiration } from './protocol/properties';
import type { MessageStore } from './store/message-store';
import { DelayedExchange, parseDelayedStoreKey } from './core/exchanges/delayed';

/**
 * Delayed messages stored in the message store by versions before the delayed-message store:
 * held again (written to the exchange's schedule, keeping their due times); the old copies go
 * once the schedule has them on disk.
 */
function migrateDelayed(broker: Broker, store: MessageStore, key: string, where: { vhost: string; exchange: string }, ids: Float64Array): number {
  const x = broker.vhosts.get(where.vhost)?.exchanges.get(where.exchange);
  const delays = broker.delays.durable;
  if (!(x instanceof DelayedExchange) || delays === null) {
    store.deleteQueue(key);
    return 0;
  }
  for (const id of ids) {
    const m = store.read(id);
    x.restore(new Message(m.exchange, m.routingKey, m.properties, m.body), m.publishedAt);
  }
  delays.afterSync((err) => {
    if (err === null) store.deleteQueue(key);
  });
  return ids.length;
}

/** Schedules left on disk by exchanges that are gone (deleted while the broker was down). */
function dropOrphanSchedules(broker: Broker): number {
  const delays = broker.delays.durable;
  if (delays === null) return 0;
  let pending = 0;
  for (const key of delays.keys()) {
    const where = parseDelayedStoreKey(key);
    const x = where === undefined ? undefined : broker.vhosts.get(where.vhost)?.exchanges.get(where.exchange);
    const s = delays.schedule(key);
    if (x instanceof DelayedExchange && x.durable) {
      pending += s.pending;
      continue;
    }
    if (s.pending !== 0) broker.logger.warn({ exchange: where?.exchange, messages: s.pending }, 'dropping delayed messages of an exchange that no longer exists');
    s.drop();
  }
  return pending;
}

/**
 * Puts the messages that survived a restart back into their durable queues, in their old
 * order and with redelivered set where they had been handed out. A queue the definitions no
 * longer have is dropped from the store.
 */
export function restoreMessages(broker: Broker, store: MessageStore): void {
  const started = Date.now();
  let restored = 0;
  for (const [key, recovered] of store.recover()) {
    const delayed = parseDelayedStoreKey(key);
    if (delayed !== undefined) {
      restored += migrateDelayed(broker, store, key, delayed, recovered.ids);
      continue;
    }
    const split = key.indexOf('\u0000');
    const vhost = broker.vhosts.get(key.slice(0, split));
    const queue = vhost?.queues.get(key.slice(split + 1));
    if (queue === undefined || !queue.durable) {
      broker.logger.warn({ queue: key.replace('\u0000', ' '), messages: recovered.ids.length }, 'dropping stored messages of a queue that no longer exists');
      store.deleteQueue(key);
      continue;
    }
    for (let i = 0; i < recovered.ids.length; i++) {
      const id = recovered.ids[i]!;
      const m = store.read(id);
      const msg = new Message(m.exchange, m.routingKey, m.properties, m.body);
      msg.storeId = id;
      msg.pageable = true;
      const expiration = readExpiration(m.properties, 0, m.properties.length);
      if (expiration !== undefined && /^\d+$/.test(expiration)) msg.ttl = Number(expiration);
      queue.restore(msg, recovered.redelivered[i] === 1, m.publishedAt);
      restored++;
    }
  }
  const delayed = dropOrphanSchedules(broker);
  if (delayed !== 0) broker.logger.info({ messages: delayed }, 'recovered pending delayed messages');
  if (restored !== 0) broker.logger.info({ messages: restored, ms: Date.now() - started }, 'recovered persistent messages');
}
