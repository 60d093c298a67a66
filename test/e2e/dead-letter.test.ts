import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from 'amqplib';
import {
  FIRST_DEATH_KEYS,
  consume,
  deadLetterSink,
  deathWithoutTime,
  drain,
  e2eSuite,
  isClosed,
  messageCount,
  publishConfirmed,
  sleep,
  withTimeout,
  xDeath,
  type Consumer,
} from './fixture';

const suite = e2eSuite();

const bodies = (ms: Message[]): string[] => ms.map((m) => m.content.toString());

/** Key order RabbitMQ 3.10 gives an x-death entry it rewrites (a later death, or an incremented count): sorted. */
const REWRITTEN_DEATH_KEYS = ['count', 'exchange', 'original-expiration', 'queue', 'reason', 'routing-keys', 'time'];

describe('dead-lettering on rejection', () => {
  it('dead-letters a basic.reject(requeue=false) with the x-death header RabbitMQ writes', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'body', {
      messageId: 'm-1',
      correlationId: 'c-1',
      contentType: 'application/json',
      persistent: true,
      priority: 3,
      headers: { app: 'test' },
    });
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);

    const [m] = await sink.received.waitFor(1);
    assert.equal(m!.content.toString(), 'body');
    assert.deepEqual(m!.fields, { consumerTag: sink.received.consumerTag, deliveryTag: 1, redelivered: false, exchange: sink.exchange, routingKey: q });
    const p = m!.properties;
    assert.deepEqual(
      [p.messageId, p.correlationId, p.contentType, p.deliveryMode, p.priority, p.expiration],
      ['m-1', 'c-1', 'application/json', 2, 3, undefined],
    );
    const deaths = xDeath(m!);
    assert.deepEqual(
      deaths.map((d) => deathWithoutTime(d, t0)),
      [{ count: 1, reason: 'rejected', queue: q, time: '<checked>', exchange: '', 'routing-keys': [q] }],
    );
    assert.deepEqual(Object.keys(deaths[0]!), FIRST_DEATH_KEYS);
    const { 'x-death': _xd, ...rest } = p.headers ?? {};
    assert.deepEqual(rest, {
      app: 'test',
      'x-first-death-exchange': '',
      'x-first-death-queue': q,
      'x-first-death-reason': 'rejected',
    });
    assert.deepEqual(Object.keys(p.headers ?? {}), ['app', 'x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason']);
    assert.equal(await messageCount(ch, q), 0);
  });

  it('dead-letters every message of a multiple basic.nack(requeue=false), in queue order', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const pub = await c.confirmChannel();
    for (const b of ['n1', 'n2', 'n3']) pub.sendToQueue(q, Buffer.from(b));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    const ch = await c.channel();
    const consumer = await consume(ch, q);
    const ms = await consumer.waitFor(3);
    ch.nack(ms[2]!, true, false);
    const dead = await sink.received.waitFor(3);
    assert.deepEqual(bodies(dead), ['n1', 'n2', 'n3']);
    for (const m of dead) assert.deepEqual([xDeath(m).length, xDeath(m)[0]!.reason, xDeath(m)[0]!.count], [1, 'rejected', 1]);
  });

  it('does not dead-letter a message rejected with requeue=true', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'again');
    const first = await ch.get(q);
    assert.ok(first);
    ch.reject(first, true);
    const second = await ch.get(q);
    assert.ok(second);
    assert.equal(second.fields.redelivered, true);
    assert.equal(second.properties.headers?.['x-death'], undefined);
    ch.reject(second, false);
    const [m] = await sink.received.waitFor(1);
    // One death only: the requeue left no trace.
    assert.deepEqual([xDeath(m!).length, xDeath(m!)[0]!.count], [1, 1]);
  });

  it('discards a rejected message when the queue has no dead-letter exchange', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'gone');
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
    assert.equal(await ch.get(q), false);
  });

  it('silently drops the message when the dead-letter exchange does not exist', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': c.exchangeName('missing') } });
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'nowhere');
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);
    assert.equal(await messageCount(ch, q), 0);
    assert.equal(isClosed(ch), false);
  });

  it('does not dead-letter purged messages', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'purged');
    assert.equal((await ch.purgeQueue(q)).messageCount, 1);
    await publishConfirmed(ch, '', q, 'marker');
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);
    const [m] = await sink.received.waitFor(1);
    assert.equal(m!.content.toString(), 'marker');
  });
});

