// Faults against mirrored queues beyond a leader crash: a mirror crash, a frozen leader
// (SIGSTOP past its lease), etcd losing quorum, and a rolling restart under load. Each ends
// with the Jepsen-style check: every confirmed id was received.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { cleanupAll, startEtcd, startNode, type EtcdCluster, type WarrenNode } from './harness';
import { ConfirmedPublisher, RecordingConsumer, check } from './checker';
import { declareDurable as declare, setPolicy, waitForRecord } from './ha-fixture';

after(cleanupAll);

async function threeNodes(etcd: EtcdCluster, extraArgs: string[] = []): Promise<WarrenNode[]> {
  return Promise.all(['n1', 'n2', 'n3'].map((name, i) => startNode({ etcd: etcd.endpoints, name, host: `127.0.0.${i + 1}`, extraArgs })));
}

async function drainAndCheck(publisher: ConfirmedPublisher, consumer: RecordingConsumer, label: string): Promise<void> {
  await publisher.stop();
  await consumer.waitForIds([...publisher.confirmed], 30_000);
  await consumer.stop();
  const r = check(publisher.confirmed, consumer.received);
  process.stdout.write(`# ${label}: confirmed ${r.confirmedCount}, received ${r.receivedCount}, duplicates ${r.duplicates}, lost ${r.lost.length}\n`);
  assert.deepEqual(r.lost, [], `${label}: lost ${r.lost.length} confirmed messages`);
}

/**
 * Three nodes, a queue mirrored on all of them and in sync, and a confirmed publisher and a
 * recording consumer already running against the given nodes (indexes into the three).
 */
async function mirroredUnderLoad(queue: string, id: string, publishVia: number[], consumeVia: number[]): Promise<{ etcd: EtcdCluster; nodes: WarrenNode[]; publisher: ConfirmedPublisher; consumer: RecordingConsumer }> {
  const etcd = await startEtcd({ members: 1 });
  const nodes = await threeNodes(etcd);
  await setPolicy(nodes[0]!, 'ha', '^ha\\.', { 'ha-mode': 'all' });
  await declare(nodes[0]!.url, queue);
  await waitForRecord(etcd, queue, (r) => r.isr.length === 3);
  const publisher = new ConfirmedPublisher({ urls: publishVia.map((i) => nodes[i]!.url), queue, publisherId: id });
  const consumer = new RecordingConsumer({ urls: consumeVia.map((i) => nodes[i]!.url), queue });
  publisher.start(10);
  consumer.start();
  assert.ok(await publisher.waitForConfirmed(300, 20_000), 'no confirms before the fault');
  return { etcd, nodes, publisher, consumer };
}

