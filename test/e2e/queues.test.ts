import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { e2eSuite, consume, drain, messageCount, publishConfirmed, rejectsWithClose, serverClose } from './fixture';

const suite = e2eSuite();

const locked = (q: string): string =>
  `RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '${q}' in vhost '/'. ` +
  'It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.';

describe('queue.declare', () => {
  it("gives a server-named queue an 'amq.gen-' name of 22 url-safe base64 characters", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const a = await ch.assertQueue('', { exclusive: true });
    const b = await ch.assertQueue('', { exclusive: true });
    assert.match(a.queue, /^amq\.gen-[A-Za-z0-9_-]{22}$/);
    assert.match(b.queue, /^amq\.gen-[A-Za-z0-9_-]{22}$/);
    assert.notEqual(a.queue, b.queue);
    assert.deepEqual({ ...a, queue: '' }, { queue: '', messageCount: 0, consumerCount: 0 });
    await ch.checkQueue(a.queue);
  });

  it('reports ready messages (not unacked ones) and consumers in declare-ok', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    for (const m of ['a', 'b', 'c']) await publishConfirmed(ch, '', q, m);
    assert.deepEqual(await ch.assertQueue(q, { durable: false }), { queue: q, messageCount: 3, consumerCount: 0 });

    const cons = await c.channel();
    await cons.prefetch(1);
    const consumer = await consume(cons, q);
    await consumer.waitFor(1);
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 2, consumerCount: 1 });
    await cons.cancel(consumer.consumerTag);
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 2, consumerCount: 0 });
  });

  it('returns the queue unchanged on an equivalent redeclare', async (t) => {
    const c = await suite.context(t);
    const q = c.queueName();
    const ch = await c.confirmChannel();
    await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 10 } });
    await publishConfirmed(ch, '', q, 'kept');
    assert.deepEqual(await ch.assertQueue(q, { durable: true, arguments: { 'x-max-length': 10 } }), {
      queue: q,
      messageCount: 1,
      consumerCount: 0,
    });
  });

  it('closes the channel with 404 on a passive declare of a missing queue', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.queueName('missing');
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
    assert.deepEqual([err.classId, err.methodId], [50, 10]);
  });

  it("does not substitute the last declared queue for '' in a passive declare", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await ch.assertQueue('', { exclusive: true });
    const err = await rejectsWithClose(ch.checkQueue(''));
    assert.equal(err.code, 404);
    assert.equal(err.text, "NOT_FOUND - no queue '' in vhost '/'");
  });

  const mismatches: Array<{
    what: string;
    first: import('amqplib').Options.AssertQueue;
    second: import('amqplib').Options.AssertQueue;
    text: (q: string) => string;
  }> = [
    {
      what: 'durable flag',
      first: { durable: false },
      second: { durable: true },
      text: (q) => `PRECONDITION_FAILED - inequivalent arg 'durable' for queue '${q}' in vhost '/': received 'true' but current is 'false'`,
    },
    {
      what: 'auto-delete flag',
      first: { durable: false },
      second: { durable: false, autoDelete: true },
      text: (q) => `PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '${q}' in vhost '/': received 'true' but current is 'false'`,
    },
    {
      what: 'new argument',
      first: { durable: false },
      second: { durable: false, arguments: { 'x-message-ttl': 1000 } },
      text: (q) =>
        `PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '${q}' in vhost '/': received the value '1000' of type 'short' but current is none`,
    },
    {
      what: 'argument value',
      first: { durable: false, arguments: { 'x-message-ttl': 1000 } },
      second: { durable: false, arguments: { 'x-message-ttl': 2000 } },
      text: (q) => `PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '${q}' in vhost '/': received '2000' but current is '1000'`,
    },
    {
      what: 'missing argument',
      first: { durable: false, arguments: { 'x-max-length': 10 } },
      second: { durable: false },
      text: (q) =>
        `PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '${q}' in vhost '/': received none but current is the value '10' of type 'byte'`,
    },
    {
      what: 'argument type (string vs number)',
      first: { durable: false, arguments: { 'x-message-ttl': 1000 } },
      second: { durable: false, arguments: { 'x-message-ttl': '1000' } },
      text: (q) => `PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '${q}' in vhost '/': received '1000' but current is '1000'`,
    },
    {
      what: 'queue type',
      first: { durable: true },
      second: { durable: true, arguments: { 'x-queue-type': 'quorum' } },
      text: (q) =>
        `PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '${q}' in vhost '/': received the value 'quorum' of type 'longstr' but current is none`,
    },
  ];
  for (const m of mismatches) {
    it(`closes the channel with 406 when redeclaring with a different ${m.what}`, async (t) => {
      const c = await suite.context(t);
      const q = c.queueName();
      const ch = await c.channel();
      await ch.assertQueue(q, m.first);
      const err = await rejectsWithClose(ch.assertQueue(q, m.second));
      assert.equal(err.code, 406);
      assert.equal(err.text, m.text(q));
      assert.deepEqual([err.classId, err.methodId], [50, 10]);
    });
  }

  it('accepts a redeclare whose integer argument uses a different integer width', async (t) => {
    const c = await suite.context(t);
    const q = c.queueName();
    const ch = await c.channel();
    await ch.assertQueue(q, { durable: false, arguments: { 'x-message-ttl': 1000 } });
    await ch.assertQueue(q, { durable: false, arguments: { 'x-message-ttl': { '!': 'long', value: 1000 } } });
  });

  it('accepts a redeclare that adds an unknown x- argument, and x-queue-type classic matches an untyped queue', async (t) => {
    const c = await suite.context(t);
    const q = c.queueName();
    const ch = await c.channel();
    await ch.assertQueue(q, { durable: false });
    await ch.assertQueue(q, { durable: false, arguments: { 'x-unknown-thing': 1 } });
    await ch.assertQueue(q, { durable: false, arguments: { 'x-queue-type': 'classic' } });
  });

  it('validates known arguments with 406 on declare', async (t) => {
    const c = await suite.context(t);
    const q1 = c.queueName();
    const ch1 = await c.channel();
    const e1 = await rejectsWithClose(ch1.assertQueue(q1, { durable: false, arguments: { 'x-message-ttl': 'abc' } }));
    assert.equal(e1.code, 406);
    assert.equal(e1.text, `PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '${q1}' in vhost '/': "expected integer, got longstr"`);
    const q2 = c.queueName();
    const ch2 = await c.channel();
    const e2 = await rejectsWithClose(ch2.assertQueue(q2, { durable: false, arguments: { 'x-message-ttl': -1 } }));
    assert.equal(e2.code, 406);
    assert.equal(e2.text, `PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '${q2}' in vhost '/': {value_negative,-1}`);
  });

  it("refuses to declare a queue with the reserved 'amq.' prefix with 403 (passive gives 404)", async (t) => {
    const c = await suite.context(t);
    const name = `amq.${c.queueName()}`;
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.assertQueue(name, { durable: false }));
    assert.equal(err.code, 403);
    assert.equal(err.text, `ACCESS_REFUSED - queue name '${name}' contains reserved prefix 'amq.*'`);
    const ch2 = await c.channel();
    const passive = await rejectsWithClose(ch2.checkQueue(name));
    assert.equal(passive.code, 404);
    assert.equal(passive.text, `NOT_FOUND - no queue '${name}' in vhost '/'`);
  });

  it('accepts a 255-byte queue name', async (t) => {
    const c = await suite.context(t);
    const base = c.queueName();
    const name = c.trackQueue(base + 'x'.repeat(255 - Buffer.byteLength(base)));
    const ch = await c.channel();
    assert.equal((await ch.assertQueue(name, { durable: false })).queue, name);
  });
});

