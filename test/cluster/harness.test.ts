// The cluster-test harness itself: processes come up ready, go away by PID, and the
// checker finds nothing lost on a broker that loses nothing.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';
import { cleanupAll, etcdPutGet, startEtcd, startNode, track } from './harness';
import { ConfirmedPublisher, RecordingConsumer, check } from './checker';

after(cleanupAll);

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

describe('etcd harness', () => {
  it('a 1-member cluster answers put/get and stop leaves no process', { timeout: 60_000 }, async (t) => {
    track(t);
    const cluster = await startEtcd({ members: 1 });
    const client = new Etcd3({ hosts: cluster.endpoints });
    try {
      await client.put('k').value('v');
      assert.equal(await client.get('k').string(), 'v');
    } finally {
      client.close();
    }
    const pids = cluster.members.map((m) => m.pid);
    await cluster.stop();
    for (const pid of pids) assert.equal(isAlive(pid), false, `etcd pid ${pid} survived stop()`);
  });

  it('a 3-member cluster survives one kill and stalls with two frozen', { timeout: 60_000 }, async () => {
    const cluster = await startEtcd({ members: 3 });
    const [m0, m1, m2] = cluster.members;
    assert.ok(m0 !== undefined && m1 !== undefined && m2 !== undefined);
    await m0.kill();
    assert.equal(isAlive(m0.pid), false);
    const rest = [m1.clientUrl, m2.clientUrl];
    // Leader election after a kill takes up to an election timeout or two.
    await cluster.waitHealthy(15_000);
    await etcdPutGet(rest, 2000);

    // Restart m0 first so that freezing two of three really is a lost quorum.
    await m0.restart();
    await cluster.waitHealthy(15_000);
    m1.freeze();
    m2.freeze();
    try {
      await assert.rejects(etcdPutGet([m0.clientUrl], 1000));
    } finally {
      m1.thaw();
      m2.thaw();
    }
    await cluster.waitHealthy(15_000);
    await etcdPutGet(cluster.endpoints, 2000);
    await cluster.stop();
    for (const m of cluster.members) assert.equal(isAlive(m.pid), false);
  });
});

describe('warren node harness', () => {
  it('a standalone node serves AMQP and keeps a confirmed persistent message across SIGKILL', { timeout: 60_000 }, async () => {
    const node = await startNode({ name: 'solo', standalone: true });
    const conn = await amqp.connect(node.url);
    conn.on('error', () => undefined);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('transient-q', { durable: false });
    ch.sendToQueue('transient-q', Buffer.from('hello'));
    await ch.waitForConfirms();
    const got = await ch.get('transient-q', { noAck: true });
    assert.ok(got !== false);
    assert.equal(got.content.toString(), 'hello');

    await ch.assertQueue('durable-q', { durable: true });
    ch.sendToQueue('durable-q', Buffer.from('survivor'), { persistent: true, messageId: 'm1' });
    await ch.waitForConfirms();
    const pidBefore = node.pid;
    const closed = new Promise((done) => conn.once('close', done));
    await node.kill();
    assert.equal(await node.exited, null);
    assert.equal(isAlive(pidBefore), false);
    await closed;

    await node.restart();
    assert.notEqual(node.pid, pidBefore);
    const conn2 = await amqp.connect(node.url);
    try {
      const ch2 = await conn2.createChannel();
      const again = await ch2.get('durable-q', { noAck: true });
      assert.ok(again !== false, 'the confirmed persistent message did not survive SIGKILL');
      assert.equal(again.content.toString(), 'survivor');
      assert.equal(again.properties.messageId, 'm1');
    } finally {
      await conn2.close();
    }
    const pid = node.pid;
    await node.stop();
    assert.equal(isAlive(pid), false);
  });

  it('the checker finds nothing lost against a standalone node', { timeout: 60_000 }, async () => {
    const node = await startNode({ name: 'checked', standalone: true });
    const queue = 'checker-q';
    const consumer = new RecordingConsumer({ urls: [node.url], queue, prefetch: 50 });
    const publisher = new ConfirmedPublisher({ urls: [node.url], queue, publisherId: 'p1' });
    consumer.start();
    publisher.start(20);
    // A run of about a second, as the cluster tests will do for longer under faults.
    await new Promise((done) => setTimeout(done, 1000));
    assert.ok(await publisher.waitForConfirmed(50, 20_000), 'fewer than 50 confirms');
    await publisher.stop();
    assert.ok(publisher.confirmed.size > 0, 'nothing was confirmed');
    assert.ok(await consumer.waitForIds(publisher.confirmed, 20_000), 'consumer did not receive every confirmed id');
    await consumer.stop();
    const result = check(publisher.confirmed, consumer.received);
    assert.deepEqual(result.lost, []);
    assert.equal(result.confirmedCount, publisher.confirmed.size);
    assert.ok(result.receivedCount >= result.confirmedCount);
    await node.stop();
  });
});

describe('checker across a crash', () => {
  it('publisher and consumer reconnect after SIGKILL and restart, and nothing confirmed is lost', { timeout: 60_000 }, async () => {
    const node = await startNode({ name: 'crashy', standalone: true });
    const queue = 'crash-q';
    const consumer = new RecordingConsumer({ urls: [node.url], queue, prefetch: 20 });
    const publisher = new ConfirmedPublisher({ urls: [node.url], queue, publisherId: 'p2' });
    consumer.start();
    publisher.start(10);
    assert.ok(await publisher.waitForConfirmed(100, 20_000), 'fewer than 100 confirms before the crash');
    await node.kill();
    await node.restart();
    const before = publisher.confirmed.size;
    assert.ok(await publisher.waitForConfirmed(before + 100, 20_000), `publisher did not resume: ${publisher.events.join('\n')}`);
    await publisher.stop();
    assert.ok(await consumer.waitForIds(publisher.confirmed, 20_000), `consumer did not catch up: ${consumer.events.join('\n')}`);
    await consumer.stop();
    assert.ok(publisher.connects >= 2 && consumer.connects >= 2, 'neither side reconnected');
    const result = check(publisher.confirmed, consumer.received);
    assert.deepEqual(result.lost, []);
    await node.stop();
  });
});
