// Delayed delivery: exchange type x-delayed-message as the rabbitmq_delayed_message_exchange
// plugin defines it. Debian's RabbitMQ ships without the plugin, so these tests run only
// against Warren. Assumptions where the plugin could not be observed:
//  - a missing or unknown x-delayed-type is refused with the plugin's 406 text;
//  - x-delay 0, negative or absent routes at once;
//  - publisher confirms come at publish time (the message is stored), not at delivery;
//  - mandatory is judged when the delay ends: an unroutable message is returned (312 NO_ROUTE)
//    to the publishing channel then, a routable one is never returned. (The plugin itself
//    returns every delayed mandatory message at once, since nothing is routed at publish time.)

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Message, Options } from 'amqplib';
import { Collector, collectReturns, consume, e2eSuite, messageCount, publishConfirmed, rejectsWithClose, warrenOnly, withTimeout, type Ctx } from './fixture';

const suite = e2eSuite();

const NO_PLUGIN = "Debian's RabbitMQ lacks the rabbitmq_delayed_message_exchange plugin";

const bodies = (ms: Message[]): string[] => ms.map((m) => m.content.toString());

/** A delay may not end early; both clocks round to the millisecond. */
const EARLY_SLACK_MS = 5;
const LATE_SLACK_MS = 1000;

async function delayedExchange(c: Ctx, type: string, options: Options.AssertExchange = {}): Promise<string> {
  return c.exchange('x-delayed-message', { durable: false, ...options, arguments: { 'x-delayed-type': type, ...options.arguments } });
}

const delay = (ms: number | undefined, headers: Record<string, unknown> = {}): Options.Publish =>
  ({ headers: ms === undefined ? headers : { ...headers, 'x-delay': ms } });

