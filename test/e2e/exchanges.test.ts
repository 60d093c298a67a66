import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { e2eSuite, drain, messageCount, publishConfirmed, rejectsWithClose, serverClose } from './fixture';

const suite = e2eSuite();

const DEFAULT_EXCHANGE_REFUSED = 'ACCESS_REFUSED - operation not permitted on the default exchange';

describe('exchange.declare', () => {
  for (const type of ['direct', 'fanout', 'topic', 'headers']) {
    it(`declares a ${type} exchange and redeclares it idempotently`, async (t) => {
      const c = await suite.context(t);
      const ch = await c.channel();
      const name = c.exchangeName(type);
      assert.deepEqual(await ch.assertExchange(name, type, { durable: false }), { exchange: name });
      assert.deepEqual(await ch.assertExchange(name, type, { durable: false }), { exchange: name });
      await ch.checkExchange(name);
    });
  }

  it('closes the channel with 404 on a passive declare of a missing exchange', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const name = c.exchangeName('missing');
    const err = await rejectsWithClose(ch.checkExchange(name));
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no exchange '${name}' in vhost '/'`);
    assert.deepEqual([err.classId, err.methodId], [40, 10]);
  });

  it('closes the connection with 503 on an unknown exchange type', async (t) => {
    const c = await suite.context(t);
    const conn = await c.connect();
    const ch = await c.channel(conn);
    ch.assertExchange(c.exchangeName(), 'no-such-type', { durable: false }).catch(() => {});
    const err = await serverClose(conn);
    assert.equal(err.code, 503);
    assert.equal(err.text, "COMMAND_INVALID - unknown exchange type 'no-such-type'");
  });

  const mismatches: Array<{
    what: string;
    first: { type: string; durable?: boolean; autoDelete?: boolean; internal?: boolean };
    second: { type: string; durable?: boolean; autoDelete?: boolean; internal?: boolean; arguments?: Record<string, unknown> };
    text: (n: string) => string;
  }> = [
    {
      what: 'type',
      first: { type: 'direct' },
      second: { type: 'fanout' },
      text: (n) => `PRECONDITION_FAILED - inequivalent arg 'type' for exchange '${n}' in vhost '/': received 'fanout' but current is 'direct'`,
    },
    {
      what: 'durable',
      first: { type: 'direct', durable: false },
      second: { type: 'direct', durable: true },
      text: (n) => `PRECONDITION_FAILED - inequivalent arg 'durable' for exchange '${n}' in vhost '/': received 'true' but current is 'false'`,
    },
    {
      what: 'auto-delete',
      first: { type: 'direct' },
      second: { type: 'direct', autoDelete: true },
      text: (n) => `PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange '${n}' in vhost '/': received 'true' but current is 'false'`,
    },
    {
      what: 'internal',
      first: { type: 'direct' },
      second: { type: 'direct', internal: true },
      text: (n) => `PRECONDITION_FAILED - inequivalent arg 'internal' for exchange '${n}' in vhost '/': received 'true' but current is 'false'`,
    },
    {
      what: 'alternate-exchange argument',
      first: { type: 'direct' },
      second: { type: 'direct', arguments: { 'alternate-exchange': 'ae' } },
      text: (n) =>
        `PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange '${n}' in vhost '/': received the value 'ae' of type 'longstr' but current is none`,
    },
  ];
  for (const m of mismatches) {
    it(`closes the channel with 406 when redeclaring with a different ${m.what}`, async (t) => {
      const c = await suite.context(t);
      const ch = await c.channel();
      const name = c.exchangeName();
      await ch.assertExchange(name, m.first.type, { durable: false, ...m.first });
      const { type, ...opts } = m.second;
      const err = await rejectsWithClose(ch.assertExchange(name, type, { durable: false, ...opts }));
      assert.equal(err.code, 406);
      assert.equal(err.text, m.text(name));
      // The exchange itself is unchanged.
      const ch2 = await c.channel();
      await ch2.assertExchange(name, m.first.type, { durable: false, ...m.first });
    });
  }

  it('ignores differences in unknown x- arguments on redeclare', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const name = c.exchangeName();
    await ch.assertExchange(name, 'direct', { durable: false });
    await ch.assertExchange(name, 'direct', { durable: false, arguments: { 'x-whatever': 'v' } });
  });

  it("refuses to declare an exchange with the reserved 'amq.' prefix with 403", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const name = `amq.${c.exchangeName()}`;
    const err = await rejectsWithClose(ch.assertExchange(name, 'direct', { durable: false }));
    assert.equal(err.code, 403);
    assert.equal(err.text, `ACCESS_REFUSED - exchange name '${name}' contains reserved prefix 'amq.*'`);
  });

  it('allows an equivalent redeclare of a pre-declared amq.* exchange but not a different one', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    await ch.assertExchange('amq.direct', 'direct', { durable: true });
    const err = await rejectsWithClose(ch.assertExchange('amq.direct', 'fanout', { durable: true }));
    assert.equal(err.code, 406);
    assert.equal(
      err.text,
      "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '/': received 'fanout' but current is 'direct'",
    );
  });

  it('has the pre-declared amq.direct, amq.fanout, amq.topic, amq.headers, amq.match and amq.rabbitmq.trace exchanges', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    for (const [name, type] of [
      ['amq.direct', 'direct'],
      ['amq.fanout', 'fanout'],
      ['amq.topic', 'topic'],
      ['amq.headers', 'headers'],
      ['amq.match', 'headers'],
      ['amq.rabbitmq.trace', 'topic'],
    ] as const) {
      await ch.checkExchange(name);
      const opts = name === 'amq.rabbitmq.trace' ? { durable: true, internal: true } : { durable: true };
      await ch.assertExchange(name, type, opts);
    }
  });

  it("has no exchange called 'amq.default'", async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.checkExchange('amq.default'));
    assert.equal(err.code, 404);
    assert.equal(err.text, "NOT_FOUND - no exchange 'amq.default' in vhost '/'");
  });
});

describe('the default exchange', () => {
  const ops: Array<[string, (ch: import('amqplib').Channel, q: string, x: string) => Promise<unknown>]> = [
    ['declare', (ch) => ch.assertExchange('', 'direct', { durable: true })],
    ['passive declare', (ch) => ch.checkExchange('')],
    ['delete', (ch) => ch.deleteExchange('')],
    ['bind a queue to', (ch, q) => ch.bindQueue(q, '', 'k')],
    ['unbind a queue from', (ch, q) => ch.unbindQueue(q, '', q)],
    ['bind as exchange-to-exchange source', (ch, _q, x) => ch.bindExchange(x, '', 'k')],
    ['bind as exchange-to-exchange destination', (ch, _q, x) => ch.bindExchange('', x, 'k')],
  ];
  for (const [what, op] of ops) {
    it(`refuses to ${what} the default exchange with 403`, async (t) => {
      const c = await suite.context(t);
      const q = await c.queue();
      const x = await c.exchange('direct');
      const ch = await c.channel();
      const err = await rejectsWithClose(op(ch, q, x));
      assert.equal(err.code, 403);
      assert.equal(err.text, DEFAULT_EXCHANGE_REFUSED);
    });
  }

  it('routes to the queue named by the routing key', async (t) => {
    const c = await suite.context(t);
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await publishConfirmed(ch, '', q, 'hello');
    assert.deepEqual(await drain(ch, q), ['hello']);
  });
});

describe('exchange.delete', () => {
  it('refuses to delete a system exchange with 403', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const err = await rejectsWithClose(ch.deleteExchange('amq.direct'));
    assert.equal(err.code, 403);
    assert.equal(err.text, "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed");
  });

  it('refuses if-unused deletion of an exchange with bindings (406) and deletes it once unbound', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const q = await c.queue();
    const ch = await c.channel();
    await ch.bindQueue(q, x, 'k');
    const err = await rejectsWithClose(ch.deleteExchange(x, { ifUnused: true }));
    assert.equal(err.code, 406);
    assert.equal(err.text, `PRECONDITION_FAILED - exchange '${x}' in vhost '/' in use`);

    const ch2 = await c.channel();
    await ch2.unbindQueue(q, x, 'k');
    await ch2.deleteExchange(x, { ifUnused: true });
    const gone = await rejectsWithClose(ch2.checkExchange(x));
    assert.equal(gone.code, 404);
  });

  it('counts an exchange-to-exchange binding where the exchange is the source as "in use"', async (t) => {
    const c = await suite.context(t);
    const src = await c.exchange('fanout');
    const dst = await c.exchange('fanout');
    const ch = await c.channel();
    await ch.bindExchange(dst, src, '');
    const err = await rejectsWithClose(ch.deleteExchange(src, { ifUnused: true }));
    assert.equal(err.code, 406);
    assert.equal(err.text, `PRECONDITION_FAILED - exchange '${src}' in vhost '/' in use`);
  });

  it('succeeds for a missing exchange', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    assert.deepEqual(await ch.deleteExchange(c.exchangeName('missing')), {});
  });

  it('removes the bindings of a deleted exchange', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, '');
    await ch.deleteExchange(x);
    await ch.assertExchange(x, 'fanout', { durable: false });
    await publishConfirmed(ch, x, '', 'after');
    assert.equal(await messageCount(ch, q), 0);
  });

  it('deletes an auto-delete exchange when its last binding is removed', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct', { durable: false, autoDelete: true });
    const q = await c.queue();
    const ch = await c.channel();
    await ch.bindQueue(q, x, 'a');
    await ch.bindQueue(q, x, 'b');
    await ch.unbindQueue(q, x, 'a');
    await ch.checkExchange(x);
    await ch.unbindQueue(q, x, 'b');
    const err = await rejectsWithClose(ch.checkExchange(x));
    assert.equal(err.code, 404);
  });

  it('keeps an auto-delete exchange that never had a binding', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct', { durable: false, autoDelete: true });
    const ch = await c.channel();
    await ch.checkExchange(x);
  });
});

describe('publishing to exchanges', () => {
  it('closes the channel with 404 when publishing to a missing exchange', async (t) => {
    const c = await suite.context(t);
    const ch = await c.channel();
    const x = c.exchangeName('missing');
    ch.publish(x, 'k', Buffer.from('x'));
    const err = await serverClose(ch);
    assert.equal(err.code, 404);
    assert.equal(err.text, `NOT_FOUND - no exchange '${x}' in vhost '/'`);
    assert.deepEqual([err.classId, err.methodId], [60, 40]);
  });

  it('closes the channel with 403 when publishing to an internal exchange', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout', { durable: false, internal: true });
    const ch = await c.channel();
    ch.publish(x, '', Buffer.from('x'));
    const err = await serverClose(ch);
    assert.equal(err.code, 403);
    assert.equal(err.text, `ACCESS_REFUSED - cannot publish to internal exchange '${x}' in vhost '/'`);
  });

  it('delivers through an internal exchange when it is bound to a public one', async (t) => {
    const c = await suite.context(t);
    const pub = await c.exchange('fanout');
    const internal = await c.exchange('fanout', { durable: false, internal: true });
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindExchange(internal, pub, '');
    await ch.bindQueue(q, internal, '');
    await publishConfirmed(ch, pub, '', 'via-internal');
    assert.deepEqual(await drain(ch, q), ['via-internal']);
  });
});

describe('exchange-to-exchange bindings', () => {
  it('routes through a chain of exchanges using each hop’s routing rules', async (t) => {
    const c = await suite.context(t);
    const top = await c.exchange('topic');
    const direct = await c.exchange('direct');
    const qa = await c.queue();
    const qb = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindExchange(direct, top, 'orders.*');
    await ch.bindQueue(qa, direct, 'orders.eu');
    await ch.bindQueue(qb, direct, 'orders.us');
    await publishConfirmed(ch, top, 'orders.eu', 'eu');
    await publishConfirmed(ch, top, 'orders.us', 'us');
    await publishConfirmed(ch, top, 'orders.eu.x', 'nope');
    await publishConfirmed(ch, top, 'invoices.eu', 'nope');
    assert.deepEqual(await drain(ch, qa), ['eu']);
    assert.deepEqual(await drain(ch, qb), ['us']);
  });

  it('delivers a message once per queue even when exchange bindings form a cycle', async (t) => {
    const c = await suite.context(t);
    const x1 = await c.exchange('fanout');
    const x2 = await c.exchange('fanout');
    const x3 = await c.exchange('fanout');
    const q1 = await c.queue();
    const q3 = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindExchange(x2, x1, '');
    await ch.bindExchange(x3, x2, '');
    await ch.bindExchange(x1, x3, '');
    await ch.bindQueue(q1, x1, '');
    await ch.bindQueue(q3, x3, '');
    await ch.bindQueue(q3, x2, '');
    await publishConfirmed(ch, x1, '', 'once');
    await publishConfirmed(ch, x2, '', 'twice');
    assert.deepEqual(await drain(ch, q1), ['once', 'twice']);
    assert.deepEqual(await drain(ch, q3), ['once', 'twice']);
  });

  it('handles an exchange bound to itself', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindExchange(x, x, '');
    await ch.bindQueue(q, x, '');
    await publishConfirmed(ch, x, '', 'self');
    assert.deepEqual(await drain(ch, q), ['self']);
  });

  it('stops routing after exchange.unbind', async (t) => {
    const c = await suite.context(t);
    const src = await c.exchange('fanout');
    const dst = await c.exchange('fanout');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindExchange(dst, src, '');
    await ch.bindQueue(q, dst, '');
    await publishConfirmed(ch, src, '', 'bound');
    await ch.unbindExchange(dst, src, '');
    await publishConfirmed(ch, src, '', 'unbound');
    assert.deepEqual(await drain(ch, q), ['bound']);
  });

  it('closes the channel with 404 when either side of an exchange binding is missing', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const missing = c.exchangeName('missing');
    const ch1 = await c.channel();
    const e1 = await rejectsWithClose(ch1.bindExchange(missing, x, ''));
    assert.equal(e1.code, 404);
    assert.equal(e1.text, `NOT_FOUND - no exchange '${missing}' in vhost '/'`);
    const ch2 = await c.channel();
    const e2 = await rejectsWithClose(ch2.bindExchange(x, missing, ''));
    assert.equal(e2.code, 404);
    assert.equal(e2.text, `NOT_FOUND - no exchange '${missing}' in vhost '/'`);
  });
});

describe('queue bindings', () => {
  it('closes the channel with 404 when binding a missing queue or to a missing exchange', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const q = await c.queue();
    const missingQ = c.queueName('missing');
    const missingX = c.exchangeName('missing');
    const ch1 = await c.channel();
    const e1 = await rejectsWithClose(ch1.bindQueue(missingQ, x, 'k'));
    assert.equal(e1.code, 404);
    assert.equal(e1.text, `NOT_FOUND - no queue '${missingQ}' in vhost '/'`);
    const ch2 = await c.channel();
    const e2 = await rejectsWithClose(ch2.bindQueue(q, missingX, 'k'));
    assert.equal(e2.code, 404);
    assert.equal(e2.text, `NOT_FOUND - no exchange '${missingX}' in vhost '/'`);
  });

  it('treats unbinding a non-existent binding, queue or exchange as success', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const q = await c.queue();
    const ch = await c.channel();
    assert.deepEqual(await ch.unbindQueue(q, x, 'never-bound'), {});
    assert.deepEqual(await ch.unbindQueue(c.queueName('missing'), x, 'k'), {});
    assert.deepEqual(await ch.unbindQueue(q, c.exchangeName('missing'), 'k'), {});
    assert.deepEqual(await ch.unbindExchange(x, 'amq.direct', 'never-bound'), {});
  });

  it('makes a duplicate binding a no-op (one copy per queue)', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'k');
    await ch.bindQueue(q, x, 'k');
    await publishConfirmed(ch, x, 'k', 'one');
    assert.deepEqual(await drain(ch, q), ['one']);
    await ch.unbindQueue(q, x, 'k');
    await publishConfirmed(ch, x, 'k', 'two');
    assert.deepEqual(await drain(ch, q), []);
  });
});
