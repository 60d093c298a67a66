import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel, Message, Options } from 'amqplib';
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
  rejectsWithClose,
  withTimeout,
  xDeath,
} from './fixture';

const suite = e2eSuite();

const bodies = (ms: Message[]): string[] => ms.map((m) => m.content.toString());

/** Publishes on a confirm channel and resolves with 'ack' or 'nack' for this one message. */
function outcome(ch: ConfirmChannel, exchange: string, routingKey: string, body: string, options: Options.Publish = {}): Promise<'ack' | 'nack'> {
  return new Promise((resolve) => ch.publish(exchange, routingKey, Buffer.from(body), options, (err) => resolve(err ? 'nack' : 'ack')));
}

async function outcomes(ch: ConfirmChannel, q: string, bs: string[], options: Options.Publish = {}): Promise<Array<'ack' | 'nack'>> {
  return withTimeout(Promise.all(bs.map((b) => outcome(ch, '', q, b, options))), 5000, 'confirms');
}

describe('x-max-length with drop-head (the default overflow)', () => {
  it('dead-letters the oldest messages with reason maxlen and keeps the newest', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 2, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const t0 = Date.now();
    assert.deepEqual(await outcomes(ch, q, ['m1', 'm2', 'm3', 'm4']), ['ack', 'ack', 'ack', 'ack']);
    const dead = await sink.received.waitFor(2);
    assert.deepEqual(bodies(dead), ['m1', 'm2']);
    for (const m of dead) {
      assert.deepEqual(
        xDeath(m).map((d) => deathWithoutTime(d, t0)),
        [{ count: 1, reason: 'maxlen', queue: q, time: '<checked>', exchange: '', 'routing-keys': [q] }],
      );
      assert.deepEqual(Object.keys(xDeath(m)[0]!), FIRST_DEATH_KEYS);
      assert.equal(m.properties.headers?.['x-first-death-reason'], 'maxlen');
      assert.deepEqual([m.fields.exchange, m.fields.routingKey], [sink.exchange, q]);
    }
    assert.deepEqual(await drain(ch, q), ['m3', 'm4']);
  });

  it('drops the oldest messages silently without a dead-letter exchange', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 2 } });
    const ch = await c.confirmChannel();
    assert.deepEqual(await outcomes(ch, q, ['a', 'b', 'c', 'd', 'e']), ['ack', 'ack', 'ack', 'ack', 'ack']);
    assert.equal(await messageCount(ch, q), 2);
    assert.deepEqual(await drain(ch, q), ['d', 'e']);
  });

  it('with x-max-length 0 dead-letters every message at once, and still acks the publish', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 0, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    assert.deepEqual(await outcomes(ch, q, ['z'], { expiration: '60000' }), ['ack']);
    const [m] = await sink.received.waitFor(1);
    assert.equal(xDeath(m!)[0]!.reason, 'maxlen');
    assert.equal(xDeath(m!)[0]!['original-expiration'], '60000');
    assert.equal(m!.properties.expiration, undefined);
    assert.equal(await messageCount(ch, q), 0);
  });

  it('does not count unacknowledged messages against the limit', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 1 } });
    const pub = await c.confirmChannel();
    const cch = await c.channel();
    await cch.prefetch(1);
    const consumer = await consume(cch, q);
    await publishConfirmed(pub, '', q, 'held');
    await consumer.waitFor(1);
    assert.deepEqual(await outcomes(pub, q, ['r1', 'r2']), ['ack', 'ack']);
    // 'held' is unacked and does not count; r1 was dropped for r2.
    assert.equal(await messageCount(pub, q), 1);
    await cch.cancel(consumer.consumerTag);
    cch.ack(consumer.messages[0]!);
    assert.deepEqual(await drain(pub, q), ['r2']);
  });
});

