import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import amqp from 'amqplib';
import { e2eSuite, encodeFrame, methodFrame, RawClient, shortstr, startExtraWarren, u16 } from './fixture';

const suite = e2eSuite();

/** A content header frame for basic with the given 64-bit body size and no properties. */
function contentHeader(channel: number, high: number, low: number): Buffer {
  const p = Buffer.alloc(14);
  p.writeUInt16BE(60, 0);
  p.writeUInt32BE(high, 4);
  p.writeUInt32BE(low, 8);
  return encodeFrame(2, channel, p);
}

function publish(channel: number, queue: string): Buffer {
  return methodFrame(channel, 60, 40, u16(0), shortstr(''), shortstr(queue), Buffer.from([0]));
}

describe('hostile and broken peers', () => {
  it('disconnects a client that goes silent for two heartbeat intervals', async (t) => {
    const raw = await RawClient.open(suite.broker, { heartbeat: 1 });
    t.after(() => raw.destroy());
    const started = Date.now();
    await raw.readUntilEnd(10_000);
    const elapsed = Date.now() - started;
    // RabbitMQ gives up after two missed heartbeats; allow for timer granularity.
    assert.ok(elapsed >= 1500 && elapsed < 6000, `disconnected after ${elapsed} ms`);
  });

  it('closes a handshake that never completes (slow loris) after the handshake timeout', async (t) => {
    if (suite.broker.external) return t.skip('needs a broker with a short handshake timeout');
    const b = await startExtraWarren(t, { handshakeTimeoutMs: 300 });
    const raw = await RawClient.connect(b.host, b.port);
    t.after(() => raw.destroy());
    raw.write(Buffer.from('AMQP')); // half a protocol header, then nothing
    const started = Date.now();
    await raw.readUntilEnd(5000);
    assert.ok(Date.now() - started < 3000);
  });

  it('refuses a content header declaring a 10 GB body with 406 without allocating it, and other connections carry on', async (t) => {
    // RabbitMQ only checks max_message_size once the body has arrived; Warren refuses at the header.
    if (suite.broker.external) return t.skip('RabbitMQ waits for the body before checking its size');
    const c = await suite.context(t);
    const q = await c.queue();
    const raw = await RawClient.open(suite.broker);
    t.after(() => raw.destroy());
    await raw.openChannel(1);
    const rssBefore = process.memoryUsage.rss();
    raw.write(Buffer.concat([publish(1, q), contentHeader(1, 2, 0x80000000)]));
    const close = await raw.expectClose();
    assert.equal(close.replyCode, 406);
    assert.match(close.replyText, /^PRECONDITION_FAILED - message size 10737418240 is larger than configured max size 134217728$/);
    assert.ok(process.memoryUsage.rss() - rssBefore < 512 * 1024 * 1024);

    const ch = await c.confirmChannel();
    ch.sendToQueue(q, Buffer.from('still fine'));
    await ch.waitForConfirms();
    const m = await ch.get(q, { noAck: true });
    assert.ok(m);
    assert.equal(m.content.toString(), 'still fine');
  });

  it('keeps serving well-behaved connections while others send garbage', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    const garbage: RawClient[] = [];
    for (let i = 0; i < 5; i++) {
      const raw = await RawClient.open(suite.broker);
      t.after(() => raw.destroy());
      raw.write(Buffer.from([1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 1, 2, 3]));
      garbage.push(raw);
    }
    for (let i = 0; i < 100; i++) ch.sendToQueue(q, Buffer.from(String(i)));
    await ch.waitForConfirms();
    assert.equal((await ch.checkQueue(q)).messageCount, 100);
    for (const raw of garbage) {
      const close = await raw.expectClose();
      assert.equal(close.replyCode, 501);
    }
  });

  it('closes client connections with 320 CONNECTION_FORCED on shutdown', async (t) => {
    if (suite.broker.external) return t.skip('stops the broker');
    const b = await startExtraWarren(t, {});
    const conn = await amqp.connect(b.url);
    conn.on('error', () => {});
    const closed = new Promise<Error>((resolve) => conn.on('close', resolve));
    await b.close();
    const err = (await closed) as Error & { code?: number };
    assert.equal(err.code, 320);
    assert.match(err.message, /CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'/);
  });
});

describe('a taken management port', () => {
  it('keeps AMQP running without the management API and reports no management port', async (t) => {
    if (suite.broker.external) return t.skip('starts its own broker');
    const { createServer } = await import('node:net');
    const blocker = createServer();
    const port = await new Promise<number>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve((blocker.address() as { port: number }).port)));
    t.after(() => blocker.close());
    const b = await startExtraWarren(t, { managementPort: port });
    assert.equal(b.warren!.managementPort, null);
    const conn = await amqp.connect(b.url);
    const ch = await conn.createChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true });
    assert.match(queue, /^amq\.gen-/);
    await conn.close();
  });
});
