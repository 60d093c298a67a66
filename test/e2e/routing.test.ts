import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ConfirmChannel } from 'amqplib';
import { e2eSuite, collectReturns, drain, publishConfirmed, withTimeout, type Ctx } from './fixture';

const suite = e2eSuite();

/**
 * Binds one fresh queue per binding to exchange x, publishes every key (body = key)
 * and returns, per binding, the keys that arrived in publish order.
 */
async function route(
  c: Ctx,
  ch: ConfirmChannel,
  x: string,
  bindings: Array<{ key: string; args?: Record<string, unknown> }>,
  publishes: Array<{ key: string; headers?: Record<string, unknown>; body?: string }>,
): Promise<string[][]> {
  const queues: string[] = [];
  for (const b of bindings) {
    const q = c.queueName();
    await ch.assertQueue(q, { durable: false });
    await ch.bindQueue(q, x, b.key, b.args);
    queues.push(q);
  }
  for (const p of publishes) ch.publish(x, p.key, Buffer.from(p.body ?? p.key), { headers: p.headers });
  await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
  const out: string[][] = [];
  for (const q of queues) out.push(await drain(ch, q));
  return out;
}

describe('direct exchange', () => {
  it('routes on exact, case-sensitive routing-key equality, including the empty key', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const got = await route(
      c,
      ch,
      x,
      [{ key: 'a' }, { key: 'A' }, { key: '' }, { key: 'a.b' }, { key: '*' }],
      [{ key: 'a' }, { key: 'A' }, { key: '' }, { key: 'a.b' }, { key: 'b' }, { key: '#' }],
    );
    assert.deepEqual(got, [['a'], ['A'], [''], ['a.b'], []]);
  });

  it('copies a message to every queue bound with the key, and once to a queue bound with several keys', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const q1 = c.queueName();
    const q2 = c.queueName();
    await ch.assertQueue(q1, { durable: false });
    await ch.assertQueue(q2, { durable: false });
    await ch.bindQueue(q1, x, 'k');
    await ch.bindQueue(q2, x, 'k');
    await ch.bindQueue(q2, x, 'other');
    await publishConfirmed(ch, x, 'k', 'm1');
    await publishConfirmed(ch, x, 'other', 'm2');
    assert.deepEqual(await drain(ch, q1), ['m1']);
    assert.deepEqual(await drain(ch, q2), ['m1', 'm2']);
  });

  it('routes via amq.direct to queues bound there', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const q = c.queueName();
    await ch.assertQueue(q, { durable: false });
    await ch.bindQueue(q, 'amq.direct', q);
    await publishConfirmed(ch, 'amq.direct', q, 'via-amq-direct');
    assert.deepEqual(await drain(ch, q), ['via-amq-direct']);
  });
});

describe('fanout exchange', () => {
  it('copies every message to every bound queue regardless of routing key', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('fanout');
    const ch = await c.confirmChannel();
    const got = await route(c, ch, x, [{ key: '' }, { key: 'ignored' }, { key: '#' }], [{ key: 'x' }, { key: '' }, { key: 'y.z' }]);
    assert.deepEqual(got, [
      ['x', '', 'y.z'],
      ['x', '', 'y.z'],
      ['x', '', 'y.z'],
    ]);
  });
});

