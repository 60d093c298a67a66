// Faults against mirrored queues beyond a leader crash: a mirror crash, a frozen leader
// (SIGSTOP past its lease), etcd losing quorum, and a rolling restart under load. Each ends
// with the Jepsen-style check: every confirmed id was received.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';
import { cleanupAll, startEtcd, startNode, type EtcdCluster, type WarrenNode } from './harness';
import { ConfirmedPublisher, RecordingConsumer, check } from './checker';

after(cleanupAll);

interface HaRecord {
  epoch: number;
  leader: string;
  members: string[];
  isr: string[];
}

async function waitForRecord(etcd: EtcdCluster, queue: string, ok: (r: HaRecord) => boolean, timeoutMs = 20_000): Promise<HaRecord> {
  const client = new Etcd3({ hosts: etcd.endpoints });
  const deadline = Date.now() + timeoutMs;
  let last: HaRecord | null = null;
  try {
    while (Date.now() < deadline) {
      const v = await client
        .get(`/warren/ha/${encodeURIComponent('/')}/${encodeURIComponent(queue)}`)
        .string()
        .catch(() => null);
      last = v === null ? last : (JSON.parse(v) as HaRecord);
      if (last !== null && ok(last)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
  throw new Error(`mirror record of ${queue} never matched; last: ${JSON.stringify(last)}`);
}

async function setPolicy(node: WarrenNode, pattern: string, definition: Record<string, unknown>): Promise<void> {
  const res = await fetch(`http://${node.host}:${node.managementPort}/api/policies/%2F/ha`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
    body: JSON.stringify({ pattern, definition, 'apply-to': 'queues' }),
  });
  assert.ok(res.status === 201 || res.status === 204, `policy PUT answered ${res.status}`);
}

async function declare(url: string, queue: string): Promise<void> {
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.assertQueue(queue, { durable: true });
  } finally {
    await conn.close();
  }
}

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

describe('cluster faults, mirrored queues', { timeout: 240_000 }, () => {
  it('a mirror killed: publishes stall at most about the replica timeout, then continue with a smaller in-sync set', async () => {
    const etcd = await startEtcd({ members: 1 });
    const [n1, n2, n3] = await threeNodes(etcd);
    await setPolicy(n1!, '^ha\\.', { 'ha-mode': 'all' });
    await declare(n1!.url, 'ha.mirrorkill');
    await waitForRecord(etcd, 'ha.mirrorkill', (r) => r.isr.length === 3);
    const publisher = new ConfirmedPublisher({ urls: [n1!.url], queue: 'ha.mirrorkill', publisherId: 'm' });
    const consumer = new RecordingConsumer({ urls: [n1!.url], queue: 'ha.mirrorkill' });
    publisher.start(10);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(300, 20_000));
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
    const etcd = await startEtcd({ members: 1 });
    const [n1, n2, n3] = await threeNodes(etcd);
    await setPolicy(n1!, '^ha\\.', { 'ha-mode': 'all' });
    await declare(n1!.url, 'ha.mirrorfreeze');
    await waitForRecord(etcd, 'ha.mirrorfreeze', (r) => r.isr.length === 3);
    const publisher = new ConfirmedPublisher({ urls: [n1!.url], queue: 'ha.mirrorfreeze', publisherId: 'z' });
    const consumer = new RecordingConsumer({ urls: [n1!.url], queue: 'ha.mirrorfreeze' });
    publisher.start(10);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(300, 20_000));
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
    const etcd = await startEtcd({ members: 1 });
    const [n1, n2, n3] = await threeNodes(etcd);
    await setPolicy(n1!, '^ha\\.', { 'ha-mode': 'all' });
    await declare(n1!.url, 'ha.freeze');
    await waitForRecord(etcd, 'ha.freeze', (r) => r.isr.length === 3);
    const publisher = new ConfirmedPublisher({ urls: [n2!.url, n3!.url], queue: 'ha.freeze', publisherId: 'f' });
    const consumer = new RecordingConsumer({ urls: [n3!.url, n2!.url], queue: 'ha.freeze' });
    publisher.start(10);
    consumer.start();
    assert.ok(await publisher.waitForConfirmed(300, 20_000));
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
    await setPolicy(n1, '^ha\\.', { 'ha-mode': 'all' });
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
    await setPolicy(nodes[0]!, '^ha\\.', { 'ha-mode': 'all' });
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
