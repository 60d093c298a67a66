import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  e2eSuite,
  connect,
  drain,
  encodeFrame,
  methodFrame,
  openChannel,
  rejectsWithClose,
  serverClose,
  serverProperties,
  shortstr,
  tuned,
  u16,
  EMPTY_TABLE,
  PROTOCOL_HEADER,
  RawClient,
} from './fixture';

const suite = e2eSuite();

describe('connection lifecycle', () => {
  it('opens and closes a connection and a channel cleanly', async () => {
    const conn = await connect(suite.broker.url);
    const ch = await openChannel(conn);
    await ch.close();
    await conn.close();
  });

  it('advertises the RabbitMQ server properties and capabilities in connection.start', async (t) => {
    const c = await suite.context(t);
    const props = serverProperties(await c.connection());
    for (const key of ['product', 'version', 'platform', 'copyright', 'information', 'cluster_name']) {
      assert.equal(typeof props[key], 'string', `server property ${key}`);
      assert.ok((props[key] as string).length > 0, `server property ${key} is non-empty`);
    }
    assert.deepEqual(props.capabilities, {
      publisher_confirms: true,
      exchange_exchange_bindings: true,
      'basic.nack': true,
      consumer_cancel_notify: true,
      'connection.blocked': true,
      consumer_priorities: true,
      authentication_failure_close: true,
      per_consumer_qos: true,
      direct_reply_to: true,
    });
  });

  it('offers AMQP 0-9 with PLAIN and AMQPLAIN mechanisms and the en_US locale', async (t) => {
    const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
    t.after(() => raw.destroy());
    await raw.greet();
    assert.deepEqual(raw.start, { versionMajor: 0, versionMinor: 9, mechanisms: 'AMQPLAIN PLAIN', locales: 'en_US' });
  });

  it('closes the socket after the server acknowledges connection.close', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(methodFrame(0, 10, 50, u16(200), shortstr('bye'), u16(0), u16(0)));
    const ok = await raw.readMethod();
    assert.deepEqual([ok.channel, ok.classId, ok.methodId], [0, 10, 51]);
  });
});

describe('authentication and vhost access', () => {
  it('refuses a wrong password with 403 ACCESS_REFUSED', async () => {
    const err = await rejectsWithClose(connect(suite.broker.url, { password: 'definitely-wrong' }));
    assert.equal(err.code, 403);
    assert.equal(
      err.text,
      'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.',
    );
  });

  it('refuses an unknown user with the same 403 text', async () => {
    const err = await rejectsWithClose(connect(suite.broker.url, { user: 'no-such-user', password: 'x' }));
    assert.equal(err.code, 403);
    assert.equal(
      err.text,
      'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.',
    );
  });

  it('sends connection.close 403 on a failed login to a client with the authentication_failure_close capability', async (t) => {
    const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
    t.after(() => raw.destroy());
    await raw.greet();
    // RabbitMQ only sends the close when the client advertises authentication_failure_close.
    raw.sendStartOk({ password: 'wrong', capabilities: { authentication_failure_close: true } });
    const close = await raw.expectClose();
    assert.equal(close.channel, 0);
    assert.equal(close.replyCode, 403);
    assert.equal(
      close.replyText,
      'ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.',
    );
    raw.sendCloseOk();
    await raw.readUntilEnd();
  });

  it('rejects connection.open to an unknown vhost with 530 NOT_ALLOWED', async (t) => {
    const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
    t.after(() => raw.destroy());
    await raw.greet();
    await raw.login();
    raw.sendOpen('no-such-vhost');
    const close = await raw.expectClose();
    assert.deepEqual(
      { channel: close.channel, code: close.replyCode, text: close.replyText, cls: close.failingClassId, m: close.failingMethodId },
      { channel: 0, code: 530, text: "NOT_ALLOWED - vhost no-such-vhost not found", cls: 10, m: 40 },
    );
  });

  it('makes amqplib fail to connect to an unknown vhost', async () => {
    await assert.rejects(connect(suite.broker.url, { vhost: 'no-such-vhost' }), /ConnectionClose/);
  });
});