describe('cluster faults, mirrored queues', { timeout: 240_000 }, () => {
  it('a mirror killed: publishes stall at most about the replica timeout, then continue with a smaller in-sync set', async () => {
    const { etcd, nodes, publisher, consumer } = await mirroredUnderLoad('ha.mirrorkill', 'm', [0], [0]);
    const [n1, n2, n3] = nodes;
    const killedAt = Date.now();
    const before = publisher.confirmed.size;
    await n3!.kill();
    assert.ok(await publisher.waitForConfirmed(before + 300, 20_000), 'publishing did not continue after a mirror died');
    const stallMs = Date.now() - killedAt;
    process.stdout.write(`# mirror kill: 300 more confirms within ${stallMs} ms\n`);
    // Lease (3 s) or replica timeout (3 s), plus an etcd write and slack for a loaded machine.
    assert.ok(stallMs < 8000, `publishes stalled ${stallMs} ms`);
    const rec = await waitForRecord(etcd, 'ha.mirrorkill', (r) => !r.isr.includes('n3'));
    assert.equal(rec.leader, 'n1');
    await drainAndCheck(publisher, consumer, 'mirror kill');
    await n2!.stop();
    await n1!.stop();
  });

  it('a frozen mirror (SIGSTOP): publishes stall at most about the replica timeout; it rejoins after SIGCONT', async () => {
    const { etcd, nodes, publisher, consumer } = await mirroredUnderLoad('ha.mirrorfreeze', 'z', [0], [0]);
    const [n1, n2, n3] = nodes;
    const frozenAt = Date.now();
    const before = publisher.confirmed.size;
    n2!.freeze();
    assert.ok(await publisher.waitForConfirmed(before + 300, 20_000), 'publishing did not continue with a frozen mirror');
    const stallMs = Date.now() - frozenAt;
    process.stdout.write(`# mirror freeze: 300 more confirms within ${stallMs} ms\n`);
    assert.ok(stallMs < 8000, `publishes stalled ${stallMs} ms`);
    await waitForRecord(etcd, 'ha.mirrorfreeze', (r) => !r.isr.includes('n2'));
    n2!.thaw();
    await waitForRecord(etcd, 'ha.mirrorfreeze', (r) => r.isr.includes('n2'), 30_000);
    await drainAndCheck(publisher, consumer, 'mirror freeze');
    await Promise.all([n1!.stop(), n2!.stop(), n3!.stop()]);
  });

  it('a frozen leader (SIGSTOP past its lease) is replaced; on waking it fences itself and loses nothing', async () => {
    const { etcd, nodes, publisher, consumer } = await mirroredUnderLoad('ha.freeze', 'f', [1, 2], [2, 1]);
    const [n1, n2, n3] = nodes;
    n1!.freeze();
    const rec = await waitForRecord(etcd, 'ha.freeze', (r) => r.leader !== 'n1');
    const before = publisher.confirmed.size;
    assert.ok(await publisher.waitForConfirmed(before + 300, 30_000), 'no confirms from the new leader');
    n1!.thaw();
    // The old leader comes back as a mirror of the new epoch.
    await waitForRecord(etcd, 'ha.freeze', (r) => r.epoch === rec.epoch && r.isr.includes('n1'), 30_000);
    await drainAndCheck(publisher, consumer, 'leader freeze');
    await Promise.all([n1!.stop(), n2!.stop(), n3!.stop()]);
  });

  it('etcd quorum lost: declares fail cleanly, nothing confirmed is lost, everything recovers', async () => {
    const etcd = await startEtcd({ members: 3 });
    const [n1, n2] = await Promise.all([
      startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' }),
      startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' }),
    ]);
    await setPolicy(n1, 'ha', '^ha\\.', { 'ha-mode': 'all' });
    await declare(n1.url, 'ha.quorum');
    await waitForRecord(etcd, 'ha.quorum', (r) => r.isr.length === 2);
    const publisher = new ConfirmedPublisher({ urls: [n1.url, n2.url], queue: 'ha.quorum', publisherId: 'q' });
    const consumer = new RecordingConsumer({ urls: [n2.url, n1.url], queue: 'ha.quorum' });
    publisher.start(10);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(200, 20_000));
    const [, m2, m3] = etcd.members;
    m2!.freeze();
    m3!.freeze();
    try {
      const conn = await amqp.connect(n2.url);
      conn.on('error', () => undefined);
      const ch = await conn.createChannel();
      const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
      await assert.rejects(ch.assertQueue('during-outage', { durable: true }));
      assert.match((await closed).message, /541|etcd/);
      await conn.close().catch(() => undefined);
    } finally {
      m2!.thaw();
      m3!.thaw();
    }
    await etcd.waitHealthy(20_000);
    const before = publisher.confirmed.size;
    assert.ok(await publisher.waitForConfirmed(before + 200, 40_000), 'publishing did not recover after etcd came back');
    const conn = await amqp.connect(n1.url);
    const ch = await conn.createChannel();
    await ch.assertQueue('after-outage', { durable: true });
    await conn.close();
    await drainAndCheck(publisher, consumer, 'etcd quorum loss');
    await Promise.all([n1.stop(), n2.stop()]);
  });

  it('rolling restart of every node under load loses no confirmed message', async () => {
    const etcd = await startEtcd({ members: 1 });
    const nodes = await threeNodes(etcd);
    await setPolicy(nodes[0]!, 'ha', '^ha\\.', { 'ha-mode': 'all' });
    await declare(nodes[0]!.url, 'ha.rolling');
    await waitForRecord(etcd, 'ha.rolling', (r) => r.isr.length === 3);
    const urls = nodes.map((n) => n.url);
    const publisher = new ConfirmedPublisher({ urls, queue: 'ha.rolling', publisherId: 'r' });
    const consumer = new RecordingConsumer({ urls: [...urls].reverse(), queue: 'ha.rolling' });
    publisher.start(10);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(200, 20_000));
    for (const node of nodes) {
      await node.stop();
      await node.restart();
      await waitForRecord(etcd, 'ha.rolling', (r) => r.isr.length === 3, 30_000);
      const before = publisher.confirmed.size;
      assert.ok(await publisher.waitForConfirmed(before + 100, 30_000), `no progress after restarting ${node.name}`);
    }
    await drainAndCheck(publisher, consumer, 'rolling restart');
    await Promise.all(nodes.map((n) => n.stop()));
  });
});