describe('x-delayed-message exchanges', () => {
  it('refuses a declare without x-delayed-type, or with an unknown one, with 406', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    for (const args of [{}, { 'x-delayed-type': 'bogus' }]) {
      const ch = await c.channel();
      const err = await rejectsWithClose(ch.assertExchange(c.exchangeName(), 'x-delayed-message', { durable: false, arguments: args }));
      assert.equal(err.code, 406);
      assert.equal(err.text, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type");
      assert.deepEqual([err.classId, err.methodId], [40, 10]);
    }
  });

  it('declares with every x-delayed-type and accepts an equivalent redeclare', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const ch = await c.channel();
    for (const type of ['direct', 'topic', 'fanout', 'headers']) {
      const x = await delayedExchange(c, type);
      await ch.assertExchange(x, 'x-delayed-message', { durable: false, arguments: { 'x-delayed-type': type } });
      await ch.checkExchange(x);
    }
  });

  it('routes a message no earlier than its x-delay, confirming the publish at once', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'direct');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'k');
    const got = await consume(await c.channel(), q, { noAck: true });
    const t0 = Date.now();
    await publishConfirmed(ch, x, 'k', 'later', delay(250, { app: 1 }));
    const confirmedAfter = Date.now() - t0;
    assert.ok(confirmedAfter < 200, `confirmed only after ${confirmedAfter} ms`);
    assert.equal(await messageCount(ch, q), 0);
    assert.equal(got.messages.length, 0);

    const [m] = await got.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 250 - EARLY_SLACK_MS && elapsed < 250 + LATE_SLACK_MS, `delivered after ${elapsed} ms`);
    assert.equal(m!.content.toString(), 'later');
    assert.deepEqual([m!.fields.exchange, m!.fields.routingKey], [x, 'k']);
    assert.equal(m!.properties.headers?.app, 1);
  });

  it('delivers in due-time order, not publish order', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'direct');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'k');
    const got = new Collector();
    const arrivals: Record<string, number> = {};
    const t0 = Date.now();
    await (await c.channel()).consume(
      q,
      (m) => {
        if (m === null) return;
        arrivals[m.content.toString()] = Date.now() - t0;
        got.push(m);
      },
      { noAck: true },
    );
    for (const [body, ms] of [
      ['c', 300],
      ['a', 100],
      ['b', 200],
    ] as const)
      ch.publish(x, 'k', Buffer.from(body), delay(ms));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await got.waitFor(3);
    assert.deepEqual(bodies(got.messages), ['a', 'b', 'c']);
    for (const [body, ms] of [
      ['a', 100],
      ['b', 200],
      ['c', 300],
    ] as const)
      assert.ok(arrivals[body]! >= ms - EARLY_SLACK_MS, `${body} arrived after ${arrivals[body]} ms, before its ${ms} ms delay`);
  });

  it('routes at once when x-delay is 0, negative or absent', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'direct');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'k');
    const got = await consume(await c.channel(), q, { noAck: true });
    const t0 = Date.now();
    ch.publish(x, 'k', Buffer.from('delayed'), delay(400));
    ch.publish(x, 'k', Buffer.from('zero'), delay(0));
    ch.publish(x, 'k', Buffer.from('negative'), delay(-500));
    ch.publish(x, 'k', Buffer.from('absent'), delay(undefined));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await got.waitFor(3);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 300, `immediate messages took ${elapsed} ms`);
    assert.deepEqual(bodies(got.messages), ['zero', 'negative', 'absent']);
    await got.waitFor(4);
    assert.equal(got.messages[3]!.content.toString(), 'delayed');
  });

  it('routes as a topic exchange with x-delayed-type topic', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'topic');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'a.*');
    const got = await consume(await c.channel(), q, { noAck: true });
    // 'x.y' is due first: had it matched it would arrive before 'a.b'.
    ch.publish(x, 'x.y', Buffer.from('x.y'), delay(100));
    ch.publish(x, 'a.b', Buffer.from('a.b'), delay(150));
    ch.publish(x, 'a.b.c', Buffer.from('a.b.c'), delay(120));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await got.waitFor(1);
    assert.deepEqual(bodies(got.messages), ['a.b']);
    assert.equal(await messageCount(ch, q), 0);
  });

  it('routes as a fanout exchange with x-delayed-type fanout', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'fanout');
    const q1 = await c.queue();
    const q2 = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q1, x, '');
    await ch.bindQueue(q2, x, 'ignored');
    const g1 = await consume(ch, q1, { noAck: true });
    const g2 = await consume(ch, q2, { noAck: true });
    const t0 = Date.now();
    await publishConfirmed(ch, x, 'any', 'fan', delay(150));
    await g1.waitFor(1);
    await g2.waitFor(1);
    assert.ok(Date.now() - t0 >= 150 - EARLY_SLACK_MS);
  });

  it('routes as a headers exchange with x-delayed-type headers', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'headers');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, '', { 'x-match': 'all', kind: 'wanted' });
    const got = await consume(await c.channel(), q, { noAck: true });
    ch.publish(x, '', Buffer.from('other'), delay(100, { kind: 'other' }));
    ch.publish(x, '', Buffer.from('wanted'), delay(150, { kind: 'wanted' }));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    await got.waitFor(1);
    assert.deepEqual(bodies(got.messages), ['wanted']);
  });

  it('returns a mandatory message that is unroutable when its delay ends, and only that one', async (t) => {
    if (!warrenOnly(t, NO_PLUGIN)) return;
    const c = await suite.context(t);
    const x = await delayedExchange(c, 'direct');
    const q = await c.queue();
    const ch = await c.confirmChannel();
    await ch.bindQueue(q, x, 'bound');
    const got = await consume(await c.channel(), q, { noAck: true });
    const returns = collectReturns(ch);
    const t0 = Date.now();
    ch.publish(x, 'bound', Buffer.from('routable'), { mandatory: true, ...delay(100) });
    ch.publish(x, 'nowhere', Buffer.from('unroutable'), { mandatory: true, ...delay(200) });
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');
    assert.equal(returns.messages.length, 0);

    await got.waitFor(1);
    const [r] = await returns.waitFor(1);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 200 - EARLY_SLACK_MS, `returned after ${elapsed} ms, before the delay ended`);
    assert.deepEqual(
      [r!.fields.replyCode, r!.fields.replyText, r!.fields.exchange, r!.fields.routingKey, r!.content.toString()],
      [312, 'NO_ROUTE', x, 'nowhere', 'unroutable'],
    );
    assert.deepEqual(bodies(got.messages), ['routable']);
    assert.equal(returns.messages.length, 1);
  });
});