describe('topic exchange', () => {
  // pattern -> the keys (from KEYS) that match it, in KEYS order, as RabbitMQ routes them.
  const KEYS = ['', 'a', 'b', 'A', 'a.b', 'a.c', 'b.a', 'a.b.c', 'a.x.b', 'a.b.b.c', 'a.x.y.b', 'x.y.a', 'a..b', '.', 'a.', '.a', 'a#', 'a.*'];
  const TABLE: Array<[string, string[]]> = [
    ['a.b.c', ['a.b.c']],
    ['a.*.c', ['a.b.c']],
    ['*', ['a', 'b', 'A', 'a#']],
    ['#', KEYS],
    ['#.#', KEYS],
    ['a.#', ['a', 'a.b', 'a.c', 'a.b.c', 'a.x.b', 'a.b.b.c', 'a.x.y.b', 'a..b', 'a.', 'a.*']],
    ['#.a', ['a', 'b.a', 'x.y.a', '.a']],
    ['a.#.b', ['a.b', 'a.x.b', 'a.x.y.b', 'a..b']],
    ['a.#.#.b', ['a.b', 'a.x.b', 'a.x.y.b', 'a..b']],
    ['#.b.#', ['b', 'a.b', 'b.a', 'a.b.c', 'a.x.b', 'a.b.b.c', 'a.x.y.b', 'a..b']],
    ['a.*.#', ['a.b', 'a.c', 'a.b.c', 'a.x.b', 'a.b.b.c', 'a.x.y.b', 'a..b', 'a.', 'a.*']],
    ['*.*', ['a.b', 'a.c', 'b.a', '.', 'a.', '.a', 'a.*']],
    ['*.#', KEYS.filter((k) => k !== '')],
    ['#.*', KEYS.filter((k) => k !== '')],
    ['*.#.*', KEYS.filter((k) => k.includes('.'))],
    ['a.*.b', ['a.x.b', 'a..b']],
    ['', ['']],
    ['a..b', ['a..b']],
    ['.', ['.']],
    ['*.', ['.', 'a.']],
    ['a#', ['a#']],
  ];

  it('matches a table of patterns with *, # (including # matching zero words) and empty words', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('topic');
    const ch = await c.confirmChannel();
    const got = await route(
      c,
      ch,
      x,
      TABLE.map(([key]) => ({ key })),
      KEYS.map((key) => ({ key })),
    );
    const actual = Object.fromEntries(TABLE.map(([p], i) => [p, got[i]]));
    const expected = Object.fromEntries(TABLE.map(([p, keys]) => [p, keys]));
    assert.deepEqual(actual, expected);
  });

  it('delivers once to a queue whose several bindings all match', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('topic');
    const ch = await c.confirmChannel();
    const q = c.queueName();
    await ch.assertQueue(q, { durable: false });
    for (const p of ['a.*', '#', 'a.b', '*.b']) await ch.bindQueue(q, x, p);
    await publishConfirmed(ch, x, 'a.b', 'once');
    assert.deepEqual(await drain(ch, q), ['once']);
  });

  it('stops matching after the binding is removed', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('topic');
    const ch = await c.confirmChannel();
    const q = c.queueName();
    await ch.assertQueue(q, { durable: false });
    await ch.bindQueue(q, x, 'a.#');
    await ch.bindQueue(q, x, '*.b');
    await ch.unbindQueue(q, x, 'a.#');
    await publishConfirmed(ch, x, 'a.c', 'unbound');
    await publishConfirmed(ch, x, 'x.b', 'still-bound');
    assert.deepEqual(await drain(ch, q), ['still-bound']);
  });
});

