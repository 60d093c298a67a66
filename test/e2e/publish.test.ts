import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Channel, ConsumeMessage } from 'amqplib';
import {
  Collector,
  e2eSuite,
  collectReturns,
  consume,
  drain,
  encodeFrame,
  longstr,
  messageCount,
  methodFrame,
  publishConfirmed,
  publishFrames,
  rejectsWithClose,
  serverClose,
  shortstr,
  table,
  u16,
  withTimeout,
  RawClient,
} from './fixture';

const suite = e2eSuite();

// amqplib has no tx API; its generic rpc takes (class << 16 | method) ids.
const TX_SELECT = [(90 << 16) | 10, (90 << 16) | 11] as const;
const TX_COMMIT = [(90 << 16) | 20, (90 << 16) | 21] as const;
const TX_ROLLBACK = [(90 << 16) | 30, (90 << 16) | 31] as const;
const CONFIRM_SELECT = [(85 << 16) | 10, (85 << 16) | 11] as const;

function rpc(ch: Channel, [method, reply]: readonly [number, number], fields: object = {}): Promise<unknown> {
  return (ch as unknown as { rpc(m: number, f: object, r: number): Promise<unknown> }).rpc(method, fields, reply);
}

describe('mandatory publishing', () => {
  it('returns an unroutable mandatory message with 312 NO_ROUTE before the confirm ack', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const events: string[] = [];
    const returns = collectReturns(ch);
    ch.on('return', () => events.push('return'));
    const acked = new Promise<void>((resolve, reject) =>
      ch.publish(x, 'nowhere', Buffer.from('bounce'), { mandatory: true, messageId: 'm-1' }, (err) => {
        events.push('ack');
        if (err) reject(err);
        else resolve();
      }),
    );
    await withTimeout(acked, 5000, 'confirm');
    const [r] = await returns.waitFor(1);
    assert.deepEqual(r!.fields, { replyCode: 312, replyText: 'NO_ROUTE', exchange: x, routingKey: 'nowhere' });
    assert.equal(r!.content.toString(), 'bounce');
    assert.equal(r!.properties.messageId, 'm-1');
    assert.deepEqual(events, ['return', 'ack']);
  });

  it('does not return a mandatory message that reached a queue', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    const returns = collectReturns(ch);
    await publishConfirmed(ch, '', q, 'kept', { mandatory: true });
    assert.equal(returns.messages.length, 0);
    assert.deepEqual(await drain(ch, q), ['kept']);
  });

  it('silently drops an unroutable message that is not mandatory, and still confirms it', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const ch = await c.confirmChannel();
    const returns = collectReturns(ch);
    await publishConfirmed(ch, x, '', 'dropped');
    assert.equal(returns.messages.length, 0);
  });

  it('returns mandatory messages sent to the default exchange for a missing queue', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const returns = collectReturns(ch);
    const q = c.queueName('missing');
    await publishConfirmed(ch, '', q, 'nobody', { mandatory: true });
    const [r] = await returns.waitFor(1);
    assert.deepEqual(r!.fields, { replyCode: 312, replyText: 'NO_ROUTE', exchange: '', routingKey: q });
  });
});

describe('immediate publishing', () => {
  it('closes the connection with 540 NOT_IMPLEMENTED for immediate=true', async (t) => {
    // amqplib cannot set the immediate bit, so this speaks raw AMQP.
    const q = await (await suite.context(t)).queue();
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(publishFrames(1, { routingKey: q, immediate: true, body: Buffer.from('now') }));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.classId, close.methodId, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 10, 50, 540, 'NOT_IMPLEMENTED - immediate=true', 60, 40],
    );
  });
});

