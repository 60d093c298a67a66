import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  FIRST_DEATH_KEYS,
  consume,
  deadLetterSink,
  deathWithoutTime,
  drain,
  e2eSuite,
  messageCount,
  publishConfirmed,
  rejectsWithClose,
  serverClose,
  sleep,
  warrenOnly,
  withTimeout,
  xDeath,
} from './fixture';

const suite = e2eSuite();

/** Expiry may not happen before the TTL; clocks of the two processes round to the millisecond. */
const EARLY_SLACK_MS = 5;
/** Generous upper bound for "on time" so a loaded CI machine does not flake. */
const LATE_SLACK_MS = 1000;

describe('per-queue message TTL (x-message-ttl)', () => {
  it('expires a message after the TTL and dead-letters it with reason expired and no original-expiration', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'ttl', { messageId: 'mid-1', contentType: 'text/plain' });
    assert.equal(await messageCount(ch, q), 1);

    const [m] = await sink.received.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 100 - EARLY_SLACK_MS, `expired after ${elapsed} ms, before the 100 ms TTL`);
    assert.ok(elapsed < 100 + LATE_SLACK_MS, `expired only after ${elapsed} ms`);
    assert.equal(m!.content.toString(), 'ttl');
    assert.deepEqual(m!.fields, { consumerTag: sink.received.consumerTag, deliveryTag: 1, redelivered: false, exchange: sink.exchange, routingKey: q });
    assert.equal(m!.properties.messageId, 'mid-1');
    assert.equal(m!.properties.contentType, 'text/plain');
    assert.equal(m!.properties.expiration, undefined);
    const deaths = xDeath(m!);
    assert.equal(deaths.length, 1);
    assert.deepEqual(deathWithoutTime(deaths[0]!, t0), {
      count: 1,
      reason: 'expired',
      queue: q,
      time: '<checked>',
      exchange: '',
      'routing-keys': [q],
    });
    assert.deepEqual(Object.keys(deaths[0]!), FIRST_DEATH_KEYS);
    assert.equal(await messageCount(ch, q), 0);
  });

  it('neither delivers nor counts expired messages', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 50 } });
    const ch = await c.confirmChannel();
    for (const b of ['a', 'b', 'c']) ch.sendToQueue(q, Buffer.from(b));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await sleep(250);
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
    assert.equal(await ch.get(q), false);
    const consumer = await consume(ch, q);
    await sleep(50);
    assert.equal(consumer.messages.length, 0);
  });

  it('a queue TTL of 0 delivers to a consumer that can take the message at once', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 0 } });
    const consumer = await consume(await c.channel(), q, { noAck: true });
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'now');
    const [m] = await consumer.waitFor(1);
    assert.equal(m!.content.toString(), 'now');
    assert.equal(m!.properties.expiration, undefined);
  });
});