describe('headers exchange', () => {
  type Case = [string, Record<string, unknown>, Record<string, unknown> | undefined, boolean];
  const CASES: Case[] = [
    // [description, binding arguments, message headers, routed?]
    ['all: every header matches', { 'x-match': 'all', a: 1, b: 'x' }, { a: 1, b: 'x', extra: true }, true],
    ['all: one header missing', { 'x-match': 'all', a: 1, b: 'x' }, { a: 1 }, false],
    ['all: one header differs', { 'x-match': 'all', a: 1, b: 'x' }, { a: 1, b: 'y' }, false],
    ['x-match defaults to all', { a: 1, b: 1 }, { a: 1 }, false],
    ['x-match defaults to all (match)', { a: 1, b: 1 }, { a: 1, b: 1 }, true],
    ['any: one header matches', { 'x-match': 'any', a: 1, b: 2 }, { b: 2 }, true],
    ['any: none matches', { 'x-match': 'any', a: 1, b: 2 }, { a: 2, b: 3 }, false],
    ['all with no headers to match routes everything', { 'x-match': 'all' }, { z: 1 }, true],
    ['all with no headers routes a message without headers', { 'x-match': 'all' }, undefined, true],
    ['any with no headers to match routes nothing', { 'x-match': 'any' }, { z: 1 }, false],
    ['values are case-sensitive', { 'x-match': 'all', a: 'X' }, { a: 'x' }, false],
    ['integers of different widths compare equal', { 'x-match': 'all', a: 1 }, { a: { '!': 'long', value: 1 } }, true],
    ['an integer equals the same float', { 'x-match': 'all', a: 1 }, { a: { '!': 'double', value: 1 } }, true],
    ['float and double compare by value', { 'x-match': 'all', a: { '!': 'float', value: 1.5 } }, { a: 1.5 }, true],
    ['a string never equals a number', { 'x-match': 'all', a: 1 }, { a: '1' }, false],
    ['a boolean never equals a number', { 'x-match': 'all', a: true }, { a: 1 }, false],
    ['booleans compare by value', { 'x-match': 'all', a: true }, { a: true }, true],
    ['a longstr equals a byte array with the same bytes', { 'x-match': 'all', a: 'x' }, { a: Buffer.from('x') }, true],
    ['a timestamp equals the same integer', { 'x-match': 'all', a: { '!': 'timestamp', value: 5 } }, { a: 5 }, true],
    ['arrays compare element-wise', { 'x-match': 'all', a: [1, 'two'] }, { a: [1, 'two'] }, true],
    ['arrays in a different order differ', { 'x-match': 'all', a: [1, 2] }, { a: [2, 1] }, false],
    ['nested tables compare by content', { 'x-match': 'all', a: { n: 1 } }, { a: { n: 1 } }, true],
    ['a void binding value only requires presence', { 'x-match': 'all', a: null }, { a: 'anything' }, true],
    ['a void binding value requires the header to exist', { 'x-match': 'all', a: null }, { b: 1 }, false],
    ['a void header does not equal a string', { 'x-match': 'all', a: 'x' }, { a: null }, false],
    ['all ignores x- binding arguments', { 'x-match': 'all', 'x-a': 1 }, {}, true],
    ['any ignores x- binding arguments', { 'x-match': 'any', 'x-a': 1 }, { 'x-a': 1 }, false],
    ['any ignores x- headers even alongside other arguments', { 'x-match': 'any', 'x-a': 1, b: 1 }, { 'x-a': 1 }, false],
    ['all-with-x compares x- arguments (match)', { 'x-match': 'all-with-x', 'x-a': 1 }, { 'x-a': 1 }, true],
    ['all-with-x compares x- arguments (missing)', { 'x-match': 'all-with-x', 'x-a': 1 }, {}, false],
    ['any-with-x compares x- arguments (match)', { 'x-match': 'any-with-x', 'x-a': 1, b: 1 }, { 'x-a': 1 }, true],
    ['any-with-x compares x- arguments (differs)', { 'x-match': 'any-with-x', 'x-a': 1, b: 1 }, { 'x-a': 2 }, false],
  ];

  it('matches a table of x-match all/any/all-with-x/any-with-x cases with RabbitMQ value comparison', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('headers');
    const ch = await c.confirmChannel();
    const queues: string[] = [];
    for (const [, args] of CASES) {
      const q = c.queueName();
      await ch.assertQueue(q, { durable: false });
      await ch.bindQueue(q, x, '', args);
      queues.push(q);
    }
    // Publish each case's message; body = case index. A queue must only receive its own case (if routed).
    const got: Record<string, boolean> = {};
    const expected: Record<string, boolean> = {};
    for (const [i, [name, , headers, routed]] of CASES.entries()) {
      expected[name] = routed;
      ch.publish(x, '', Buffer.from(String(i)), { headers });
    }
    await ch.waitForConfirms();
    for (const [i, [name]] of CASES.entries()) {
      const bodies = await drain(ch, queues[i]!);
      got[name] = bodies.includes(String(i));
    }
    assert.deepEqual(got, expected);
  });

  it('ignores the routing key', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('headers');
    const ch = await c.confirmChannel();
    const got = await route(c, ch, x, [{ key: 'k', args: { 'x-match': 'all', h: 'v' } }], [
      { key: 'other', headers: { h: 'v' } },
      { key: 'k', headers: { h: 'w' } },
    ]);
    assert.deepEqual(got, [['other']]);
  });

  it('refuses an invalid x-match value with 406', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('headers');
    const q = await c.queue();
    const ch = await c.channel();
    const err = await ch.bindQueue(q, x, '', { 'x-match': 'bogus' }).then(
      () => assert.fail('bind succeeded'),
      (e: Error) => e.message,
    );
    assert.match(err, /406 \(PRECONDITION-FAILED\)/);
    assert.ok(
      err.endsWith(
        'with message "PRECONDITION_FAILED - Invalid x-match field value <<"bogus">>; expected all, any, all-with-x, or any-with-x"',
      ),
      err,
    );
  });

  it('refuses a non-string x-match with 406', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('headers');
    const q = await c.queue();
    const ch = await c.channel();
    const err = await ch.bindQueue(q, x, '', { 'x-match': 5 }).then(
      () => assert.fail('bind succeeded'),
      (e: Error) => e.message,
    );
    assert.ok(
      err.endsWith('with message "PRECONDITION_FAILED - Invalid x-match field type byte (value 5); expected longstr"'),
      err,
    );
  });

  it('routes via amq.match like any headers exchange', async (t) => {
    const c = await suite.context(t);
    const ch = await c.confirmChannel();
    const tag = c.queueName('tag');
    const got = await route(c, ch, 'amq.match', [{ key: '', args: { 'x-match': 'all', tag } }], [
      { key: '', headers: { tag }, body: 'mine' },
    ]);
    assert.deepEqual(got, [['mine']]);
  });
});