describe('dead-letter routing', () => {
  it('routes with x-dead-letter-routing-key, keeps the original keys in x-death and removes the CC header', async (t) => {
    const c = await suite.context(t);
    const dlx = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const byKey: Record<string, string> = {};
    const received: Record<string, Consumer> = {};
    for (const key of ['dlrk', 'orig', 'cc1']) {
      byKey[key] = await c.queue();
      await ch.bindQueue(byKey[key]!, dlx, key);
      received[key] = await consume(ch, byKey[key]!, { noAck: true });
    }
    const src = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': dlx, 'x-dead-letter-routing-key': 'dlrk' } });
    const x = await c.exchange('direct');
    await ch.bindQueue(src, x, 'orig');
    const t0 = Date.now();
    await publishConfirmed(ch, x, 'orig', 'routed', { headers: { CC: ['cc1'], keep: 1 } });
    const got = await ch.get(src);
    assert.ok(got);
    ch.reject(got, false);

    const [m] = await received.dlrk!.waitFor(1);
    assert.deepEqual([m!.fields.exchange, m!.fields.routingKey], [dlx, 'dlrk']);
    const { 'x-death': _deaths, ...headers } = m!.properties.headers ?? {};
    assert.deepEqual(headers, { keep: 1, 'x-first-death-exchange': x, 'x-first-death-queue': src, 'x-first-death-reason': 'rejected' });
    assert.deepEqual(
      xDeath(m!).map((d) => deathWithoutTime(d, t0)),
      [{ count: 1, reason: 'rejected', queue: src, time: '<checked>', exchange: x, 'routing-keys': ['orig', 'cc1'] }],
    );
    // A marker through the same dead-letter path shows nothing else was routed to the original keys.
    await publishConfirmed(ch, '', byKey.orig!, 'marker-orig');
    await publishConfirmed(ch, '', byKey.cc1!, 'marker-cc');
    assert.deepEqual(bodies(await received.orig!.waitFor(1)), ['marker-orig']);
    assert.deepEqual(bodies(await received.cc1!.waitFor(1)), ['marker-cc']);
  });

  it('routes without x-dead-letter-routing-key on the original routing key and CC keys, keeping CC; BCC never shows', async (t) => {
    const c = await suite.context(t);
    const dlx = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const received: Record<string, Consumer> = {};
    for (const key of ['a', 'b', 'bcc']) {
      const dq = await c.queue();
      await ch.bindQueue(dq, dlx, key);
      received[key] = await consume(ch, dq, { noAck: true });
    }
    const x = await c.exchange('direct');
    const src = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': dlx } });
    for (const key of ['a', 'b', 'bcc']) await ch.bindQueue(src, x, key);
    const t0 = Date.now();
    await publishConfirmed(ch, x, 'a', 'cc-bcc', { headers: { zzz: 1, CC: ['b'], BCC: ['bcc'], aaa: 2 } });
    const got = await ch.get(src);
    assert.ok(got);
    assert.deepEqual(got.properties.headers, { zzz: 1, CC: ['b'], aaa: 2 });
    ch.reject(got, false);

    // RabbitMQ routes the dead-lettered copy on every original key, BCC included.
    for (const key of ['a', 'b', 'bcc']) {
      const [m] = await received[key]!.waitFor(1);
      assert.deepEqual([m!.fields.exchange, m!.fields.routingKey], [dlx, 'a'], `copy routed via ${key}`);
      const h = m!.properties.headers ?? {};
      // Dead-lettering rewrites the header table sorted by key.
      assert.deepEqual(Object.keys(h), ['CC', 'aaa', 'x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason', 'zzz']);
      assert.deepEqual(h.CC, ['b']);
      assert.equal(h.BCC, undefined);
      assert.deepEqual(
        xDeath(m!).map((d) => deathWithoutTime(d, t0)),
        [{ count: 1, reason: 'rejected', queue: src, time: '<checked>', exchange: x, 'routing-keys': ['a', 'b'] }],
      );
    }
  });

  it('can dead-letter through the default exchange straight to a named queue', async (t) => {
    const c = await suite.context(t);
    const target = await c.queue();
    const src = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': target } });
    const ch = await c.confirmChannel();
    const received = await consume(ch, target, { noAck: true });
    await publishConfirmed(ch, '', src, 'via default');
    const got = await ch.get(src);
    assert.ok(got);
    ch.reject(got, false);
    const [m] = await received.waitFor(1);
    assert.deepEqual([m!.fields.exchange, m!.fields.routingKey], ['', target]);
    assert.equal(m!.properties.headers?.['x-first-death-queue'], src);
  });
});