describe('exclusive queues', () => {
  it('locks an exclusive queue against every other connection with 405', async (t) => {
    const c = await suite.context(t);
    const owner = await c.channel(await c.connect());
    const q = c.queueName('excl');
    await owner.assertQueue(q, { exclusive: true });
    const other = await c.connect();
    const ops: Array<[string, (ch: import('amqplib').Channel) => Promise<unknown>]> = [
      ['passive declare', (ch) => ch.checkQueue(q)],
      ['declare', (ch) => ch.assertQueue(q, { exclusive: true })],
      ['consume', (ch) => ch.consume(q, () => {})],
      ['get', (ch) => ch.get(q)],
      ['purge', (ch) => ch.purgeQueue(q)],
      ['bind', (ch) => ch.bindQueue(q, 'amq.direct', q)],
      ['delete', (ch) => ch.deleteQueue(q)],
    ];
    for (const [what, op] of ops) {
      const ch = await c.channel(other);
      const err = await rejectsWithClose(op(ch));
      assert.equal(err.code, 405, what);
      assert.equal(err.text, locked(q), what);
    }
    // The owner still has it.
    await owner.checkQueue(q);
  });

  it('lets another connection publish to an exclusive queue', async (t) => {
    const c = await suite.context(t);
    const owner = await c.channel(await c.connect());
    const q = c.trackQueue((await owner.assertQueue('', { exclusive: true })).queue);
    const pub = await c.confirmChannel(await c.connect());
    await publishConfirmed(pub, '', q, 'from-elsewhere');
    assert.deepEqual(await drain(owner, q), ['from-elsewhere']);
  });

  it('refuses the owner a redeclare whose exclusive flag differs with 405', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.queueName('excl');
    await ch.assertQueue(q, { exclusive: true });
    assert.equal((await ch.assertQueue(q, { exclusive: true })).queue, q);
    const err = await rejectsWithClose(ch.assertQueue(q, { exclusive: false }));
    assert.equal(err.code, 405);
    assert.equal(err.text, locked(q));
  });

  it("refuses even the owner a non-passive redeclare of a server-named queue (403, reserved 'amq.' prefix)", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.trackQueue((await ch.assertQueue('', { exclusive: true })).queue);
    const err = await rejectsWithClose(ch.assertQueue(q, { exclusive: true }));
    assert.equal(err.code, 403);
    assert.equal(err.text, `ACCESS_REFUSED - queue name '${q}' contains reserved prefix 'amq.*'`);
  });

  it('refuses an exclusive redeclare of an existing non-exclusive queue with 405', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.assertQueue(q, { durable: false, exclusive: true }));
    assert.equal(err.code, 405);
    assert.equal(err.text, locked(q));
  });

  it('deletes an exclusive queue when its connection closes', async (t) => {
    const c = await suite.context(t);
    const ownerConn = await c.connect();
    const owner = await c.channel(ownerConn);
    const q = c.trackQueue((await owner.assertQueue('', { exclusive: true })).queue);
    await ownerConn.close();
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
  });

  it('keeps an exclusive queue when only the declaring channel closes', async (t) => {
    const c = await suite.context(t);
    const conn = await c.connect();
    const owner = await c.channel(conn);
    const q = c.trackQueue((await owner.assertQueue('', { exclusive: true })).queue);
    await owner.close();
    const ch = await c.channel(conn);
    await ch.checkQueue(q);
  });
});

