import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Channel, Message } from 'amqplib';
import {
  Collector,
  connect,
  consume,
  e2eSuite,
  isClosed,
  messageCount,
  openChannel,
  publishConfirmed,
  rejectsWithClose,
  serverClose,
  sleep,
  startExtraWarren,
  uniq,
  warrenOnly,
  withPolicy,
  withTimeout,
  type Consumer,
} from './fixture';

const suite = e2eSuite();

const bodies = (ms: Message[]): string[] => ms.map((m) => m.content.toString());

/** A consumer that acknowledges every delivery as soon as it arrives. */
async function ackingConsumer(ch: Channel, queue: string): Promise<Consumer> {
  const c = new Collector();
  const ok = await ch.consume(queue, (m) => {
    if (m === null) return c.markCancelled();
    ch.ack(m);
    c.push(m);
  });
  return Object.assign(c, { consumerTag: ok.consumerTag });
}

const SAC = { durable: false, arguments: { 'x-single-active-consumer': true } };

describe('single active consumer (x-single-active-consumer)', () => {
  it('delivers only to the first consumer while the others wait, and counts them all', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue(SAC);
    const first = await ackingConsumer(await c.channel(), q);
    const second = await ackingConsumer(await c.channel(), q);
    const pub = await c.confirmChannel();
    for (let i = 0; i < 4; i++) pub.sendToQueue(q, Buffer.from(`s${i}`));
    await first.waitFor(4);
    assert.deepEqual(bodies(first.messages), ['s0', 's1', 's2', 's3']);
    assert.equal(second.messages.length, 0);
    assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 2 });
  });

  it('fails over to the next consumer in subscription order when the active one cancels', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue(SAC);
    const ch = await c.channel();
    const a = await ackingConsumer(ch, q);
    const bch = await c.channel();
    const b = await ackingConsumer(bch, q);
    const d = await ackingConsumer(await c.channel(), q);
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'to-a');
    await a.waitFor(1);
    await ch.cancel(a.consumerTag);
    await publishConfirmed(pub, '', q, 'to-b');
    await b.waitFor(1);
    await bch.cancel(b.consumerTag);
    await publishConfirmed(pub, '', q, 'to-d');
    await d.waitFor(1);
    assert.deepEqual([bodies(a.messages), bodies(b.messages), bodies(d.messages)], [['to-a'], ['to-b'], ['to-d']]);
  });

  it('gives the unacknowledged messages of a closed active consumer to the next one, redelivered and in order', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue(SAC);
    const ach = await c.channel();
    await ach.prefetch(1);
    const a = await consume(ach, q);
    const b = await ackingConsumer(await c.channel(), q);
    const pub = await c.confirmChannel();
    for (const m of ['m1', 'm2', 'm3']) pub.sendToQueue(q, Buffer.from(m));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    await a.waitFor(1);
    // a holds m1 unacked (prefetch 1); m2 and m3 wait in the queue rather than go to b.
    assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 2, consumerCount: 2 });
    assert.equal(b.messages.length, 0);
    await ach.close();
    const got = await b.waitFor(3);
    assert.deepEqual(
      got.map((m) => [m.content.toString(), m.fields.redelivered]),
      [
        ['m1', true],
        ['m2', false],
        ['m3', false],
      ],
    );
  });

  it('keeps delivering to the active consumer after it acks rather than spreading to the others', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue(SAC);
    const ach = await c.channel();
    await ach.prefetch(1);
    const a = await consume(ach, q);
    const b = await ackingConsumer(await c.channel(), q);
    const pub = await c.confirmChannel();
    for (const m of ['p1', 'p2', 'p3']) pub.sendToQueue(q, Buffer.from(m));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    for (let i = 1; i <= 3; i++) {
      const ms = await a.waitFor(i);
      ach.ack(ms[i - 1]!);
    }
    assert.deepEqual(bodies(a.messages), ['p1', 'p2', 'p3']);
    assert.equal(b.messages.length, 0);
  });
});