describe('per-message TTL (expiration property)', () => {
  it('expires the message, removes the expiration property and records original-expiration', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'm', { expiration: '100', headers: { app: 'x' } });
    const [m] = await sink.received.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 100 - EARLY_SLACK_MS && elapsed < 100 + LATE_SLACK_MS, `expired after ${elapsed} ms`);
    assert.equal(m!.properties.expiration, undefined);
    assert.equal(m!.properties.headers?.app, 'x');
    const deaths = xDeath(m!);
    assert.deepEqual(
      deaths.map((d) => deathWithoutTime(d, t0)),
      [{ count: 1, reason: 'expired', queue: q, time: '<checked>', exchange: '', 'routing-keys': [q], 'original-expiration': '100' }],
    );
    assert.deepEqual(Object.keys(deaths[0]!), [...FIRST_DEATH_KEYS, 'original-expiration']);
  });

  const invalid: Array<[string, string]> = [
    ['-1', "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"],
    ['abc', "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"],
    ['1.5', 'PRECONDITION_FAILED - invalid expiration \'1.5\': {leftover_string,".5"}'],
    ['', "PRECONDITION_FAILED - invalid expiration '': no_integer"],
    [' 10', "PRECONDITION_FAILED - invalid expiration ' 10': no_integer"],
  ];
  for (const [expiration, text] of invalid) {
    it(`closes the channel with 406 on publish with expiration ${JSON.stringify(expiration)}`, async (t) => {
      const c = await suite.context(t);
      const q = await c.queue();
      const ch = await c.confirmChannel();
      ch.sendToQueue(q, Buffer.from('x'), { expiration });
      ch.waitForConfirms().catch(() => {});
      const err = await serverClose(ch);
      assert.equal(err.code, 406);
      assert.equal(err.text, text);
      assert.deepEqual([err.classId, err.methodId], [60, 40]);
    });
  }

  it('closes the channel with 406 on an expiration too large for RabbitMQ', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    ch.sendToQueue(q, Buffer.from('x'), { expiration: '99999999999999999999' });
    ch.waitForConfirms().catch(() => {});
    const err = await serverClose(ch);
    assert.equal(err.code, 406);
    // RabbitMQ pretty-prints the Erlang term, line break and all; only the start is pinned.
    assert.match(err.text, /^PRECONDITION_FAILED - invalid expiration '99999999999999999999': \{value_too_large,\s*99999999999999999999\}$/);
  });

  it("accepts an expiration with a leading '+' as RabbitMQ does", async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'plus', { expiration: '+60000' });
    const m = await ch.get(q, { noAck: true });
    assert.ok(m);
    assert.equal(m.content.toString(), 'plus');
    assert.equal(m.properties.expiration, '+60000');
  });

  it('uses the queue TTL when it is smaller than the message TTL', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'm', { expiration: '60000' });
    const [m] = await sink.received.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 100 - EARLY_SLACK_MS && elapsed < 100 + LATE_SLACK_MS, `expired after ${elapsed} ms`);
    assert.equal(xDeath(m!)[0]!['original-expiration'], '60000');
    assert.equal(m!.properties.expiration, undefined);
  });

  it('uses the message TTL when it is smaller than the queue TTL', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-message-ttl': 60000, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(ch, '', q, 'm', { expiration: '100' });
    const [m] = await sink.received.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 100 - EARLY_SLACK_MS && elapsed < 100 + LATE_SLACK_MS, `expired after ${elapsed} ms`);
    assert.equal(xDeath(m!)[0]!['original-expiration'], '100');
  });

  it('delivers a message with expiration 0 to a consumer that can take it at once, keeping the property', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const consumer = await consume(await c.channel(), q, { noAck: true });
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'zero', { expiration: '0' });
    const [m] = await consumer.waitFor(1);
    assert.equal(m!.content.toString(), 'zero');
    assert.equal(m!.properties.expiration, '0');
  });

  it('expires a message with expiration 0 at once when no consumer can take it', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const pub = await c.confirmChannel();

    // No consumer at all.
    await publishConfirmed(pub, '', q, 'nobody', { expiration: '0' });
    const [first] = await sink.received.waitFor(1);
    assert.equal(first!.content.toString(), 'nobody');
    assert.equal(xDeath(first!)[0]!.reason, 'expired');
    assert.equal(xDeath(first!)[0]!['original-expiration'], '0');

    // A consumer whose prefetch window is full cannot take it either.
    const cch = await c.channel();
    await cch.prefetch(1);
    const consumer = await consume(cch, q);
    await publishConfirmed(pub, '', q, 'held');
    await consumer.waitFor(1);
    await publishConfirmed(pub, '', q, 'busy', { expiration: '0' });
    const [, second] = await sink.received.waitFor(2);
    assert.equal(second!.content.toString(), 'busy');
    assert.deepEqual(consumer.messages.map((m) => m.content.toString()), ['held']);
    assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 1 });
  });

  it('never hands out an expired message that was queued behind live ones', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    ch.sendToQueue(q, Buffer.from('long1'), { expiration: '60000' });
    ch.sendToQueue(q, Buffer.from('short'), { expiration: '50' });
    ch.sendToQueue(q, Buffer.from('long2'), { expiration: '60000' });
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await sleep(200);
    assert.deepEqual(await drain(ch, q), ['long1', 'long2']);
  });

  it('expires a short-TTL message behind long-TTL ones on time, not when it reaches the head', async (t) => {
    if (!warrenOnly(t, 'RabbitMQ expires lazily at the head')) return;
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    ch.sendToQueue(q, Buffer.from('long1'), { expiration: '60000' });
    ch.sendToQueue(q, Buffer.from('short'), { expiration: '100' });
    ch.sendToQueue(q, Buffer.from('long2'), { expiration: '60000' });
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    const [m] = await sink.received.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 100 - EARLY_SLACK_MS && elapsed < 100 + LATE_SLACK_MS, `expired after ${elapsed} ms`);
    assert.equal(m!.content.toString(), 'short');
    assert.equal(xDeath(m!)[0]!.reason, 'expired');
    assert.equal(xDeath(m!)[0]!['original-expiration'], '100');
    assert.equal(await messageCount(ch, q), 2);
    assert.deepEqual(await drain(ch, q), ['long1', 'long2']);
  });
});

describe('queue expiry (x-expires)', () => {
  it('deletes an unused queue after the period, even when it holds messages', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-expires': 150 } });
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'left behind');
    await sleep(400);
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
  });

  it('keeps a queue while it has a consumer and deletes it once the consumer is gone', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-expires': 150 } });
    const ch = await c.channel();
    const consumer = await consume(ch, q);
    await sleep(350);
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 1 });
    await ch.cancel(consumer.consumerTag);
    await sleep(400);
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
  });

  it('restarts the period when the queue is redeclared', async (t) => {
    const c = await suite.context(t);
    const args = { durable: false, arguments: { 'x-expires': 300 } };
    const q = await c.queue(args);
    const ch = await c.channel();
    await sleep(200);
    await ch.assertQueue(q, args);
    await sleep(200); // 400 ms after the first declare, 200 ms after the redeclare
    const other = await c.channel();
    assert.equal((await other.checkQueue(q)).queue, q);
    await sleep(500);
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
  });
});
