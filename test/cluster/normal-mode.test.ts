// Normal (unmirrored) cluster mode, with real processes: metadata is shared through etcd, a
// queue's messages live on its home node, and any node forwards publishes, consumers, gets
// and acks to it. A dead home makes its durable queues unavailable until it returns with
// its data; its transient queues vanish.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';
import { cleanupAll, startEtcd, startNode, type EtcdCluster, type WarrenNode } from './harness';

after(cleanupAll);

function channelClosed(ch: amqp.Channel): Promise<Error> {
  return new Promise((resolve) => ch.once('error', (err: Error) => resolve(err)));
}

async function withChannel<T>(url: string, fn: (ch: amqp.ConfirmChannel, conn: amqp.ChannelModel) => Promise<T>): Promise<T> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    const result = await fn(ch, conn);
    // Closing the channel first makes the broker handle every ack sent before (amqplib may
    // drop acks still queued when the whole connection closes, with RabbitMQ too).
    await ch.close().catch(() => undefined);
    return result;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe('cluster, normal mode', { timeout: 120_000 }, () => {
  let etcd: EtcdCluster;
  let n1: WarrenNode;
  let n2: WarrenNode;

  before(async () => {
    etcd = await startEtcd({ members: 1 });
    n1 = await startNode({ etcd: etcd.endpoints, name: 'n1', host: '127.0.0.1' });
    n2 = await startNode({ etcd: etcd.endpoints, name: 'n2', host: '127.0.0.2' });
  });

  it('shares topology: a queue declared on one node is there on the other', async () => {
    await withChannel(n1.url, async (ch) => {
      await ch.assertExchange('nm.x', 'topic', { durable: true });
      await ch.assertQueue('nm.shared', { durable: true });
      await ch.bindQueue('nm.shared', 'nm.x', 'a.*');
    });
    await withChannel(n2.url, async (ch) => {
      const ok = await ch.checkQueue('nm.shared');
      assert.equal(ok.queue, 'nm.shared');
      await ch.checkExchange('nm.x');
      // Equivalence is checked against the shared definition.
      const closed = channelClosed(ch);
      await assert.rejects(ch.assertQueue('nm.shared', { durable: false }));
      assert.match((await closed).message, /406/);
    });
  });

  it('users, permissions and vhosts made through one node\'s API work on the other at once', async () => {
    const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`, 'content-type': 'application/json' };
    const api = `http://${n1.host}:${n1.managementPort}/api`;
    assert.equal((await fetch(`${api}/vhosts/nm-vh`, { method: 'PUT', headers: auth })).status, 201);
    assert.equal((await fetch(`${api}/users/nm-user`, { method: 'PUT', headers: auth, body: JSON.stringify({ password: 'pw', tags: '' }) })).status, 201);
    const perm = JSON.stringify({ configure: '.*', write: '.*', read: '.*' });
    assert.equal((await fetch(`${api}/permissions/nm-vh/nm-user`, { method: 'PUT', headers: auth, body: perm })).status, 201);
    const conn = await amqp.connect(`amqp://nm-user:pw@${n2.host}:${n2.port}/nm-vh`);
    const ch = await conn.createChannel();
    await ch.assertQueue('nm.in-vh');
    await conn.close();
  });

  it('forwards publishes with confirms, gets and acks to the home node', async () => {
    await withChannel(n2.url, async (ch) => {
      ch.publish('nm.x', 'a.b', Buffer.from('via-exchange'), { persistent: true, headers: { h: 1 }, contentType: 'text/plain' });
      ch.sendToQueue('nm.shared', Buffer.from('via-default'), { persistent: true });
      await ch.waitForConfirms();
      const ok = await ch.checkQueue('nm.shared');
      assert.equal(ok.messageCount, 2);
      const first = await ch.get('nm.shared', { noAck: false });
      assert.ok(first !== false);
      assert.equal(first.content.toString(), 'via-exchange');
      assert.equal(first.fields.exchange, 'nm.x');
      assert.equal(first.fields.routingKey, 'a.b');
      assert.equal(first.properties.contentType, 'text/plain');
      assert.deepEqual(first.properties.headers, { h: 1 });
      ch.ack(first);
    });
    await withChannel(n1.url, async (ch) => {
      const ok = await ch.checkQueue('nm.shared');
      assert.equal(ok.messageCount, 1);
      const m = await ch.get('nm.shared', { noAck: true });
      assert.ok(m !== false);
      assert.equal(m.content.toString(), 'via-default');
    });
  });

  it('the management API of a non-home node counts, gets and purges the home node\'s messages', async () => {
    await withChannel(n1.url, async (ch) => {
      await ch.assertQueue('nm.http', { durable: true });
      for (let i = 0; i < 3; i++) ch.sendToQueue('nm.http', Buffer.from(`h${i}`));
      await ch.waitForConfirms();
    });
    const headers = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`, 'content-type': 'application/json' };
    const api = `http://${n2.host}:${n2.managementPort}/api/queues/%2F/nm.http`;
    const view = (await (await fetch(api, { headers })).json()) as { messages: number; node: string };
    assert.equal(view.messages, 3);
    assert.equal(view.node, 'n1');
    const got = (await (await fetch(`${api}/get`, { method: 'POST', headers, body: JSON.stringify({ count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' }) })).json()) as Array<{ payload: string }>;
    assert.equal(got[0]?.payload, 'h0');
    assert.equal((await fetch(`${api}/contents`, { method: 'DELETE', headers })).status, 204);
    await withChannel(n1.url, async (ch) => {
      assert.equal((await ch.checkQueue('nm.http')).messageCount, 0);
      await ch.deleteQueue('nm.http');
    });
  });

  it('serves consumers through a non-home node, with redelivery on reject', async () => {
    await withChannel(n2.url, async (ch) => {
      await ch.prefetch(10);
      const got: string[] = [];
      let rejectedOnce = false;
      const done = new Promise<void>((resolve) => {
        void ch.consume('nm.shared', (m) => {
          if (m === null) return;
          const body = m.content.toString();
          if (body === 'c1' && !rejectedOnce) {
            rejectedOnce = true;
            ch.reject(m, true);
            return;
          }
          got.push(`${body}${m.fields.redelivered ? '*' : ''}`);
          ch.ack(m);
          if (got.length === 3) resolve();
        });
      });
      await withChannel(n1.url, async (pub) => {
        for (const b of ['c1', 'c2', 'c3']) pub.sendToQueue('nm.shared', Buffer.from(b));
        await pub.waitForConfirms();
      });
      await done;
      assert.deepEqual(got.sort(), ['c1*', 'c2', 'c3']);
    });
    await withChannel(n1.url, async (ch) => {
      assert.equal((await ch.checkQueue('nm.shared')).messageCount, 0);
    });
  });

  it('a consumer cancelled through a non-home node can still ack what it received', async () => {
    await withChannel(n1.url, async (ch) => {
      await ch.assertQueue('nm.cancel', { durable: true });
      for (let i = 0; i < 5; i++) ch.sendToQueue('nm.cancel', Buffer.from(`k${i}`));
      await ch.waitForConfirms();
    });
    await withChannel(n2.url, async (ch) => {
      await ch.prefetch(5);
      const got: amqp.ConsumeMessage[] = [];
      let tag = '';
      await new Promise<void>((resolve) => {
        void ch
          .consume('nm.cancel', (m) => {
            if (m === null) return;
            got.push(m);
            if (got.length === 5) resolve();
          })
          .then((ok) => (tag = ok.consumerTag));
      });
      await ch.cancel(tag);
      for (const m of got) ch.ack(m);
    });
    await withChannel(n1.url, async (ch) => {
      const ok = await ch.checkQueue('nm.cancel');
      assert.equal(ok.messageCount, 0, 'acks after basic.cancel were lost and the messages came back');
      await ch.deleteQueue('nm.cancel');
    });
  });

  it('x-queue-leader-locator balanced puts a new queue on the node with the fewest queues', async () => {
    await withChannel(n1.url, async (ch) => {
      // n1 homes more queues than n2 from here on, whatever ran before.
      for (let i = 0; i < 3; i++) await ch.assertQueue(`nm.on-n1-${i}`, { durable: false });
      await ch.assertQueue('nm.balanced', { durable: true, arguments: { 'x-queue-leader-locator': 'balanced' } });
      ch.sendToQueue('nm.balanced', Buffer.from('b'));
      await ch.waitForConfirms();
      assert.equal((await ch.checkQueue('nm.balanced')).messageCount, 1);
    });
    const client = new Etcd3({ hosts: etcd.endpoints });
    try {
      const record = JSON.parse((await client.get(`/warren/meta/queue/${encodeURIComponent('/')}/nm.balanced`).string()) ?? '{}') as { home?: string };
      assert.equal(record.home, 'n2');
    } finally {
      client.close();
    }
    await withChannel(n2.url, async (ch) => {
      const m = await ch.get('nm.balanced', { noAck: true });
      assert.ok(m !== false);
      await ch.deleteQueue('nm.balanced');
    });
  });

  it('RPC with direct reply-to across nodes: the reply finds the requester on the other node', async () => {
    await withChannel(n2.url, async (server) => {
      await server.assertQueue('nm.rpc', { durable: false });
      await server.consume('nm.rpc', (m) => {
        if (m === null) return;
        server.sendToQueue(m.properties.replyTo as string, Buffer.from(`re:${m.content.toString()}`), { correlationId: m.properties.correlationId as string });
        server.ack(m);
      });
      await withChannel(n1.url, async (client) => {
        const reply = new Promise<amqp.ConsumeMessage>((resolve) => {
          void client.consume('amq.rabbitmq.reply-to', (m) => m !== null && resolve(m), { noAck: true });
        });
        client.sendToQueue('nm.rpc', Buffer.from('ping'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c-1' });
        const m = await reply;
        assert.equal(m.content.toString(), 're:ping');
        assert.equal(m.properties.correlationId, 'c-1');
      });
    });
  });

  it('a dead home node: its durable queue is unavailable, its transient queue vanishes; back with its data on restart', async () => {
    await withChannel(n1.url, async (ch) => {
      await ch.assertQueue('nm.home1', { durable: true });
      await ch.assertQueue('nm.transient1', { durable: false });
      for (let i = 0; i < 5; i++) ch.sendToQueue('nm.home1', Buffer.from(`p${i}`), { persistent: true });
      await ch.waitForConfirms();
    });
    const conn = await amqp.connect(n2.url);
    conn.on('error', () => undefined);
    try {
      const cch = await conn.createChannel();
      cch.on('error', () => undefined);
      let cancel: () => void = () => undefined;
      const cancelled = new Promise<void>((resolve) => (cancel = resolve));
      await cch.consume('nm.home1', (m) => {
        if (m === null) cancel();
      });
      await n1.kill();
      await cancelled;
      // The lease runs out, n2 sees n1 gone: the transient queue is no more, the durable one is down.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const ch = await conn.createChannel();
        ch.on('error', () => undefined);
        const closed = channelClosed(ch);
        const failed = await ch.checkQueue('nm.transient1').then(() => false, () => true);
        // 404 "home node down" first, then 404 "no queue" once the lease is gone.
        if (failed && /no queue 'nm.transient1'/.test((await closed).message)) break;
        if (!failed) await ch.close();
        assert.ok(Date.now() < deadline, 'transient queue of a dead node still declared');
        await new Promise((r) => setTimeout(r, 200));
      }
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      const closed = channelClosed(ch);
      await assert.rejects(ch.get('nm.home1'));
      const err = await closed;
      assert.match(err.message, /404/);
      assert.match(err.message, /home node 'n1' of durable queue 'nm.home1' in vhost '\/' is down or inaccessible/);
    } finally {
      await conn.close().catch(() => undefined);
    }
    await n1.restart();
    await withChannel(n2.url, async (ch) => {
      const deadline = Date.now() + 15_000;
      let count = -1;
      while (Date.now() < deadline) {
        count = await ch.checkQueue('nm.home1').then((ok) => ok.messageCount, () => -1);
        if (count === 5) break;
        if (count === -1) {
          ch.removeAllListeners('error');
          await ch.close().catch(() => undefined);
          return assert.fail('durable queue vanished while its home was down');
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(count, 5);
      const m = await ch.get('nm.home1', { noAck: true });
      assert.ok(m !== false);
      assert.equal(m.content.toString(), 'p0');
    });
  });
});