describe('x-max-length-bytes', () => {
  it('counts message bodies only and drops from the head to stay within the limit', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length-bytes': 10, 'x-dead-letter-exchange': sink.exchange } });
    const ch = await c.confirmChannel();
    const big = { headers: { padding: 'x'.repeat(200) }, messageId: 'y'.repeat(100) };
    const counts: number[] = [];
    for (const b of ['aaaa', 'bbbb', 'cccc']) {
      await publishConfirmed(ch, '', q, b, big);
      counts.push(await messageCount(ch, q));
    }
    // 4 + 4 fit, 4 + 4 + 4 = 12 > 10 drops the head.
    assert.deepEqual(counts, [1, 2, 2]);
    const [first] = await sink.received.waitFor(1);
    assert.equal(first!.content.toString(), 'aaaa');
    assert.equal(xDeath(first!)[0]!.reason, 'maxlen');

    // A single message larger than the limit pushes everything out, itself included.
    await publishConfirmed(ch, '', q, 'dddddddddddd');
    const dead = await sink.received.waitFor(4);
    assert.deepEqual(bodies(dead), ['aaaa', 'bbbb', 'cccc', 'dddddddddddd']);
    assert.equal(await messageCount(ch, q), 0);
  });

  it('applies whichever of x-max-length and x-max-length-bytes is reached first', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 3, 'x-max-length-bytes': 6 } });
    const ch = await c.confirmChannel();
    await outcomes(ch, q, ['1', '2', '3', '4']);
    assert.deepEqual(await drain(ch, q), ['2', '3', '4']);
    await outcomes(ch, q, ['aaa', 'bbb', 'ccc']);
    assert.deepEqual(await drain(ch, q), ['bbb', 'ccc']);
  });
});

describe('x-overflow reject-publish', () => {
  it('nacks publishes to a full queue, keeps the queued messages and does not dead-letter the refused one', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({
      durable: false,
      arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish', 'x-dead-letter-exchange': sink.exchange },
    });
    const ch = await c.confirmChannel();
    assert.deepEqual(await outcomes(ch, q, ['a', 'b', 'c', 'd']), ['ack', 'ack', 'nack', 'nack']);
    assert.equal(await messageCount(ch, q), 2);
    assert.equal(isClosed(ch), false);
    // The first dead-letter the sink sees is one we cause now: the refused publishes never went there.
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);
    const [m] = await sink.received.waitFor(1);
    assert.equal(m!.content.toString(), 'a');
    assert.equal(xDeath(m!)[0]!.reason, 'rejected');
    // Room again: the next publish is accepted.
    assert.deepEqual(await outcomes(ch, q, ['e', 'f']), ['ack', 'nack']);
    assert.deepEqual(await drain(ch, q), ['b', 'e']);
  });

  it('drops the message silently when the publisher is not in confirm mode', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    const ch = await c.channel();
    ch.sendToQueue(q, Buffer.from('kept'));
    ch.sendToQueue(q, Buffer.from('dropped'));
    assert.equal(await messageCount(ch, q), 1);
    assert.deepEqual(await drain(ch, q), ['kept']);
    assert.equal(isClosed(ch), false);
  });

  it('nacks when any one of the queues a message is routed to refuses it, while the others still get it', async (t) => {
    const c = await suite.context(t);
    const full = await c.queue({ durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    const other = await c.queue();
    const x = await c.exchange('fanout');
    const ch = await c.confirmChannel();
    await ch.bindQueue(full, x, '');
    await ch.bindQueue(other, x, '');
    const results = await withTimeout(Promise.all(['f1', 'f2'].map((b) => outcome(ch, x, '', b))), 5000, 'confirms');
    assert.deepEqual(results, ['ack', 'nack']);
    assert.deepEqual(await drain(ch, full), ['f1']);
    assert.deepEqual(await drain(ch, other), ['f1', 'f2']);
  });

  it('nacks a message larger than x-max-length-bytes even on an empty queue', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length-bytes': 5, 'x-overflow': 'reject-publish' } });
    const ch = await c.confirmChannel();
    assert.deepEqual(await outcomes(ch, q, ['toolarge', 'ok', 'abc', 'de']), ['nack', 'ack', 'ack', 'nack']);
    assert.deepEqual(await drain(ch, q), ['ok', 'abc']);
  });
});