describe('publisher confirms', () => {
  it('acks every publish with increasing delivery tags, possibly batching with multiple', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    const acks: Array<{ deliveryTag: number; multiple: boolean }> = [];
    const nacks: unknown[] = [];
    ch.on('ack', (f: { deliveryTag: number; multiple: boolean }) => acks.push(f));
    ch.on('nack', (f: unknown) => nacks.push(f));
    const N = 200;
    for (let i = 0; i < N; i++) ch.sendToQueue(q, Buffer.from(`c${i}`));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    assert.equal(nacks.length, 0);
    const tags = acks.map((a) => a.deliveryTag);
    assert.deepEqual([...tags].sort((a, b) => a - b), tags, 'tags are increasing');
    assert.equal(tags.at(-1), N);
    // Every tag 1..N is covered exactly once.
    const covered = new Set<number>();
    let prev = 0;
    for (const a of acks) {
      const from = a.multiple ? prev + 1 : a.deliveryTag;
      for (let tag = from; tag <= a.deliveryTag; tag++) {
        assert.ok(!covered.has(tag), `tag ${tag} confirmed twice`);
        covered.add(tag);
      }
      prev = a.deliveryTag;
    }
    assert.equal(covered.size, N);
    assert.equal(await messageCount(ch, q), N);
  });

  it('nacks a publish rejected by a full queue with x-overflow reject-publish', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    const ch = await c.confirmChannel();
    const outcome = (body: string): Promise<string> =>
      new Promise((resolve) => ch.sendToQueue(q, Buffer.from(body), {}, (err) => resolve(err ? 'nack' : 'ack')));
    const results = await withTimeout(Promise.all([outcome('first'), outcome('second')]), 5000, 'confirms');
    assert.deepEqual(results, ['ack', 'nack']);
    assert.deepEqual(await drain(ch, q), ['first']);
  });

  it('refuses confirm.select on a transactional channel with 406', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    const err = await rejectsWithClose(rpc(ch, CONFIRM_SELECT, { nowait: false }));
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - cannot switch from tx to confirm mode');
  });

  it('refuses tx.select on a confirm channel with 406', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const err = await rejectsWithClose(rpc(ch, TX_SELECT));
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - cannot switch from confirm to tx mode');
  });

  it('accepts confirm.select twice', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    await rpc(ch, CONFIRM_SELECT, { nowait: false });
    await publishConfirmed(ch, '', c.queueName('missing'), 'x');
  });
});

describe('transactions', () => {
  it('holds published messages until tx.commit and discards them on tx.rollback', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    ch.sendToQueue(q, Buffer.from('rolled-back'));
    assert.equal(await messageCount(ch, q), 0);
    await rpc(ch, TX_ROLLBACK);
    assert.equal(await messageCount(ch, q), 0);
    ch.sendToQueue(q, Buffer.from('committed-1'));
    ch.sendToQueue(q, Buffer.from('committed-2'));
    assert.equal(await messageCount(ch, q), 0);
    await rpc(ch, TX_COMMIT);
    assert.deepEqual(await drain(ch, q), ['committed-1', 'committed-2']);
  });

  it('discards uncommitted publishes when the channel closes', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    ch.sendToQueue(q, Buffer.from('never'));
    await ch.close();
    const check = await c.channel();
    assert.equal(await messageCount(check, q), 0);
  });

  it('applies acks at commit; a rolled-back ack leaves the message unacked (not requeued)', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'a');
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    const m = await ch.get(q);
    assert.ok(m);
    ch.ack(m);
    await rpc(ch, TX_ROLLBACK);
    // Still unacked: not ready in the queue...
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
    // ...and it can be acked again, for real this time.
    ch.ack(m);
    await rpc(ch, TX_COMMIT);
    await ch.close();
    assert.equal(await messageCount(pub, q), 0);
  });

  it('requeues a message whose ack was rolled back when the channel closes', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'a');
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    const m = await ch.get(q);
    assert.ok(m);
    ch.ack(m);
    await rpc(ch, TX_ROLLBACK);
    await ch.close();
    assert.equal(await messageCount(pub, q), 1);
  });

  it('applies a requeueing nack only at commit', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const pub = await c.confirmChannel();
    await publishConfirmed(pub, '', q, 'a');
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    const m = await ch.get(q);
    assert.ok(m);
    ch.nack(m, false, true);
    assert.equal(await messageCount(ch, q), 0);
    await rpc(ch, TX_COMMIT);
    assert.equal(await messageCount(ch, q), 1);
  });

  it('sends basic.return for mandatory messages at commit time, before commit-ok', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    const events: string[] = [];
    ch.on('return', () => events.push('return'));
    await rpc(ch, TX_SELECT);
    ch.publish('', c.queueName('missing'), Buffer.from('x'), { mandatory: true });
    await ch.checkQueue(q);
    events.push('before-commit');
    await rpc(ch, TX_COMMIT);
    events.push('commit-ok');
    assert.deepEqual(events, ['before-commit', 'return', 'commit-ok']);
  });

  it('checks delivery tags immediately, not at commit (406 unknown delivery tag)', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    ch.ack({ fields: { deliveryTag: 5 } } as unknown as ConsumeMessage);
    const err = await serverClose(ch);
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - unknown delivery tag 5');
  });

  it('refuses tx.commit and tx.rollback on a non-transactional channel with 406', async (t) => {
    const c = await suite.context(t);
    for (const [name, op] of [
      ['tx.commit', TX_COMMIT],
      ['tx.rollback', TX_ROLLBACK],
    ] as const) {
      const ch = await c.channel();
      const err = await rejectsWithClose(rpc(ch, op));
      assert.equal(err.code, 406, name);
      assert.equal(err.text, 'PRECONDITION_FAILED - channel is not transactional', name);
      assert.deepEqual([err.classId, err.methodId], [90, op[0] & 0xffff]);
    }
  });

  it('accepts tx.select twice', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await rpc(ch, TX_SELECT);
    await rpc(ch, TX_SELECT);
    await rpc(ch, TX_COMMIT);
  });
});

