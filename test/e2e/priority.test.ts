import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel } from 'amqplib';
import { consume, drain, e2eSuite, withTimeout } from './fixture';

const suite = e2eSuite();

/** Publishes [body, priority] pairs (undefined: no priority property) and waits for the confirms. */
async function publishAll(ch: ConfirmChannel, q: string, msgs: Array<[string, number | undefined]>): Promise<void> {
  for (const [body, priority] of msgs) ch.sendToQueue(q, Buffer.from(body), priority === undefined ? {} : { priority });
  await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
}

describe('priority queues (x-max-priority)', () => {
  it('delivers higher priorities first and keeps FIFO order within a priority; no priority counts as 0', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-priority': 10 } });
    const ch = await c.confirmChannel();
    await publishAll(ch, q, [
      ['a', 1],
      ['b', 5],
      ['c', undefined],
      ['d', 5],
      ['e', 10],
      ['f', 0],
      ['g', 1],
    ]);
    assert.deepEqual(await drain(ch, q), ['e', 'b', 'd', 'a', 'g', 'c', 'f']);
  });

  it('treats a priority above x-max-priority as the maximum and delivers the property unchanged', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-priority': 5 } });
    const ch = await c.confirmChannel();
    await publishAll(ch, q, [
      ['at-max', 5],
      ['above', 200],
      ['below', 4],
    ]);
    const got: Array<[string, number | undefined]> = [];
    for (;;) {
      const m = await ch.get(q, { noAck: true });
      if (m === false) break;
      got.push([m.content.toString(), m.properties.priority]);
    }
    assert.deepEqual(got, [
      ['at-max', 5],
      ['above', 200],
      ['below', 4],
    ]);
  });

  it('ignores the priority property on a queue without x-max-priority', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishAll(ch, q, [
      ['1', 0],
      ['2', 9],
      ['3', 5],
    ]);
    assert.deepEqual(await drain(ch, q), ['1', '2', '3']);
  });

  it('hands a consumer the messages that queued up in priority order', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-priority': 3 } });
    const ch = await c.confirmChannel();
    await publishAll(ch, q, [
      ['low', 1],
      ['high', 3],
      ['none', undefined],
      ['mid', 2],
      ['high2', 3],
    ]);
    const cch = await c.channel();
    await cch.prefetch(1);
    const consumer = await consume(cch, q);
    for (let i = 1; i <= 5; i++) {
      const ms = await consumer.waitFor(i);
      cch.ack(ms[i - 1]!);
    }
    assert.deepEqual(
      consumer.messages.map((m) => m.content.toString()),
      ['high', 'high2', 'mid', 'low', 'none'],
    );
  });

  it('puts a requeued message back at its place among messages of its priority', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-priority': 9 } });
    const ch = await c.confirmChannel();
    await publishAll(ch, q, [
      ['x', 5],
      ['y', 5],
      ['z', 1],
    ]);
    const first = await ch.get(q);
    assert.ok(first);
    assert.equal(first.content.toString(), 'x');
    await publishAll(ch, q, [['w', 5]]);
    ch.nack(first, false, true);
    const out: Array<[string, boolean]> = [];
    for (;;) {
      const m = await ch.get(q, { noAck: true });
      if (m === false) break;
      out.push([m.content.toString(), m.fields.redelivered]);
    }
    assert.deepEqual(out, [
      ['x', true],
      ['y', false],
      ['w', false],
      ['z', false],
    ]);
  });
});