describe('channels', () => {
  it('isolates channels: a channel error leaves sibling channels working', async (t) => {
    const c = await suite.context(t);
    const conn = await c.connection();
    const channels = await Promise.all(Array.from({ length: 20 }, () => openChannel(conn)));
    const victim = channels[7]!;
    const missing = c.queueName('missing');
    const err = await rejectsWithClose(victim.checkQueue(missing));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${missing}' in vhost '/'`);

    const q = await c.queue();
    for (const [i, ch] of channels.entries()) {
      if (ch === victim) continue;
      ch.sendToQueue(q, Buffer.from(`m${i}`));
    }
    // A queue.declare on the same channel is answered after that channel's publish was enqueued.
    for (const ch of channels) if (ch !== victim) await ch.checkQueue(q);
    const survivor = channels[0]!;
    const bodies = (await drain(survivor, q)).sort();
    assert.equal(bodies.length, 19);
    assert.ok(!bodies.includes('m7'));
    await assert.rejects(async () => victim.checkQueue(q), /Channel closed/);
  });

  it('refuses to open more channels than the negotiated channel_max with 530', async (t) => {
    const raw = await RawClient.open(suite.broker, { channelMax: 2 });
    t.after(() => raw.destroy());
    await raw.openChannel(5);
    await raw.openChannel(9);
    raw.write(methodFrame(1, 20, 10, shortstr('')));
    const close = await raw.expectClose();
    assert.equal(close.channel, 0);
    assert.equal(close.replyCode, 530);
    assert.equal(close.replyText, 'NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)');
  });

  it('closes the connection with 504 when channel.open is sent twice on the same channel', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 20, 10, shortstr('')));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10],
    );
  });

  it('closes the connection with 504 when a method arrives on a channel that was never opened', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(methodFrame(5, 50, 10, u16(0), shortstr('q'), Buffer.from([0]), EMPTY_TABLE));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 504, "CHANNEL_ERROR - expected 'channel.open'", 50, 10],
    );
  });

  it('closes the connection with 504 when a channel-class method is sent on channel 0', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(methodFrame(0, 50, 10, u16(0), shortstr('q'), Buffer.from([0]), EMPTY_TABLE));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 504, 'CHANNEL_ERROR - unexpected method in connection state running', 50, 10],
    );
  });

  it('reports a channel error through amqplib as a channel close with code and text', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const name = c.queueName();
    ch.checkQueue(name).catch(() => {});
    const err = await serverClose(ch);
    assert.equal(err.code, 404);
    assert.equal(err.classId, 50);
    assert.equal(err.methodId, 10);
    assert.equal(err.text, `NOT_FOUND - no queue '${name}' in vhost '/'`);
  });
});

describe('tuning', () => {
  it("proposes RabbitMQ's defaults in connection.tune: channel_max 2047, frame_max 131072, heartbeat 60", async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    assert.deepEqual(raw.tune, { channelMax: 2047, frameMax: 131072, heartbeat: 60 });
  });

  it('accepts smaller client values for frame_max, channel_max and heartbeat', async (t) => {
    const c = await suite.context(t);
    const conn = await c.connect({ frameMax: 8192, heartbeat: 7, channelMax: 5 });
    assert.deepEqual(tuned(conn), { frameMax: 8192, channelMax: 5, heartbeat: 7 });
    // A body larger than frame_max is split into several frames and still round-trips.
    const ch = await c.channel(conn);
    const q = await c.queue();
    const body = Buffer.alloc(50_000, 7);
    ch.sendToQueue(q, body);
    await ch.checkQueue(q);
    const got = await ch.get(q, { noAck: true });
    assert.ok(got);
    assert.ok(got.content.equals(body));
  });

  it('sends heartbeat frames on channel 0 when a heartbeat is negotiated', async (t) => {
    const raw = await RawClient.open(suite.broker, { heartbeat: 1 });
    t.after(() => raw.destroy());
    const f = await raw.readFrame(4000);
    assert.ok(f);
    assert.deepEqual([f.type, f.channel, f.payload.length], [8, 0, 0]);
  });

  it('closes a connection whose tune-ok asks for a frame_max above the server maximum, without open-ok', async (t) => {
    const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
    t.after(() => raw.destroy());
    await raw.greet();
    await raw.login({ frameMax: 200_000 });
    raw.sendOpen('/');
    const f = await raw.readFrame(8000);
    if (f !== null) {
      // RabbitMQ closes silently; a connection.close is the only other acceptable answer.
      assert.equal(f.type, 1);
      assert.deepEqual([f.payload.readUInt16BE(0), f.payload.readUInt16BE(2)], [10, 50]);
    }
    await raw.readUntilEnd(8000);
  });
});