describe('message bodies', () => {
  for (const [label, size] of [
    ['empty', 0],
    ['exactly one frame (frame_max - 8)', 131072 - 8],
    ['one byte over a frame', 131072 - 7],
    ['1 MB', 1024 * 1024],
    ['5 MB', 5 * 1024 * 1024],
  ] as const) {
    it(`round-trips a ${label} body byte-exactly`, async (t) => {
      const c = await suite.context(t);
      const q = await c.queue();
      const ch = await c.confirmChannel();
      const body = randomBytes(size);
      await publishConfirmed(ch, '', q, body);
      const consumer = await consume(ch, q, { noAck: true });
      const [m] = await consumer.waitFor(1, 15000);
      assert.equal(m!.content.length, size);
      assert.ok(m!.content.equals(body));
    });
  }

  it('assembles a body split into small frames by a client with a small frame_max', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const raw = await RawClient.open(suite.broker, { frameMax: 4096 });
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    const body = randomBytes(20_000);
    raw.write(publishFrames(1, { routingKey: q, body, frameMax: 4096 }));
    raw.write(methodFrame(1, 85, 10, Buffer.from([0]))); // confirm.select after the publish, as a barrier
    await raw.expectMethod(85, 11);
    const ch = await c.channel();
    const m = await ch.get(q, { noAck: true });
    assert.ok(m);
    assert.ok(m.content.equals(body));
  });
});