describe('x-overflow reject-publish-dlx', () => {
  it('nacks publishes to a full queue and dead-letters them with reason maxlen', async (t) => {
    const c = await suite.context(t);
    const sink = await deadLetterSink(c);
    const q = await c.queue({
      durable: false,
      arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish-dlx', 'x-dead-letter-exchange': sink.exchange },
    });
    const x = await c.exchange('direct');
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'rk');
    const t0 = Date.now();
    const results = await withTimeout(
      Promise.all(['1', '2', '3'].map((b) => outcome(ch, x, 'rk', b, { expiration: '60000', headers: { n: b } }))),
      5000,
      'confirms',
    );
    assert.deepEqual(results, ['ack', 'nack', 'nack']);
    const dead = await sink.received.waitFor(2);
    assert.deepEqual(bodies(dead), ['2', '3']);
    for (const m of dead) {
      assert.equal(m.properties.expiration, undefined);
      assert.deepEqual(
        xDeath(m).map((d) => deathWithoutTime(d, t0)),
        [{ count: 1, reason: 'maxlen', queue: q, time: '<checked>', exchange: x, 'routing-keys': ['rk'], 'original-expiration': '60000' }],
      );
      assert.deepEqual(
        [m.properties.headers?.['x-first-death-reason'], m.properties.headers?.['x-first-death-queue'], m.properties.headers?.['x-first-death-exchange']],
        ['maxlen', q, x],
      );
    }
    assert.deepEqual(await drain(ch, q), ['1']);
  });
});

describe('lifecycle argument validation', () => {
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ 'x-overflow': 'bogus' }, 'x-overflow', 'invalid_overflow'],
    [{ 'x-max-length': -1 }, 'x-max-length', '{value_negative,-1}'],
    [{ 'x-max-length': '10' }, 'x-max-length', '"expected integer, got longstr"'],
    [{ 'x-max-length-bytes': -1 }, 'x-max-length-bytes', '{value_negative,-1}'],
    [{ 'x-max-priority': 256 }, 'x-max-priority', '{max_value_exceeded,256}'],
    [{ 'x-max-priority': -1 }, 'x-max-priority', '{value_negative,-1}'],
    [{ 'x-expires': 0 }, 'x-expires', '{value_zero,0}'],
    [{ 'x-message-ttl': -1 }, 'x-message-ttl', '{value_negative,-1}'],
    [{ 'x-dead-letter-routing-key': 'k' }, 'x-dead-letter-routing-key', 'routing_key_but_no_dlx_defined'],
    [{ 'x-single-active-consumer': 'yes' }, 'x-single-active-consumer', '{unacceptable_type,longstr}'],
  ];
  for (const [args, name, reason] of cases) {
    it(`refuses ${JSON.stringify(args)} with 406`, async (t) => {
      const c = await suite.context(t);
      const q = c.queueName();
      const ch = await c.channel();
      const err = await rejectsWithClose(ch.assertQueue(q, { durable: false, arguments: args }));
      assert.equal(err.code, 406);
      assert.equal(err.text, `PRECONDITION_FAILED - invalid arg '${name}' for queue '${q}' in vhost '/': ${reason}`);
      assert.deepEqual([err.classId, err.methodId], [50, 10]);
    });
  }

  it('accepts x-max-priority 0 and x-overflow reject-publish-dlx', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await ch.assertQueue(c.queueName(), { durable: false, arguments: { 'x-max-priority': 0 } });
    await ch.assertQueue(c.queueName(), { durable: false, arguments: { 'x-overflow': 'reject-publish-dlx' } });
  });
});
