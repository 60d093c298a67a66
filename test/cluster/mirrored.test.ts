// Mirrored queues (ha-mode policies) with real processes and a Jepsen-style check: publishers
// log the ids the cluster confirmed, consumers log what they received; after faults every
// confirmed id must have been received. Duplicates are counted and reported, not hidden.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { cleanupAll, startEtcd, startNode } from './harness';
import { ConfirmedPublisher, RecordingConsumer, check } from './checker';
import { declareDurable as declare, GUEST_AUTH, setPolicy, waitForCount, waitForRecord } from './ha-fixture';

after(cleanupAll);

describe('cluster, mirrored queues', { timeout: 180_000 }, () => {
  it('kill -9 of the leader under load: an in-sync mirror takes over, no confirmed message is lost', async () => {
    const etcd = await startEtcd({ members: 1 });
    const n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    const n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
    const n3 = await startNode({ etcd: etcd.endpoints, name: 'n3', host: '127.0.0.3' });
    await setPolicy(n1, 'ha-all', '^ha\\.', { 'ha-mode': 'all' });
    await declare(n1.url, 'ha.kill');
    await waitForRecord(etcd, 'ha.kill', (r) => r.leader === 'n1' && r.isr.length === 3);
    // The management API of any node shows the cluster and the queue's placement.
    const auth = { authorization: GUEST_AUTH };
    const nodes = (await (await fetch(`http://${n3.host}:${n3.managementPort}/api/nodes`, { headers: auth })).json()) as Array<{ name: string; running: boolean }>;
    assert.deepEqual(nodes.map((n) => n.name).sort(), ['n1', 'n2', 'n3']);
    const view = (await (await fetch(`http://${n3.host}:${n3.managementPort}/api/queues/%2F/ha.kill`, { headers: auth })).json()) as Record<string, unknown>;
    assert.equal(view.node, 'n1');
    assert.deepEqual((view.synchronised_slave_nodes as string[]).sort(), ['n2', 'n3']);

    const publisher = new ConfirmedPublisher({ urls: [n2.url, n3.url], queue: 'ha.kill', publisherId: 'p' });
    const consumer = new RecordingConsumer({ urls: [n3.url, n2.url], queue: 'ha.kill', prefetch: 50 });
    publisher.start(20);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(500, 20_000), 'no confirms before the fault');

    // A plain consumer (no reconnect logic) through a surviving node: as with RabbitMQ's mirrored
    // queues it keeps consuming across the failover, without basic.cancel.
    const plain = await amqp.connect(n3.url);
    const plainCh = await plain.createChannel();
    let plainCancelled = false;
    let plainAfterFailover = 0;
    let failedOver = false;
    const plainReceived = new Map<string, number>();
    await plainCh.consume('ha.kill', (m) => {
      if (m === null) {
        plainCancelled = true;
        return;
      }
      const id = m.properties.messageId ?? m.content.toString();
      plainReceived.set(String(id), (plainReceived.get(String(id)) ?? 0) + 1);
      if (failedOver) plainAfterFailover++;
      plainCh.ack(m);
    });

    const killedAt = Date.now();
    const before = publisher.confirmed.size;
    await n1.kill();
    const rec = await waitForRecord(etcd, 'ha.kill', (r) => r.leader !== 'n1');
    failedOver = true;
    assert.ok(['n2', 'n3'].includes(rec.leader));
    assert.ok(await publisher.waitForConfirmed(before + 500, 30_000), 'publishing did not resume after failover');
    const failoverMs = Date.now() - killedAt;
    assert.equal(plainCancelled, false, 'a consumer through a surviving node was cancelled by the failover');
    assert.ok(plainAfterFailover > 0, 'a consumer through a surviving node got nothing after the failover');
    await publisher.stop();
    await plainCh.close();
    await plain.close();
    await publisher.stop();
    // Both consumers together must have seen every confirmed id.
    const all = [...publisher.confirmed].filter((id) => !plainReceived.has(id));
    await consumer.waitForIds(all, 30_000);
    await consumer.stop();
    const received = new Map(consumer.received);
    for (const [id, n] of plainReceived) received.set(id, (received.get(id) ?? 0) + n);
    const result = check(publisher.confirmed, received);
    process.stdout.write(`# kill -9 leader: confirmed ${result.confirmedCount}, received ${result.receivedCount}, duplicates ${result.duplicates}, resumed after ${failoverMs} ms\n`);
    assert.deepEqual(result.lost, [], `lost ${result.lost.length} of ${result.confirmedCount}`);
    await n2.stop();
    await n3.stop();
    await etcd.stop();
  });

  it('a graceful stop of the leader hands the queue over within a second', async () => {
    const etcd = await startEtcd({ members: 1 });
    const n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    const n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
    await setPolicy(n1, 'ha-two', '^ha\\.', { 'ha-mode': 'exactly', 'ha-params': 2 });
    await declare(n1.url, 'ha.stop');
    await waitForRecord(etcd, 'ha.stop', (r) => r.leader === 'n1' && r.isr.length === 2);
    const publisher = new ConfirmedPublisher({ urls: [n2.url], queue: 'ha.stop', publisherId: 's' });
    publisher.start(10);
    assert.ok(await publisher.waitForConfirmed(300, 20_000));
    const stoppedAt = Date.now();
    await n1.stop();
    const rec = await waitForRecord(etcd, 'ha.stop', (r) => r.leader === 'n2', 5000);
    const handoverMs = Date.now() - stoppedAt;
    process.stdout.write(`# graceful handover in ${handoverMs} ms (epoch ${rec.epoch})\n`);
    const before = publisher.confirmed.size;
    assert.ok(await publisher.waitForConfirmed(before + 200, 20_000));
    await publisher.stop();
    const consumer = new RecordingConsumer({ urls: [n2.url], queue: 'ha.stop', prefetch: 100 });
    const depth = await amqp.connect(n2.url).then(async (c) => {
      const ch = await c.createChannel();
      const ok = await ch.checkQueue('ha.stop');
      await c.close();
      return ok.messageCount;
    });
    process.stdout.write(`# after handover: ${depth} messages in the queue, ${publisher.confirmed.size} confirmed\n`);
    consumer.start();
    await consumer.waitForIds([...publisher.confirmed], 30_000);
    await consumer.stop();
    const result = check(publisher.confirmed, consumer.received);
    assert.deepEqual(result.lost, [], `lost ${result.lost.length} of ${result.confirmedCount}; ${publisher.events.slice(-10).join('; ')}`);
    await n2.stop();
    await etcd.stop();
  });

  it('ha-sync-mode manual: a new mirror stays out of sync until an operator syncs it, without blocking the queue', async () => {
    const etcd = await startEtcd({ members: 1 });
    const n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    await setPolicy(n1, 'ha-manual', '^ha\\.', { 'ha-mode': 'all', 'ha-sync-mode': 'manual' });
    const conn = await amqp.connect(n1.url);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('ha.manual', { durable: true });
    for (let i = 0; i < 50; i++) ch.sendToQueue('ha.manual', Buffer.from(`old-${i}`), { persistent: true });
    await ch.waitForConfirms();
    const n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
    const joined = await waitForRecord(etcd, 'ha.manual', (r) => r.members.includes('n2'));
    assert.deepEqual(joined.isr, ['n1'], 'a manual-sync mirror joined the in-sync set with old messages unsynced');
    // The queue keeps working meanwhile.
    ch.sendToQueue('ha.manual', Buffer.from('new'), { persistent: true });
    await ch.waitForConfirms();
    // The operator's sync, through warrenctl (rabbitmqctl's verb).
    const ctl = join(__dirname, '..', '..', 'src', 'cli', 'warrenctl.js');
    const out = execFileSync(process.execPath, [ctl, '--url', `http://${n1.host}:${n1.managementPort}`, 'sync_queue', 'ha.manual'], { encoding: 'utf8' });
    assert.match(out, /sync requested/);
    await waitForRecord(etcd, 'ha.manual', (r) => r.isr.includes('n2'));
    // In sync means it holds everything: kill the leader, the mirror serves all 51.
    await conn.close();
    await n1.kill();
    await waitForRecord(etcd, 'ha.manual', (r) => r.leader === 'n2');
    const c2 = await amqp.connect(n2.url);
    const ch2 = await c2.createChannel();
    assert.equal(await waitForCount(ch2, 'ha.manual', 51), 51);
    await c2.close();
    await n2.stop();
    await etcd.stop();
  });

  it('a leader restarted with a long backlog (beyond the cold-tail threshold) mirrors every message exactly once', async () => {
    const etcd = await startEtcd({ members: 1 });
    const n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    await setPolicy(n1, 'ha-long', '^ha\\.', { 'ha-mode': 'all' });
    const total = 12_000;
    {
      const conn = await amqp.connect(n1.url);
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue('ha.long', { durable: true });
      for (let i = 0; i < total; i++) ch.sendToQueue('ha.long', Buffer.from(String(i)), { persistent: true });
      await ch.waitForConfirms();
      await conn.close();
    }
    // Restored from disk, most of the backlog sits in the cold tail (store ids only).
    await n1.stop();
    await n1.restart();
    const n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
    await waitForRecord(etcd, 'ha.long', (r) => r.leader === 'n1' && r.isr.includes('n2'), 30_000);
    // Consume past the in-memory part on the leader first: the mirror must forget exactly those.
    const consumed = 11_000;
    {
      const conn = await amqp.connect(n1.url);
      const ch = await conn.createChannel();
      await ch.prefetch(500);
      let n = 0;
      await new Promise<void>((resolve) => {
        void ch.consume('ha.long', (m) => {
          if (m === null || n >= consumed) return;
          n++;
          ch.ack(m);
          if (n === consumed) resolve();
        });
      });
      await ch.close();
      await conn.close();
    }
    await n1.kill();
    await waitForRecord(etcd, 'ha.long', (r) => r.leader === 'n2');
    const conn = await amqp.connect(n2.url);
    const ch = await conn.createChannel();
    const seen = new Set<string>();
    let duplicates = 0;
    for (;;) {
      const m = await ch.get('ha.long', { noAck: true });
      if (m === false) break;
      const id = m.content.toString();
      if (seen.has(id)) duplicates++;
      seen.add(id);
    }
    await conn.close();
    assert.equal(duplicates, 0);
    assert.equal(seen.size, total - consumed);
    for (let i = consumed; i < total; i++) assert.ok(seen.has(String(i)), `message ${i} missing after failover`);
    await n2.stop();
    await etcd.stop();
  });

  it('a mirrored non-durable queue outlives its leader: a mirror takes over with its messages', async () => {
    const etcd = await startEtcd({ members: 1 });
    const n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    const n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
    await setPolicy(n1, 'ha-transient', '^ha\\.', { 'ha-mode': 'all' });
    const conn = await amqp.connect(n1.url);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('ha.transient', { durable: false });
    await waitForRecord(etcd, 'ha.transient', (r) => r.isr.length === 2);
    for (let i = 0; i < 100; i++) ch.sendToQueue('ha.transient', Buffer.from(String(i)));
    await ch.waitForConfirms();
    await conn.close();
    await n1.kill();
    await waitForRecord(etcd, 'ha.transient', (r) => r.leader === 'n2');
    const c2 = await amqp.connect(n2.url);
    const ch2 = await c2.createChannel();
    assert.equal(await waitForCount(ch2, 'ha.transient', 100), 100);
    await c2.close();
    await n2.stop();
    await etcd.stop();
  });
});