describe('auto-delete queues', () => {
  it('deletes an auto-delete queue when its last consumer is cancelled', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, autoDelete: true });
    const ch = await c.channel();
    const a = await consume(ch, q);
    const b = await consume(ch, q);
    await ch.cancel(a.consumerTag);
    await ch.checkQueue(q);
    await ch.cancel(b.consumerTag);
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
  });

  it('deletes an auto-delete queue when the consuming channel closes', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, autoDelete: true });
    const consumerCh = await c.channel();
    await consume(consumerCh, q);
    await consumerCh.close();
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
  });

  it('keeps an auto-delete queue that never had a consumer', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue({ durable: false, autoDelete: true });
    const ch = await c.channel();
    assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
  });
});

describe('queue.purge', () => {
  it('removes ready messages and reports how many', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    for (let i = 0; i < 5; i++) await publishConfirmed(ch, '', q, `m${i}`);
    assert.deepEqual(await ch.purgeQueue(q), { messageCount: 5 });
    assert.equal(await messageCount(ch, q), 0);
    assert.deepEqual(await ch.purgeQueue(q), { messageCount: 0 });
  });

  it('does not purge unacknowledged messages, which come back when the consumer goes away', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    for (let i = 0; i < 3; i++) await publishConfirmed(ch, '', q, `m${i}`);
    const consCh = await c.channel();
    const m = await consCh.get(q, { noAck: false });
    assert.ok(m);
    assert.deepEqual(await ch.purgeQueue(q), { messageCount: 2 });
    await consCh.close();
    assert.deepEqual(await drain(ch, q), ['m0']);
  });

  it('closes the channel with 404 for a missing queue', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.queueName('missing');
    const err = await rejectsWithClose(ch.purgeQueue(q));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
  });
});

