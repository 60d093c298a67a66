import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import * as amqplib from 'amqplib';
import { startBroker, type BrokerHandle } from '../../src/broker';
import { LinkChannel, LinkClosedError, LinkConnection, type LinkDelivery, type LinkOptions } from '../../src/cluster/link-client';
import { FrameReader } from '../../src/protocol/frame-reader';
import { decodeProperties, encodeProperties } from '../../src/protocol/properties';
import { fromPlain } from '../../src/protocol/field-table';
import { M, Method, MethodOf, decodeMethod, encodeMethodFrame } from '../../src/protocol/spec';

function opts(b: { host: string; port: number }, extra: Partial<LinkOptions> = {}): LinkOptions {
  return { host: b.host, port: b.port, user: 'guest', password: 'guest', vhost: '/', connectionName: 'link-test', ...extra };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function declare(ch: LinkChannel, queue: string, passive = false): Promise<Method> {
  return ch.rpc({ key: M.QueueDeclare, queue, passive, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: [] });
}

const PROPS = encodeProperties({
  contentType: 'application/json',
  headers: fromPlain({ 'x-origin': 'node-a', n: 42, nested: { ok: true } }),
  deliveryMode: 2,
  messageId: 'm-1',
  timestamp: 1_700_000_000,
});

describe('cluster link client', () => {
  let b: BrokerHandle;
  let conn: LinkConnection;

  before(async () => {
    b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent' });
    conn = await LinkConnection.connect(opts(b));
  });

  after(async () => {
    await conn.close();
    await b.close();
  });

  it('negotiates with the server and reuses freed channel ids', async () => {
    assert.equal(conn.frameMax, 131072);
    assert.ok(conn.channelMax > 0);
    const a = await conn.openChannel();
    const c = await conn.openChannel();
    assert.notEqual(a.id, c.id);
    const freed = a.id;
    await a.close();
    assert.equal(a.closed, true);
    const d = await conn.openChannel();
    assert.equal(d.id, freed);
    await Promise.all([c.close(), d.close()]);
  });

  it('declares via rpc, publishes with confirms and gets messages back byte-exact', async () => {
    const ch = await conn.openChannel();
    const ok = (await declare(ch, 'link-get')) as MethodOf<'QueueDeclareOk'>;
    assert.equal(ok.key, M.QueueDeclareOk);
    assert.equal(ok.queue, 'link-get');
    await ch.confirmSelect();
    const small = Buffer.from('{"hello":"world"}');
    const large = randomBytes(300_000); // several frames, written as slices
    const mid = randomBytes(100_000); // one frame, bigger than the copy threshold
    await Promise.all([
      ch.publish('', 'link-get', false, PROPS, small),
      ch.publish('', 'link-get', false, PROPS, large),
      ch.publish('', 'link-get', false, PROPS, mid),
      ch.publish('', 'link-get', false, Buffer.from([0, 0]), Buffer.alloc(0)),
    ]);
    const g1 = (await ch.get('link-get', false))!;
    assert.deepEqual(g1.properties, PROPS);
    assert.deepEqual(g1.body, small);
    assert.equal(g1.messageCount, 3);
    assert.equal(g1.routingKey, 'link-get');
    assert.equal(g1.exchange, '');
    assert.equal(g1.redelivered, false);
    const g2 = (await ch.get('link-get', true))!;
    assert.ok(g2.body.equals(large));
    assert.deepEqual(g2.properties, PROPS);
    const g3 = (await ch.get('link-get', true))!;
    assert.ok(g3.body.equals(mid));
    const g4 = (await ch.get('link-get', true))!;
    assert.equal(g4.body.length, 0);
    assert.deepEqual(g4.properties, Buffer.from([0, 0]));
    assert.equal(await ch.get('link-get', true), null);
    ch.ack(g1.deliveryTag, false);
    await ch.close();
  });

  it('settles many confirms, including multiple acks', async () => {
    const ch = await conn.openChannel();
    await declare(ch, 'link-many');
    await ch.confirmSelect();
    const all: Promise<void>[] = [];
    for (let i = 0; i < 2000; i++) all.push(ch.publish('', 'link-many', false, PROPS, Buffer.from(String(i))));
    await within(Promise.all(all), 10_000, 'confirms');
    const ok = (await declare(ch, 'link-many', true)) as MethodOf<'QueueDeclareOk'>;
    assert.equal(ok.messageCount, 2000);
    await ch.close();
  });

  it('consumes, acks and cancels', async () => {
    const ch = await conn.openChannel();
    await declare(ch, 'link-consume');
    await ch.qos(10, false);
    const got: LinkDelivery[] = [];
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    const tag = await ch.consume('link-consume', { noAck: false, exclusive: false }, (d) => {
      got.push(d);
      ch.ack(d.deliveryTag, false);
      if (got.length === 5) done();
    }, () => assert.fail('unexpected server cancel'));
    assert.match(tag, /^amq\.ctag-/);
    for (let i = 0; i < 5; i++) await ch.publish('', 'link-consume', false, PROPS, Buffer.from(`m${i}`));
    await within(all, 5000, 'deliveries');
    assert.deepEqual(got.map((d) => d.body.toString()), ['m0', 'm1', 'm2', 'm3', 'm4']);
    assert.deepEqual(got[0]!.properties, PROPS);
    await ch.cancel(tag);
    await ch.publish('', 'link-consume', false, PROPS, Buffer.from('after'));
    const left = (await declare(ch, 'link-consume', true)) as MethodOf<'QueueDeclareOk'>;
    assert.equal(left.messageCount, 1);
    assert.equal(left.consumerCount, 0);
    await ch.close();
  });

  it('delivers messages that arrive right behind consume-ok, and survives a throwing callback', async () => {
    const ch = await conn.openChannel();
    await declare(ch, 'link-backlog');
    await ch.confirmSelect();
    await Promise.all([1, 2, 3].map((i) => ch.publish('', 'link-backlog', false, PROPS, Buffer.from(`b${i}`))));
    const got: string[] = [];
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    const warned = new Promise<void>((r) => process.once('warning', () => r()));
    await ch.consume('link-backlog', { noAck: true, exclusive: true }, (d) => {
      got.push(d.body.toString());
      if (got.length === 3) done();
      if (got.length === 1) throw new Error('consumer bug');
    }, () => {});
    await within(all, 5000, 'backlog');
    await within(warned, 2000, 'warning');
    assert.deepEqual(got, ['b1', 'b2', 'b3']);
    await declare(ch, 'link-backlog', true);
    await ch.close();
  });

  it('hears a server-side basic.cancel when the queue is deleted', async () => {
    const ch = await conn.openChannel();
    await declare(ch, 'link-cancelled');
    let cancelled!: () => void;
    const p = new Promise<void>((r) => (cancelled = r));
    await ch.consume('link-cancelled', { consumerTag: 'mine', noAck: true, exclusive: false }, () => {}, () => cancelled());
    const other = await conn.openChannel();
    await other.rpc({ key: M.QueueDelete, queue: 'link-cancelled', ifUnused: false, ifEmpty: false, noWait: false });
    await within(p, 5000, 'server cancel');
    await Promise.all([ch.close(), other.close()]);
  });

  it('redelivers after nack/reject with requeue, and after recover', async () => {
    const ch = await conn.openChannel();
    await declare(ch, 'link-requeue');
    ch.publish('', 'link-requeue', false, PROPS, Buffer.from('x'));
    const a = (await ch.get('link-requeue', false))!;
    assert.equal(a.redelivered, false);
    ch.nack(a.deliveryTag, false, true);
    const b2 = (await ch.get('link-requeue', false))!;
    assert.equal(b2.redelivered, true);
    ch.reject(b2.deliveryTag, true);
    const c = (await ch.get('link-requeue', false))!;
    assert.equal(c.redelivered, true);
    await ch.recover();
    const d = (await ch.get('link-requeue', false))!;
    assert.equal(d.redelivered, true);
    assert.deepEqual(d.properties, PROPS);
    ch.reject(d.deliveryTag, false);
    assert.equal(await ch.get('link-requeue', true), null);
    await ch.close();
  });

  it('rejects a failing rpc with LinkClosedError and keeps the connection usable', async () => {
    const ch = await conn.openChannel();
    let closedWith: Error | null = null;
    ch.onClose = (e) => (closedWith = e);
    const queued = ch.qos(1, false);
    const failing = declare(ch, 'link-missing', true);
    const behind = declare(ch, 'link-never');
    await queued;
    const err = await failing.then(() => null, (e: unknown) => e);
    assert.ok(err instanceof LinkClosedError);
    assert.equal(err.code, 404);
    assert.equal(err.scope, 'channel');
    assert.equal(err.classId, 50);
    assert.equal(err.methodId, 10);
    await assert.rejects(behind, LinkClosedError);
    assert.equal(closedWith, err);
    assert.equal(ch.closed, true);
    await assert.rejects(ch.get('link-never', true), LinkClosedError);
    await ch.close(); // already closed: no-op
    assert.equal(conn.closed, false);
    const again = await conn.openChannel();
    await declare(again, 'link-usable');
    await again.close();
  });

  it('rejects confirmed publishes to a missing exchange', async () => {
    const ch = await conn.openChannel();
    await ch.confirmSelect();
    const err = await ch.publish('no-such-exchange', 'k', false, PROPS, Buffer.from('x')).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof LinkClosedError);
    assert.equal(err.code, 404);
    await assert.rejects(ch.publish('', 'x', false, PROPS, Buffer.from('x')), LinkClosedError);
  });

  it('hands back mandatory returns and still confirms the publish', async () => {
    const ch = await conn.openChannel();
    await ch.confirmSelect();
    const returned = new Promise<{ replyCode: number; routingKey: string; properties: Buffer; body: Buffer }>((r) => (ch.onReturn = r));
    await ch.publish('', 'nowhere-at-all', true, PROPS, Buffer.from('lost'));
    const r = await within(returned, 2000, 'return');
    assert.equal(r.replyCode, 312);
    assert.equal(r.routingKey, 'nowhere-at-all');
    assert.deepEqual(r.properties, PROPS);
    assert.equal(r.body.toString(), 'lost');
    await ch.close();
  });

  it('refuses an rpc that has no reply', async () => {
    const ch = await conn.openChannel();
    await assert.rejects(ch.rpc({ key: M.BasicAck, deliveryTag: 1, multiple: false }), TypeError);
    await assert.rejects(ch.rpc({ key: M.QueuePurge, queue: 'q', noWait: true }), TypeError);
    await ch.close();
  });

  it('interoperates with amqplib in both directions', async () => {
    const ac = await amqplib.connect(b.url);
    try {
      const ach = await ac.createChannel();
      await ach.assertQueue('link-amqplib');
      const ch = await conn.openChannel();
      await ch.confirmSelect();
      const body = randomBytes(200_000);
      await ch.publish('', 'link-amqplib', false, PROPS, body);
      const m = await ach.get('link-amqplib', { noAck: true });
      assert.ok(m !== false);
      assert.ok(m.content.equals(body));
      const want = decodeProperties(PROPS, 0, PROPS.length);
      assert.equal(m.properties.contentType, want.contentType);
      assert.equal(m.properties.deliveryMode, 2);
      assert.equal(m.properties.messageId, 'm-1');
      assert.equal(m.properties.timestamp, 1_700_000_000);
      assert.deepEqual(m.properties.headers, { 'x-origin': 'node-a', n: 42, nested: { ok: true } });

      ach.sendToQueue('link-amqplib', Buffer.from('from amqplib'), { contentType: 'text/plain', correlationId: 'c-7', headers: { k: 'v' }, priority: 3 });
      let got: LinkDelivery | null = null;
      for (let i = 0; i < 50 && got === null; i++) {
        got = await ch.get('link-amqplib', true);
        if (got === null) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(got !== null);
      assert.equal(got.body.toString(), 'from amqplib');
      const p = decodeProperties(got.properties, 0, got.properties.length);
      assert.equal(p.contentType, 'text/plain');
      assert.equal(p.correlationId, 'c-7');
      assert.equal(p.priority, 3);
      await ch.close();
    } finally {
      await ac.close();
    }
  });
});

describe('cluster link lifecycle', () => {
  it('splits bodies by a small frame_max and reports server-side close', async () => {
    const b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', frameMax: 4096 });
    const conn = await LinkConnection.connect(opts(b));
    assert.equal(conn.frameMax, 4096);
    const ch = await conn.openChannel();
    await declare(ch, 'small-frames');
    await ch.confirmSelect();
    const body = randomBytes(10_000);
    await ch.publish('', 'small-frames', false, PROPS, body);
    const g = (await ch.get('small-frames', true))!;
    assert.ok(g.body.equals(body));
    assert.deepEqual(g.properties, PROPS);

    const connClosed = new Promise<Error | null>((r) => (conn.onClose = r));
    const chClosed = new Promise<Error>((r) => (ch.onClose = r));
    const pendingGet = ch.get('nothing-here', true).then(() => null, (e: unknown) => e);
    await within(b.close(), 5000, 'broker close');
    const err = await within(connClosed, 2000, 'onClose');
    assert.ok(err instanceof LinkClosedError);
    assert.equal(err.code, 320);
    assert.equal(err.scope, 'connection');
    assert.equal(conn.closed, true);
    assert.equal(await chClosed, err);
    const pg = await pendingGet;
    assert.ok(pg === null || pg instanceof LinkClosedError);
    await assert.rejects(conn.openChannel());
    await conn.close(); // no-op once closed
  });

  it('refuses a wrong password with connection.close 403', async () => {
    const b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent' });
    try {
      const err = await LinkConnection.connect(opts(b, { password: 'wrong' })).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof LinkClosedError);
      assert.equal(err.code, 403);
    } finally {
      await b.close();
    }
  });

  it('fires onClose(null) after a client close and fails later calls', async () => {
    const b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent' });
    try {
      const conn = await LinkConnection.connect(opts(b));
      const ch = await conn.openChannel();
      let chErr: Error | null = null;
      ch.onClose = (e) => (chErr = e);
      const seen: Array<Error | null> = [];
      conn.onClose = (e) => seen.push(e);
      await conn.close();
      assert.deepEqual(seen, [null]);
      assert.ok(chErr !== null);
      await assert.rejects(ch.qos(1, false));
      conn.destroy();
      assert.equal(seen.length, 1);
    } finally {
      await b.close();
    }
  });

  it('times out a handshake the peer never answers', async () => {
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      await assert.rejects(LinkConnection.connect(opts({ host: '127.0.0.1', port }, { connectTimeoutMs: 300 })), /within 300 ms/);
      assert.ok(Date.now() - started < 2000);
    } finally {
      silent.close();
    }
  });

  it('rejects a refused TCP connection', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    await assert.rejects(LinkConnection.connect(opts({ host: '127.0.0.1', port })));
  });

  it('declares a silent peer dead after two missed heartbeats', async () => {
    const fake = await fakePeer(() => {});
    try {
      const conn = await LinkConnection.connect(opts(fake, { heartbeatSeconds: 1 }));
      const started = Date.now();
      const err = await within(new Promise<Error | null>((r) => (conn.onClose = r)), 5000, 'heartbeat timeout');
      assert.match(String(err), /missed heartbeats/);
      assert.ok(Date.now() - started >= 1500);
    } finally {
      fake.close();
    }
  });

  it('sends heartbeats to an idle peer', async () => {
    let beats = 0;
    const fake = await fakePeer(() => {}, () => beats++);
    try {
      const conn = await LinkConnection.connect(opts(fake, { heartbeatSeconds: 1 }));
      await new Promise((r) => setTimeout(r, 1300));
      assert.ok(beats >= 1, `beats ${beats}`);
      conn.destroy();
    } finally {
      fake.close();
    }
  });

  it('survives a peer that sends garbage', async () => {
    const fake = await fakePeer((m, reply, sock) => {
      if (m.key === M.ChannelOpen) sock.write(Buffer.from([1, 0, 1, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff, 0xce]));
    });
    try {
      const conn = await LinkConnection.connect(opts(fake));
      const closed = new Promise<Error | null>((r) => (conn.onClose = r));
      await assert.rejects(conn.openChannel());
      assert.ok((await closed) instanceof Error);
      assert.equal(conn.closed, true);
    } finally {
      fake.close();
    }
  });
});

