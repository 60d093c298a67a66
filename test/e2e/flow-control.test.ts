import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import amqp from 'amqplib';
import { e2eSuite } from './fixture';

// Resource alarms are driven through the embedded broker's handle; against RabbitMQ the same
// behaviour needs rabbitmqctl set_vm_memory_high_watermark, which these tests do not do.
const suite = e2eSuite();

describe('memory alarm', () => {
  it('blocks a publishing connection with connection.blocked while a consuming one keeps receiving, and unblocks when it clears', async (t) => {
    const warren = suite.broker.warren;
    if (warren === undefined) return t.skip('needs the embedded broker to raise the alarm');
    const alarms = warren.broker.alarms;
    const normalLimit = alarms.memoryLimit;
    t.after(() => {
      alarms.memoryLimit = normalLimit;
      alarms.check();
    });

    const pubConn = await amqp.connect(suite.broker.url);
    const subConn = await amqp.connect(suite.broker.url);
    t.after(async () => {
      await pubConn.close().catch(() => {});
      await subConn.close().catch(() => {});
    });
    const pub = await pubConn.createConfirmChannel();
    const sub = await subConn.createChannel();
    const { queue } = await sub.assertQueue('', { exclusive: true });
    // One message before the alarm marks this connection as a publisher.
    pub.sendToQueue(queue, Buffer.from('before'));
    await pub.waitForConfirms();

    const blocked = new Promise<string>((resolve) => pubConn.connection.once('blocked', resolve));
    alarms.memoryLimit = 1; // any process is over one byte
    alarms.check();
    assert.equal(await blocked, 'low on memory or disk');
    assert.ok(alarms.blocked);

    // The consumer still gets what was queued before the block.
    const got = await new Promise<string>((resolve) => {
      void sub.consume(queue, (m) => m && resolve(m.content.toString()), { noAck: true });
    });
    assert.equal(got, 'before');

    // A publish while blocked is not read until the alarm clears; then it is confirmed.
    pub.sendToQueue(queue, Buffer.from('during'));
    let confirmed = false;
    const confirm = pub.waitForConfirms().then(() => (confirmed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(confirmed, false);

    const unblocked = new Promise<void>((resolve) => pubConn.connection.once('unblocked', () => resolve()));
    alarms.memoryLimit = normalLimit;
    alarms.check();
    await unblocked;
    await confirm;
    assert.equal(confirmed, true);
  });
});

describe('paging transient messages', () => {
  it('pages transient messages of a long queue to disk past half the memory watermark and delivers them intact', async (t) => {
    const warren = suite.broker.warren;
    if (warren === undefined) return t.skip('needs the embedded broker to set the memory threshold');
    const alarms = warren.broker.alarms;
    const normalLimit = alarms.memoryLimit;
    t.after(() => {
      alarms.memoryLimit = normalLimit;
      alarms.check();
    });
    // Between half the limit and the limit: paging, but no alarm blocking publishers.
    alarms.memoryLimit = Math.floor(process.memoryUsage.rss() * 1.6);
    alarms.check();
    assert.equal(alarms.paging, true);
    assert.equal(alarms.blocked, false);

    const conn = await amqp.connect(suite.broker.url);
    t.after(() => conn.close());
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true });
    const n = 5000;
    for (let i = 0; i < n; i++) ch.sendToQueue(queue, Buffer.from(`t${i}-${'z'.repeat(100)}`), { headers: { i } });
    await ch.waitForConfirms();
    const q = warren.broker.vhosts.get('/')!.queues.get(queue)!;
    const paged = q.peekReady(0, n).filter((e) => e.msg.pagedOut).length;
    assert.ok(paged >= n - 2100, `only ${paged} of ${n} were paged out`);

    let next = 0;
    await new Promise<void>((resolve, reject) => {
      void ch.consume(
        queue,
        (m) => {
          if (m === null) return;
          try {
            assert.equal(m.content.toString(), `t${next}-${'z'.repeat(100)}`);
            assert.equal(m.properties.headers?.i, next);
          } catch (err) {
            reject(err);
          }
          if (++next === n) resolve();
        },
        { noAck: true },
      );
    });
  });
});