describe('consumer priorities (x-priority)', () => {
  it('feeds the highest-priority consumer up to its prefetch, spills the rest to lower ones, and returns to it once it acks', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const hch = await c.channel();
    await hch.prefetch(2);
    const high = await consume(hch, q, { priority: 10 });
    const low = await consume(await c.channel(), q, { arguments: { 'x-priority': 1 } });
    const pub = await c.confirmChannel();
    for (let i = 0; i < 5; i++) pub.sendToQueue(q, Buffer.from(`p${i}`));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    await high.waitFor(2);
    await low.waitFor(3);
    assert.deepEqual([bodies(high.messages), bodies(low.messages)], [['p0', 'p1'], ['p2', 'p3', 'p4']]);

    hch.ack(high.messages[1]!, true);
    for (let i = 5; i < 7; i++) pub.sendToQueue(q, Buffer.from(`p${i}`));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    await high.waitFor(4);
    assert.deepEqual(bodies(high.messages), ['p0', 'p1', 'p5', 'p6']);
    assert.equal(low.messages.length, 3);
  });

  it('round-robins among consumers of the same top priority and starves lower ones', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    const all = new Collector();
    const h1 = await consume(ch, q, { priority: 5 }, all);
    const lo = await consume(ch, q, { priority: 1 }, all);
    const h2 = await consume(ch, q, { priority: 5 }, all);
    const pub = await c.confirmChannel();
    for (let i = 0; i < 4; i++) pub.sendToQueue(q, Buffer.from(`r${i}`));
    await all.waitFor(4);
    assert.deepEqual([bodies(h1.messages), bodies(h2.messages), bodies(lo.messages)], [['r0', 'r2'], ['r1', 'r3'], []]);
  });

  it('ranks a negative priority below consumers without one', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    const all = new Collector();
    const neg = await consume(ch, q, { priority: -5 }, all);
    const plain = await consume(ch, q, {}, all);
    const pub = await c.confirmChannel();
    for (let i = 0; i < 3; i++) pub.sendToQueue(q, Buffer.from(`n${i}`));
    await all.waitFor(3);
    assert.deepEqual([bodies(plain.messages), bodies(neg.messages)], [['n0', 'n1', 'n2'], []]);
  });

  const invalid: Array<[unknown, string]> = [
    ['high', 'longstr'],
    [1.5, 'double'],
    [true, 'bool'],
  ];
  for (const [value, type] of invalid) {
    it(`refuses x-priority ${JSON.stringify(value)} with 406`, async (t) => {
      const c = await suite.context(t);
      const q = await c.queue();
      const ch = await c.channel();
      const err = await rejectsWithClose(ch.consume(q, () => {}, { arguments: { 'x-priority': value } }));
      assert.equal(err.code, 406);
      assert.equal(err.text, `PRECONDITION_FAILED - invalid arg 'x-priority' for queue '${q}' in vhost '/': "expected integer, got ${type}"`);
      assert.deepEqual([err.classId, err.methodId], [60, 20]);
    });
  }
});

const RABBIT_TIMEOUT =
  'RabbitMQ 3.10 ignores x-consumer-timeout (its global consumer_timeout closes the whole channel with 406)';

describe('consumer acknowledgement timeout', () => {
  it('cancels only the stuck consumer with basic.cancel and requeues its messages, leaving the channel open', async (t) => {
    if (!warrenOnly(t, RABBIT_TIMEOUT)) return;
    const c = await suite.context(t);
    const args = { durable: false, arguments: { 'x-consumer-timeout': 500 } };
    const q = await c.queue(args);
    const other = await c.queue(args);
    const ch = await c.channel();
    const stuck = await consume(ch, q);
    const healthy = await ackingConsumer(ch, other);
    const pub = await c.confirmChannel();

    const t0 = Date.now();
    pub.sendToQueue(q, Buffer.from('s1'));
    pub.sendToQueue(q, Buffer.from('s2'));
    await withTimeout(pub.waitForConfirms(), 5000, 'confirms');
    await stuck.waitFor(2);
    // The healthy consumer keeps acking across the timeout window.
    for (let i = 0; i < 3; i++) {
      await publishConfirmed(pub, '', other, `h${i}`);
      await healthy.waitFor(i + 1);
      await sleep(250);
    }
    await stuck.waitCancelled(3000);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 495, `cancelled after ${elapsed} ms, before the 500 ms timeout`);

    assert.equal(isClosed(ch), false);
    assert.equal(healthy.cancelled, false);
    assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 2, consumerCount: 0 });
    const again = await pub.get(q, { noAck: true });
    assert.ok(again);
    assert.deepEqual([again.content.toString(), again.fields.redelivered], ['s1', true]);
    await publishConfirmed(pub, '', other, 'after');
    const got = await healthy.waitFor(4);
    assert.equal(got[3]!.content.toString(), 'after');
  });

  it('takes the timeout from a consumer-timeout policy', async (t) => {
    if (!warrenOnly(t, RABBIT_TIMEOUT)) return;
    const c = await suite.context(t);
    const name = uniq('ct');
    const q = c.trackQueue(`${name}.q`);
    await withPolicy(t, suite.broker, { name, pattern: `^${name.replace(/\./g, '\\.')}\\.`, definition: { 'consumer-timeout': 300 } });
    const ch = await c.channel();
    await ch.assertQueue(q, { durable: false });
    const stuck = await consume(ch, q);
    const pub = await c.confirmChannel();
    const t0 = Date.now();
    await publishConfirmed(pub, '', q, 'held');
    await stuck.waitFor(1);
    await stuck.waitCancelled(3000);
    assert.ok(Date.now() - t0 >= 295);
    assert.equal(await messageCount(pub, q), 1);
  });

  it("closes the channel with RabbitMQ's 406 when configured with consumerTimeoutAction close-channel", async (t) => {
    if (!warrenOnly(t, RABBIT_TIMEOUT)) return;
    const broker = await startExtraWarren(t, { consumerTimeout: 400, consumerTimeoutAction: 'close-channel' });
    const conn = await connect(broker.url);
    const ch = await openChannel(conn);
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    const consumer = await consume(ch, q);
    ch.sendToQueue(q, Buffer.from('late'));
    await consumer.waitFor(1);
    const err = await serverClose(ch, 3000);
    assert.equal(err.code, 406);
    assert.equal(
      err.text,
      'PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value used: 400 ms. ' +
        'This timeout value can be configured, see consumers doc guide to learn more',
    );
    assert.deepEqual([err.classId, err.methodId], [0, 0]);
    const check = await openChannel(conn);
    const m = await check.get(q, { noAck: true });
    assert.ok(m);
    assert.deepEqual([m.content.toString(), m.fields.redelivered], ['late', true]);
    await check.close();
    await conn.close();
  });
});