/** A scripted AMQP server: completes the handshake, then hands every other method to `onMethod`. */
async function fakePeer(
  onMethod: (m: Method, reply: (ch: number, m: Method) => void, sock: net.Socket) => void,
  onHeartbeat: () => void = () => {},
): Promise<{ host: string; port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    let headerSeen = false;
    const reply = (ch: number, m: Method): void => void sock.write(encodeMethodFrame(ch, m));
    const reader = new FrameReader({
      onFrame(type, ch, buf, start, end) {
        if (type === 8) onHeartbeat();
        if (type !== 1) return;
        const m = decodeMethod(buf, start, end);
        if (m.key === M.ConnectionStartOk) reply(0, { key: M.ConnectionTune, channelMax: 16, frameMax: 4096, heartbeat: 0 });
        else if (m.key === M.ConnectionOpen) reply(0, { key: M.ConnectionOpenOk });
        else onMethod(m, reply, sock);
        void ch;
      },
    });
    sock.on('data', (d: Buffer) => {
      if (!headerSeen) {
        headerSeen = true;
        d = d.subarray(8);
        reply(0, { key: M.ConnectionStart, versionMajor: 0, versionMinor: 9, serverProperties: [], mechanisms: Buffer.from('PLAIN'), locales: Buffer.from('en_US') });
      }
      reader.push(d);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    close: () => {
      for (const s of sockets) s.destroy();
      srv.close();
    },
  };
}