describe('alternate exchanges', () => {
  it('sends messages the exchange cannot route to its alternate exchange', async (t) => {
    const c = await suite.context(t);
    const ae = await c.exchange('fanout');
    const x = await c.exchange('direct', { durable: false, alternateExchange: ae });
    const ch = await c.confirmChannel();
    const qRouted = c.queueName();
    const qAe = c.queueName();
    await ch.assertQueue(qRouted, { durable: false });
    await ch.assertQueue(qAe, { durable: false });
    await ch.bindQueue(qRouted, x, 'known');
    await ch.bindQueue(qAe, ae, '');
    await publishConfirmed(ch, x, 'known', 'routed');
    await publishConfirmed(ch, x, 'unknown', 'to-ae');
    assert.deepEqual(await drain(ch, qRouted), ['routed']);
    assert.deepEqual(await drain(ch, qAe), ['to-ae']);
  });

  it('does not return a mandatory message that the alternate exchange routed', async (t) => {
    const c = await suite.context(t);
    const ae = await c.exchange('fanout');
    const x = await c.exchange('direct', { durable: false, alternateExchange: ae });
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, ae, '');
    const returns = collectReturns(ch);
    await publishConfirmed(ch, x, 'nowhere', 'm', { mandatory: true });
    assert.deepEqual(await drain(ch, q), ['m']);
    assert.equal(returns.messages.length, 0);
  });

  it('returns a mandatory message when neither the exchange nor its alternate can route it', async (t) => {
    const c = await suite.context(t);
    const ae = await c.exchange('direct');
    const x = await c.exchange('direct', { durable: false, alternateExchange: ae });
    const ch = await c.confirmChannel();
    const returns = collectReturns(ch);
    await publishConfirmed(ch, x, 'nowhere', 'lost', { mandatory: true });
    const [r] = await returns.waitFor(1);
    assert.equal(r!.fields.exchange, x);
    assert.equal(r!.fields.routingKey, 'nowhere');
    assert.equal(r!.content.toString(), 'lost');
  });

  it('follows a chain of alternate exchanges, using the original routing key', async (t) => {
    const c = await suite.context(t);
    const ae2 = await c.exchange('direct');
    const ae1 = await c.exchange('direct', { durable: false, alternateExchange: ae2 });
    const x = await c.exchange('direct', { durable: false, alternateExchange: ae1 });
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, ae2, 'rk');
    await publishConfirmed(ch, x, 'rk', 'chained');
    await publishConfirmed(ch, x, 'other', 'dropped');
    assert.deepEqual(await drain(ch, q), ['chained']);
  });

  it('silently drops unroutable messages when the alternate exchange does not exist', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct', { durable: false, alternateExchange: c.exchangeName('missing-ae') });
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'k');
    await publishConfirmed(ch, x, 'nowhere', 'dropped');
    await publishConfirmed(ch, x, 'k', 'kept');
    assert.deepEqual(await drain(ch, q), ['kept']);
  });

  it('terminates when alternate exchanges form a loop', async (t) => {
    const c = await suite.context(t);
    const a = c.exchangeName('ae-a');
    const b = c.exchangeName('ae-b');
    const ch = await c.confirmChannel();
    await ch.assertExchange(a, 'direct', { durable: false, alternateExchange: b });
    await ch.assertExchange(b, 'direct', { durable: false, alternateExchange: a });
    const q = await c.queue();
    await ch.bindQueue(q, b, 'to-b');
    const returns = collectReturns(ch);
    await publishConfirmed(ch, a, 'to-b', 'via-b');
    await publishConfirmed(ch, a, 'nowhere', 'loop', { mandatory: true });
    assert.deepEqual(await drain(ch, q), ['via-b']);
    const [r] = await returns.waitFor(1);
    assert.equal(r!.content.toString(), 'loop');
  });
});

describe('sender-selected distribution (CC / BCC headers)', () => {
  it('also routes to the routing keys listed in CC and BCC, removing BCC from the delivered message', async (t) => {
    const c = await suite.context(t);
    const x = await c.exchange('direct');
    const ch = await c.confirmChannel();
    const queues = [c.queueName(), c.queueName(), c.queueName(), c.queueName()];
    const keys = ['main', 'cc1', 'bcc1', 'unrelated'];
    for (const [i, q] of queues.entries()) {
      await ch.assertQueue(q, { durable: false });
      await ch.bindQueue(q, x, keys[i]!);
    }
    await publishConfirmed(ch, x, 'main', 'ssd', { CC: 'cc1', BCC: ['bcc1'] } as never);
    await publishConfirmed(ch, x, 'main', 'headers', { headers: { CC: ['cc1'], BCC: ['bcc1'] } });
    const results = [];
    for (const q of queues) {
      const msgs = [];
      for (;;) {
        const m = await ch.get(q, { noAck: true });
        if (m === false) break;
        msgs.push({ body: m.content.toString(), headers: m.properties.headers });
      }
      results.push(msgs);
    }
    const delivered = [{ body: 'ssd', headers: { CC: ['cc1'] } }, { body: 'headers', headers: { CC: ['cc1'] } }];
    assert.deepEqual(results, [delivered, delivered, delivered, []]);
  });
});