describe('queue.delete', () => {
  it('returns the number of messages deleted with the queue', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    for (let i = 0; i < 4; i++) await publishConfirmed(ch, '', q, `m${i}`);
    assert.deepEqual(await ch.deleteQueue(q), { messageCount: 4 });
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
  });

  it('refuses if-empty deletion of a queue with messages with 406', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'x');
    const err = await rejectsWithClose(ch.deleteQueue(q, { ifEmpty: true }));
    assert.equal(err.code, 406);
    assert.equal(err.text, `PRECONDITION_FAILED - queue '${q}' in vhost '/' not empty`);
    assert.deepEqual([err.classId, err.methodId], [50, 40]);
  });

  it('refuses if-unused deletion of a queue with consumers with 406', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const consCh = await c.channel();
    await consume(consCh, q);
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.deleteQueue(q, { ifUnused: true }));
    assert.equal(err.code, 406);
    assert.equal(err.text, `PRECONDITION_FAILED - queue '${q}' in vhost '/' in use`);
  });

  it('deletes with if-empty and if-unused when the conditions hold', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.channel();
    assert.deepEqual(await ch.deleteQueue(q, { ifEmpty: true, ifUnused: true }), { messageCount: 0 });
  });

  it('succeeds with message count 0 for a missing queue', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    assert.deepEqual(await ch.deleteQueue(c.queueName('missing')), { messageCount: 0 });
  });

  it('cancels the consumers of a deleted queue', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const consCh = await c.channel();
    const consumer = await consume(consCh, q);
    const ch = await c.channel();
    await ch.deleteQueue(q);
    await consumer.waitCancelled();
  });

  it('removes the bindings of a deleted queue', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, '');
    await ch.deleteQueue(q);
    await ch.assertQueue(q, { durable: false });
    await publishConfirmed(ch, x, '', 'after');
    assert.equal(await messageCount(ch, q), 0);
  });
});

describe("the channel's last declared queue ('' shortcut)", () => {
  it("uses the last server-named queue for bind, purge and delete with an empty name", async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const q = c.trackQueue((await ch.assertQueue('', { exclusive: true })).queue);
    await ch.bindQueue('', 'amq.direct', q);
    await publishConfirmed(ch, 'amq.direct', q, 'a');
    await publishConfirmed(ch, 'amq.direct', q, 'b');
    assert.deepEqual(await ch.purgeQueue(''), { messageCount: 2 });
    assert.deepEqual(await ch.deleteQueue(''), { messageCount: 0 });
    const err = await rejectsWithClose(ch.checkQueue(q));
    assert.equal(err.code, 404);
  });

  it("closes the channel with 404 'no previously declared queue' when nothing was declared", async (t) => {
    const c = await suite.context(t);
    for (const op of [
      (ch: import('amqplib').Channel) => ch.deleteQueue(''),
      (ch: import('amqplib').Channel) => ch.purgeQueue(''),
      (ch: import('amqplib').Channel) => ch.bindQueue('', 'amq.direct', 'k'),
    ]) {
      const ch = await c.channel();
      const err = await rejectsWithClose(op(ch));
      assert.equal(err.code, 404);
      assert.equal(err.text, 'NOT_FOUND - no previously declared queue');
    }
  });

  it('also substitutes the last queue in basic.consume and basic.get', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const q = c.trackQueue((await ch.assertQueue('', { exclusive: true })).queue);
    await publishConfirmed(ch, '', q, 'via-get');
    const got = await ch.get('', { noAck: true });
    assert.ok(got);
    assert.equal(got.content.toString(), 'via-get');
    const consumer = await consume(ch, '', { noAck: true });
    await publishConfirmed(ch, '', q, 'via-consume');
    const [m] = await consumer.waitFor(1);
    assert.equal(m!.content.toString(), 'via-consume');
  });

  it('reports an error closing the channel when basic.get names a missing queue', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const q = c.queueName('missing');
    ch.get(q).catch(() => {});
    const err = await serverClose(ch);
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no queue '${q}' in vhost '/'`);
    assert.deepEqual([err.classId, err.methodId], [60, 70]);
  });
});