describe('protocol header', () => {
  for (const [name, header] of [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['AMQP 0-9-0', Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 0])],
    ['AMQP 1.0', Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0])],
    ['AMQP 0-10', Buffer.from([0x41, 0x4d, 0x51, 0x50, 1, 1, 0, 10])],
  ] as const) {
    it(`answers ${name} with the 0-9-1 protocol header and closes the socket`, async (t) => {
      const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
      t.after(() => raw.destroy());
      raw.write(header);
      const reply = await raw.readUntilEnd();
      assert.deepEqual(reply, PROTOCOL_HEADER);
    });
  }
});

describe('malformed frames after the handshake', () => {
  it('closes with 501 FRAME_ERROR on a bad frame-end octet', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(encodeFrame(1, 0, Buffer.concat([u16(10), u16(40)]), 0x00));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 501, 'FRAME_ERROR - type 1, all octets = <<0,10,0,40>>: {invalid_frame_end_marker,0}', 0, 0],
    );

  });

  it('closes with 501 FRAME_ERROR on an unknown frame type', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(encodeFrame(9, 1, Buffer.from('abc')));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText],
      [0, 501, 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame'],
    );
  });

  it('closes with 501 FRAME_ERROR on a frame larger than the negotiated frame_max', async (t) => {
    const raw = await RawClient.open(suite.broker, { frameMax: 4096 });
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(encodeFrame(1, 1, Buffer.concat([u16(60), u16(40), Buffer.alloc(5000)])));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText],
      [0, 501, 'FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,5004,4088}'],
    );
  });

  it('closes with 501 FRAME_ERROR when a method cannot be decoded', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 50, 10, u16(0)));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 501, 'FRAME_ERROR - cannot decode <<0,0>>', 50, 10],
    );
  });

  it('closes with 505 UNEXPECTED_FRAME on a body frame without a preceding header', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(encodeFrame(3, 1, Buffer.from('abc')));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText],
      [0, 505, 'UNEXPECTED_FRAME - expected method frame, got non method frame instead'],
    );
  });

  it('closes with 505 UNEXPECTED_FRAME on a heartbeat frame on a non-zero channel', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(encodeFrame(8, 1, Buffer.alloc(0)));
    const close = await raw.expectClose();
    assert.deepEqual([close.channel, close.replyCode, close.replyText], [0, 505, 'UNEXPECTED_FRAME - type 8, all octets = <<>>']);
  });

  it('closes with 501 FRAME_ERROR on a heartbeat frame with a payload', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(encodeFrame(8, 0, Buffer.from('x')));
    const close = await raw.expectClose();
    assert.deepEqual([close.channel, close.replyCode, close.replyText], [0, 501, 'FRAME_ERROR - type 8, all octets = <<"x">>: unknown_frame']);
  });

  it('drops the socket without connection.close on an unknown class/method id', async (t) => {
    // RabbitMQ 3.x's reader crashes on {unknown_method_id,{99,10}}: no close frame, just EOF.
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 99, 10));
    assert.equal(await raw.readFrame(), null);
  });

  it('accepts heartbeat frames on channel 0', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    raw.write(encodeFrame(8, 0, Buffer.alloc(0)));
    await raw.openChannel(1);
  });
});