describe('message properties', () => {
  it('round-trips every basic property and header value through amqplib', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    const headers = {
      str: 'héllo',
      byte: 5,
      short: 1000,
      int: 100000,
      long: 2 ** 40,
      negative: -7,
      double: 3.25,
      float: { '!': 'float', value: 1.5 },
      bool: true,
      falsy: false,
      void: null,
      bytes: Buffer.from([0, 1, 255]),
      array: [1, 'two', true, [3]],
      table: { nested: { deeper: 'yes' }, n: 1 },
      timestamp: { '!': 'timestamp', value: 1700000000 },
      decimal: { '!': 'decimal', value: { places: 2, digits: 12345 } },
    };
    await publishConfirmed(ch, '', q, 'props', {
      contentType: 'application/json',
      contentEncoding: 'gzip',
      headers,
      deliveryMode: 2,
      priority: 7,
      correlationId: 'corr-1',
      replyTo: 'reply.queue',
      expiration: '60000',
      messageId: 'msg-1',
      timestamp: 1700000001,
      type: 'my.type',
      userId: 'guest',
      appId: 'e2e',
    });
    const consumer = await consume(ch, q, { noAck: true });
    const [m] = await consumer.waitFor(1);
    assert.deepEqual(m!.properties, {
      contentType: 'application/json',
      contentEncoding: 'gzip',
      headers: {
        ...headers,
        float: 1.5, // amqplib decodes floats to plain numbers
      },
      deliveryMode: 2,
      priority: 7,
      correlationId: 'corr-1',
      replyTo: 'reply.queue',
      expiration: '60000',
      messageId: 'msg-1',
      timestamp: 1700000001,
      type: 'my.type',
      userId: 'guest',
      appId: 'e2e',
      clusterId: undefined,
    });
  });

  it('passes the content header through byte-for-byte, with all 14 properties and every field-table type', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);

    const field = (k: string, tag: string, v: Buffer): Buffer => Buffer.concat([shortstr(k), Buffer.from(tag, 'latin1'), v]);
    const i64 = (n: bigint): Buffer => {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(n);
      return b;
    };
    const entries = Buffer.concat([
      field('bool', 't', Buffer.from([1])),
      field('i8', 'b', Buffer.from([0xff])),
      field('u8', 'B', Buffer.from([0xfe])),
      field('i16', 's', Buffer.from([0x80, 0x00])),
      field('u16', 'u', Buffer.from([0xff, 0xff])),
      field('i32', 'I', Buffer.from([0x80, 0, 0, 1])),
      field('u32', 'i', Buffer.from([0xff, 0xff, 0xff, 0xff])),
      field('i64', 'l', i64(-(2n ** 40n))),
      field('f32', 'f', Buffer.from([0x3f, 0xc0, 0, 0])),
      field('f64', 'd', Buffer.from([0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18])),
      field('dec', 'D', Buffer.from([2, 0, 0, 0x30, 0x39])),
      field('str', 'S', longstr('héllo')),
      field('arr', 'A', longstr(Buffer.concat([Buffer.from('b'), Buffer.from([5]), Buffer.from('S'), longstr('x')]))),
      field('ts', 'T', i64(1700000000n)),
      field('tbl', 'F', table(field('n', 'b', Buffer.from([1])))),
      field('void', 'V', Buffer.alloc(0)),
      field('bytes', 'x', longstr(Buffer.from([0, 1, 2]))),
    ]);
    const props = Buffer.concat([
      shortstr('application/json'),
      shortstr('gzip'),
      table(entries),
      Buffer.from([2]), // delivery-mode
      Buffer.from([7]), // priority
      shortstr('corr-1'),
      shortstr('reply.q'),
      shortstr('60000'),
      shortstr('msg-1'),
      i64(1700000001n),
      shortstr('my.type'),
      shortstr('guest'),
      shortstr('app'),
      shortstr('cluster'),
    ]);
    const body = Buffer.from('payload');
    const size = Buffer.alloc(8);
    size.writeBigUInt64BE(BigInt(body.length));
    const header = Buffer.concat([u16(60), u16(0), size, u16(0xfffc), props]);

    raw.write(methodFrame(1, 60, 40, u16(0), shortstr(''), shortstr(q), Buffer.from([0])));
    raw.write(encodeFrame(2, 1, header));
    raw.write(encodeFrame(3, 1, body));
    raw.write(methodFrame(1, 60, 70, u16(0), shortstr(q), Buffer.from([1]))); // basic.get no-ack
    const getOk = await raw.expectMethod(60, 71);
    assert.equal(getOk.channel, 1);
    const h = await raw.readFrame();
    const b = await raw.readFrame();
    assert.ok(h && b);
    assert.deepEqual([h.type, h.channel], [2, 1]);
    assert.equal(h.payload.toString('hex'), header.toString('hex'));
    assert.deepEqual([b.type, b.channel, b.payload.toString()], [3, 1, 'payload']);
  });

  it('closes the channel with 406 when user-id does not match the authenticated user', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    ch.sendToQueue(q, Buffer.from('x'), { userId: 'mallory' });
    const err = await serverClose(ch);
    assert.equal(err.code, 406);
    assert.equal(err.text, "PRECONDITION_FAILED - user_id property set to 'mallory' but authenticated user was 'guest'");
    assert.deepEqual([err.classId, err.methodId], [60, 40]);
  });

  for (const [expiration, text] of [
    ['abc', "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"],
    ['-5', "PRECONDITION_FAILED - invalid expiration '-5': {value_negative,-5}"],
  ] as const) {
    it(`closes the channel with 406 for expiration '${expiration}'`, async (t) => {
      const c = await suite.context(t);
      const q = await c.queue();
      const ch = await c.channel();
      ch.sendToQueue(q, Buffer.from('x'), { expiration });
      const err = await serverClose(ch);
      assert.equal(err.code, 406);
      assert.equal(err.text, text);
    });
  }

  it('expires a message with expiration 0 at once when no consumer is waiting', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'gone', { expiration: '0' });
    await publishConfirmed(ch, '', q, 'kept');
    assert.deepEqual(await drain(ch, q), ['kept']);
  });

  it('delivers messages published on one channel in publish order', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    const sink = new Collector();
    await consume(await c.channel(), q, { noAck: true }, sink);
    for (let i = 0; i < 500; i++) ch.sendToQueue(q, Buffer.from(String(i)));
    const ms = await sink.waitFor(500);
    assert.deepEqual(
      ms.map((m) => Number(m.content.toString())),
      Array.from({ length: 500 }, (_, i) => i),
    );
  });
});
