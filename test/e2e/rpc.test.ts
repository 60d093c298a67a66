import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { e2eSuite, collectReturns, consume, publishConfirmed, rejectsWithClose, serverClose, withTimeout } from './fixture';

const suite = e2eSuite();

const REPLY_TO = 'amq.rabbitmq.reply-to';

describe('request/reply with a reply queue', () => {
  it('passes reply-to and correlation-id through untouched so a server can answer', async (t) => {
    const c = await suite.context(t);
    const requests = await c.queue();
    const replies = await c.queue();

    // Server: answers each request to its reply-to with the same correlation id.
    const serverCh = await c.confirmChannel(await c.connect());
    await serverCh.consume(requests, (m) => {
      if (!m) return;
      serverCh.sendToQueue(m.properties.replyTo as string, Buffer.from(`re:${m.content.toString()}`), {
        correlationId: m.properties.correlationId as string,
      });
      serverCh.ack(m);
    });

    const client = await c.confirmChannel(await c.connect());
    const answers = await consume(client, replies, { noAck: true });
    for (const id of ['a', 'b', 'c']) {
      await publishConfirmed(client, '', requests, `q-${id}`, { replyTo: replies, correlationId: `corr-${id}` });
    }
    const ms = await answers.waitFor(3);
    assert.deepEqual(
      ms.map((m) => [m.properties.correlationId, m.content.toString()]),
      [
        ['corr-a', 're:q-a'],
        ['corr-b', 're:q-b'],
        ['corr-c', 're:q-c'],
      ],
    );
  });
});