describe('x-death history', () => {
  it('increments the count of the entry for the same queue and reason, and rewrites it with sorted keys', async (t) => {
    const c = await suite.context(t);
    const q = c.queueName();
    const ch = await c.confirmChannel();
    await ch.assertQueue(q, { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': q } });
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'loop', { expiration: '100000' });

    const counts: Array<number | undefined> = [];
    for (let i = 0; i < 3; i++) {
      const got = await ch.get(q);
      assert.ok(got, `round ${i}`);
      counts.push(got.properties.headers?.['x-death']?.[0]?.count);
      ch.reject(got, false);
    }
    // A rejection loop is not a cycle: the message keeps coming back.
    const m = await ch.get(q, { noAck: true });
    assert.ok(m);
    assert.deepEqual(counts, [undefined, 1, 2]);
    assert.equal(m.properties.expiration, undefined);
    const deaths = xDeath(m);
    assert.deepEqual(
      deaths.map((d) => deathWithoutTime(d, t0)),
      [{ count: 3, exchange: '', 'original-expiration': '100000', queue: q, reason: 'rejected', 'routing-keys': [q], time: '<checked>' }],
    );
    assert.deepEqual(Object.keys(deaths[0]!), REWRITTEN_DEATH_KEYS);
    assert.deepEqual(
      [m.properties.headers?.['x-first-death-reason'], m.properties.headers?.['x-first-death-queue'], m.properties.headers?.['x-first-death-exchange']],
      ['rejected', q, ''],
    );
  });

  it('puts the newest death first and keeps x-first-death-* from the first one', async (t) => {
    const c = await suite.context(t);
    const h1 = c.queueName('h1');
    const h2 = c.queueName('h2');
    const h3 = await c.queue();
    const ch = await c.confirmChannel();
    await ch.assertQueue(h2, { durable: false, arguments: { 'x-message-ttl': 50, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': h3 } });
    await ch.assertQueue(h1, { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': h2 } });
    const received = await consume(ch, h3, { noAck: true });
    const x = await c.exchange('fanout');
    await ch.bindQueue(h1, x, '');
    const t0 = Date.now();
    await publishConfirmed(ch, x, 'rk', 'two hops', { expiration: '100000' });
    const got = await ch.get(h1);
    assert.ok(got);
    ch.nack(got, false, false);

    const [m] = await received.waitFor(1);
    const deaths = xDeath(m!);
    assert.deepEqual(
      deaths.map((d) => deathWithoutTime(d, t0)),
      [
        { count: 1, exchange: '', queue: h2, reason: 'expired', 'routing-keys': [h2], time: '<checked>' },
        { count: 1, reason: 'rejected', queue: h1, time: '<checked>', exchange: x, 'routing-keys': ['rk'], 'original-expiration': '100000' },
      ],
    );
    assert.deepEqual(Object.keys(deaths[0]!), REWRITTEN_DEATH_KEYS.filter((k) => k !== 'original-expiration'));
    assert.deepEqual(Object.keys(deaths[1]!), [...FIRST_DEATH_KEYS, 'original-expiration']);
    assert.deepEqual(
      [m!.properties.headers?.['x-first-death-reason'], m!.properties.headers?.['x-first-death-queue'], m!.properties.headers?.['x-first-death-exchange']],
      ['rejected', h1, x],
    );
  });

  it('drops an expired message whose dead-letter route leads back to its queue, delivering it to the other targets', async (t) => {
    const c = await suite.context(t);
    const fan = await c.exchange('fanout');
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': fan } });
    const observer = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, fan, '');
    await ch.bindQueue(observer, fan, '');
    const seen = await consume(ch, observer, { noAck: true });
    await publishConfirmed(ch, '', q, 'cycle');

    const [m] = await seen.waitFor(1);
    assert.deepEqual([xDeath(m!).length, xDeath(m!)[0]!.reason, xDeath(m!)[0]!.queue], [1, 'expired', q]);
    assert.equal(await messageCount(ch, q), 0);
    // Had it been re-queued it would expire again within the TTL and reach the observer a second time.
    await sleep(300);
    assert.equal(seen.messages.length, 1);
    assert.equal(await messageCount(ch, q), 0);
  });
});

describe('dead-lettering during a fan-out publish', () => {
  it('still delivers to every other target queue when one of them drops its head to a dead-letter exchange', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const fan = await c.exchange('fanout');
    const limited = await c.queue({ durable: false, arguments: { 'x-max-length': 1, 'x-dead-letter-exchange': sink.exchange } });
    const plain = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(limited, fan, '');
    await ch.bindQueue(plain, fan, '');
    for (const body of ['a', 'b', 'c']) await publishConfirmed(ch, fan, '', body);
    assert.deepEqual(bodies(await sink.received.waitFor(2)), ['a', 'b']);
    assert.deepEqual(await drain(ch, plain), ['a', 'b', 'c']);
    assert.deepEqual(await drain(ch, limited), ['c']);
  });
});