describe('content frame sequencing', () => {
  const publish = (ch: number): Buffer => methodFrame(ch, 60, 40, u16(0), shortstr(''), shortstr('nowhere'), Buffer.from([0]));
  const header = (ch: number, classId: number, size: number): Buffer => {
    const s = Buffer.alloc(8);
    s.writeBigUInt64BE(BigInt(size));
    return encodeFrame(2, ch, Buffer.concat([u16(classId), u16(0), s, u16(0)]));
  };

  it('closes with 505 when a method arrives instead of the content header', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(Buffer.concat([publish(1), publish(1)]));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 505, 'UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead', 60, 40],
    );
  });

  it('closes with 505 when the content header has the wrong class id', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(Buffer.concat([publish(1), header(1, 50, 0)]));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 505, 'UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead', 60, 40],
    );
  });

  it('closes with 505 when a method arrives before the body is complete', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(Buffer.concat([publish(1), header(1, 60, 5), encodeFrame(3, 1, Buffer.from('ab')), publish(1)]));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 505, 'UNEXPECTED_FRAME - expected content body, got non content body frame instead', 60, 40],
    );
  });

  it('closes with 505 on a content header for a channel that is not expecting one', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    await raw.openChannel(2);
    raw.write(Buffer.concat([publish(1), header(2, 60, 0)]));
    const close = await raw.expectClose();
    assert.deepEqual([close.channel, close.replyCode, close.replyText], [0, 505, 'UNEXPECTED_FRAME - expected method frame, got non method frame instead']);
  });

  it('assembles content frames of different channels interleaved on the wire', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    await raw.openChannel(2);
    const pub = (ch: number): Buffer => methodFrame(ch, 60, 40, u16(0), shortstr(''), shortstr(q), Buffer.from([0]));
    raw.write(
      Buffer.concat([
        pub(1),
        pub(2),
        header(1, 60, 4),
        header(2, 60, 4),
        encodeFrame(3, 2, Buffer.from('ch')),
        encodeFrame(3, 1, Buffer.from('ch')),
        encodeFrame(3, 1, Buffer.from('-1')),
        encodeFrame(3, 2, Buffer.from('-2')),
      ]),
    );
    // confirm.select on both channels acts as a barrier: each is answered after that channel's publish.
    raw.write(Buffer.concat([methodFrame(1, 85, 10, Buffer.from([0])), methodFrame(2, 85, 10, Buffer.from([0]))]));
    await raw.expectMethod(85, 11);
    await raw.expectMethod(85, 11);
    const ch = await c.channel();
    assert.deepEqual((await drain(ch, q)).sort(), ['ch-1', 'ch-2']);
  });
});

describe('channel-level protocol details', () => {
  it('ignores methods after a server channel.close until close-ok, then lets the channel be reopened', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    const passive = (q: string): Buffer => methodFrame(1, 50, 10, u16(0), shortstr(q), Buffer.from([1]), EMPTY_TABLE);
    raw.write(passive('e2e-surely-missing-queue'));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.classId, close.methodId, close.replyCode, close.replyText],
      [1, 20, 40, 404, "NOT_FOUND - no queue 'e2e-surely-missing-queue' in vhost '/'"],
    );
    raw.write(passive('e2e-another-missing-queue')); // ignored: the channel is closing
    raw.write(methodFrame(1, 20, 41)); // channel.close-ok
    raw.write(methodFrame(1, 20, 10, shortstr('')));
    const next = await raw.readMethod();
    assert.deepEqual([next.channel, next.classId, next.methodId], [1, 20, 11]);
  });

  it('closes the connection with 540 on channel.flow active=false', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 20, 20, Buffer.from([0])));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 540, 'NOT_IMPLEMENTED - active=false', 20, 20],
    );
  });

  it('answers the deprecated access.request with access.request-ok ticket 1', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 30, 10, shortstr('/data'), Buffer.from([0])));
    const ok = await raw.expectMethod(30, 11);
    assert.deepEqual([ok.channel, ok.args.readUInt16BE(0)], [1, 1]);
  });

  it('closes the connection with 503 on an unsolicited channel.close-ok', async (t) => {
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    raw.write(methodFrame(1, 20, 41));
    const close = await raw.expectClose();
    assert.deepEqual(
      [close.channel, close.replyCode, close.replyText, close.failingClassId, close.failingMethodId],
      [0, 503, 'COMMAND_INVALID - unimplemented method', 20, 41],
    );
  });

  it('closes with 505 when a channel method is sent before connection.open', async (t) => {
    const raw = await RawClient.connect(suite.broker.host, suite.broker.port);
    t.after(() => raw.destroy());
    await raw.greet();
    await raw.login();
    raw.write(methodFrame(1, 20, 10, shortstr('')));
    const close = await raw.expectClose();
    assert.deepEqual([close.channel, close.replyCode, close.replyText], [0, 505, 'UNEXPECTED_FRAME - type 1, all octets = <<0,20,0,10,0>>']);
  });

  it('counts open channels against channel_max rather than checking channel numbers', async (t) => {
    // RabbitMQ 3.x accepts channel ids above the negotiated channel_max (here 10 and 2048 > 2047).
    const raw = await RawClient.open(suite.broker, { channelMax: 10 });
    t.after(() => raw.destroy());
    await raw.openChannel(11);
    await raw.openChannel(2048);
  });
});