describe('direct reply-to (amq.rabbitmq.reply-to)', () => {
  it('rewrites reply-to to a per-channel amq.rabbitmq.reply-to.* name that routes the reply back', async (t) => {
    const c = await suite.context(t);
    const requests = await c.queue();
    const client = await c.confirmChannel(await c.connect());
    const replies = await consume(client, REPLY_TO, { noAck: true });
    assert.match(replies.consumerTag, /^amq\.ctag-/);
    await publishConfirmed(client, '', requests, 'ping', { replyTo: REPLY_TO, correlationId: 'c-1' });

    const server = await c.confirmChannel(await c.connect());
    const req = await server.get(requests, { noAck: true });
    assert.ok(req);
    const replyTo = req.properties.replyTo as string;
    assert.ok(replyTo.startsWith(`${REPLY_TO}.`), replyTo);
    assert.ok(replyTo.length > REPLY_TO.length + 10, replyTo);
    assert.equal(req.properties.correlationId, 'c-1');

    await publishConfirmed(server, '', replyTo, 'pong', { correlationId: 'c-1' });
    const [reply] = await replies.waitFor(1);
    assert.equal(reply!.content.toString(), 'pong');
    assert.equal(reply!.properties.correlationId, 'c-1');
    assert.deepEqual(reply!.fields, {
      consumerTag: replies.consumerTag,
      deliveryTag: 1,
      redelivered: false,
      exchange: '',
      routingKey: replyTo,
    });
  });

  it('gives the same reply-to name to every request from one channel', async (t) => {
    const c = await suite.context(t);
    const requests = await c.queue();
    const client = await c.confirmChannel();
    await consume(client, REPLY_TO, { noAck: true });
    await publishConfirmed(client, '', requests, '1', { replyTo: REPLY_TO });
    await publishConfirmed(client, '', requests, '2', { replyTo: REPLY_TO });
    const ch = await c.channel();
    const a = await ch.get(requests, { noAck: true });
    const b = await ch.get(requests, { noAck: true });
    assert.ok(a && b);
    assert.equal(a.properties.replyTo, b.properties.replyTo);
  });

  it("closes the channel with 406 when publishing with reply-to before consuming from amq.rabbitmq.reply-to", async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    ch.sendToQueue(q, Buffer.from('x'), { replyTo: REPLY_TO });
    const err = await serverClose(ch);
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - fast reply consumer does not exist');
    assert.deepEqual([err.classId, err.methodId], [60, 40]);
  });

  it('requires the reply consumer to be on the publishing channel, not just the same connection', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const conn = await c.connect();
    const consumerCh = await c.channel(conn);
    await consume(consumerCh, REPLY_TO, { noAck: true });
    const other = await c.channel(conn);
    other.sendToQueue(q, Buffer.from('x'), { replyTo: REPLY_TO });
    const err = await serverClose(other);
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - fast reply consumer does not exist');
  });

  it('closes the channel with 406 after the reply consumer was cancelled', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    const consumer = await consume(ch, REPLY_TO, { noAck: true });
    await ch.cancel(consumer.consumerTag);
    ch.sendToQueue(q, Buffer.from('x'), { replyTo: REPLY_TO });
    const err = await serverClose(ch);
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - fast reply consumer does not exist');
  });

  it('refuses a reply consumer in ack mode with 406', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.consume(REPLY_TO, () => {}, { noAck: false }));
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - reply consumer cannot acknowledge');
  });

  it('refuses a second reply consumer on the same channel with 406', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await consume(ch, REPLY_TO, { noAck: true });
    const err = await rejectsWithClose(ch.consume(REPLY_TO, () => {}, { noAck: true }));
    assert.equal(err.code, 406);
    assert.equal(err.text, 'PRECONDITION_FAILED - reply consumer already set');
  });

  it('answers a declare of amq.rabbitmq.reply-to with declare-ok', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const ok = await ch.checkQueue(REPLY_TO);
    assert.equal(ok.queue, REPLY_TO);
    assert.equal(ok.messageCount, 0);
  });

  it('treats amq.rabbitmq.reply-to.* names as missing queues for declare, get and bind', async (t) => {
    const c = await suite.context(t);
    const ch1 = await c.channel();
    const e1 = await rejectsWithClose(ch1.checkQueue(`${REPLY_TO}.foo`));
    assert.equal(e1.code, 404);
    assert.equal(e1.text, `NOT_FOUND - no queue '${REPLY_TO}.foo' in vhost '/'`);
    const ch2 = await c.channel();
    const e2 = await rejectsWithClose(ch2.get(REPLY_TO, { noAck: true }));
    assert.equal(e2.code, 404);
    assert.equal(e2.text, `NOT_FOUND - no queue '${REPLY_TO}' in vhost '/'`);
  });

  it('returns a mandatory reply to an unknown or vanished reply-to name as NO_ROUTE', async (t) => {
    const c = await suite.context(t);
    const requests = await c.queue();
    const requesterConn = await c.connect();
    const requester = await c.confirmChannel(requesterConn);
    await consume(requester, REPLY_TO, { noAck: true });
    await publishConfirmed(requester, '', requests, 'req', { replyTo: REPLY_TO });
    const server = await c.confirmChannel();
    const req = await server.get(requests, { noAck: true });
    assert.ok(req);
    await requesterConn.close();

    const returns = collectReturns(server);
    const replyTo = req.properties.replyTo as string;
    await publishConfirmed(server, '', replyTo, 'late', { mandatory: true });
    await publishConfirmed(server, '', `${REPLY_TO}.garbage`, 'bogus', { mandatory: true });
    await publishConfirmed(server, '', REPLY_TO, 'bare', { mandatory: true });
    const rs = await returns.waitFor(3);
    assert.deepEqual(
      rs.map((r) => [r.fields.replyCode, r.fields.replyText, r.fields.routingKey, r.content.toString()]),
      [
        [312, 'NO_ROUTE', replyTo, 'late'],
        [312, 'NO_ROUTE', `${REPLY_TO}.garbage`, 'bogus'],
        [312, 'NO_ROUTE', REPLY_TO, 'bare'],
      ],
    );
  });

  it('round-trips many concurrent requests, matching replies by correlation id', async (t) => {
    const c = await suite.context(t);
    const requests = await c.queue();
    const server = await c.channel(await c.connect());
    await server.consume(
      requests,
      (m) => {
        if (!m) return;
        const n = Number(m.content.toString());
        server.sendToQueue(m.properties.replyTo as string, Buffer.from(String(n * n)), {
          correlationId: m.properties.correlationId as string,
        });
      },
      { noAck: true },
    );
    const client = await c.channel(await c.connect());
    const replies = await consume(client, REPLY_TO, { noAck: true });
    for (let i = 0; i < 50; i++) client.sendToQueue(requests, Buffer.from(String(i)), { replyTo: REPLY_TO, correlationId: `n${i}` });
    const ms = await withTimeout(replies.waitFor(50), 5000, '50 replies');
    const byId = new Map(ms.map((m) => [m.properties.correlationId as string, m.content.toString()]));
    for (let i = 0; i < 50; i++) assert.equal(byId.get(`n${i}`), String(i * i));
  });
});
