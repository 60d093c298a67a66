import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from 'amqplib';
import {
  clearPolicy,
  collectReturns,
  consume,
  deadLetterSink,
  drain,
  e2eSuite,
  messageCount,
  publishConfirmed,
  sleep,
  uniq,
  withPolicy,
  withTimeout,
  xDeath,
  type Ctx,
} from './fixture';

const suite = e2eSuite();

const bodies = (ms: Message[]): string[] => ms.map((m) => m.content.toString());

/** A unique name prefix for a test's queues/exchanges and the policy pattern matching only them. */
function family(c: Ctx): { name: string; pattern: string; queue(suffix: string): string; exchange(suffix: string): string } {
  const name = uniq('pol');
  return {
    name,
    pattern: `^${name.replace(/\./g, '\\.')}\\.`,
    queue: (suffix) => c.trackQueue(`${name}.${suffix}`),
    exchange: (suffix) => c.trackExchange(`${name}.${suffix}`),
  };
}

describe('policies', () => {
  it('applies message-ttl to existing and new matching queues, and stops when cleared', async (t) => {
    const c = await suite.context(t);
    const f = family(c);
    const sink = await deadLetterSink(c);
    const ch = await c.confirmChannel();
    const existing = f.queue('existing');
    await ch.assertQueue(existing, { durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });
    await withPolicy(t, suite.broker, { name: f.name, pattern: f.pattern, definition: { 'message-ttl': 100 }, priority: 1 });
    const fresh = f.queue('new');
    await ch.assertQueue(fresh, { durable: false, arguments: { 'x-dead-letter-exchange': sink.exchange } });

    const t0 = Date.now();
    await publishConfirmed(ch, '', existing, 'old-queue');
    await publishConfirmed(ch, '', fresh, 'new-queue');
    const dead = await sink.received.waitFor(2);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 95, `expired after ${elapsed} ms`);
    assert.deepEqual(bodies(dead).sort(), ['new-queue', 'old-queue']);
    for (const m of dead) {
      assert.equal(xDeath(m)[0]!.reason, 'expired');
      assert.equal(xDeath(m)[0]!['original-expiration'], undefined);
    }

    await clearPolicy(suite.broker, f.name);
    await publishConfirmed(ch, '', existing, 'kept');
    await sleep(300);
    assert.deepEqual(await drain(ch, existing), ['kept']);
  });

  it('applies max-length with the dead-letter exchange and routing key of the policy, trimming an existing queue', async (t) => {
    const c = await suite.context(t);
    const f = family(c);
    const sink = await deadLetterSink(c);
    const ch = await c.confirmChannel();
    const q = f.queue('q');
    await ch.assertQueue(q, { durable: false });
    for (const b of ['m1', 'm2', 'm3']) ch.sendToQueue(q, Buffer.from(b));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');

    await withPolicy(t, suite.broker, {
      name: f.name,
      pattern: f.pattern,
      definition: { 'max-length': 1, 'dead-letter-exchange': sink.exchange, 'dead-letter-routing-key': 'pk' },
    });
    const trimmed = await sink.received.waitFor(2);
    assert.deepEqual(bodies(trimmed), ['m1', 'm2']);
    for (const m of trimmed) {
      assert.deepEqual([m.fields.routingKey, xDeath(m)[0]!.reason, xDeath(m)[0]!.queue, xDeath(m)[0]!['routing-keys']], ['pk', 'maxlen', q, [q]]);
    }
    assert.equal(await messageCount(ch, q), 1);

    const got = await ch.get(q);
    assert.ok(got);
    assert.equal(got.content.toString(), 'm3');
    ch.reject(got, false);
    const [rejected] = await sink.received.waitFor(3).then((ms) => ms.slice(2));
    assert.deepEqual([rejected!.content.toString(), rejected!.fields.routingKey, xDeath(rejected!)[0]!.reason], ['m3', 'pk', 'rejected']);
  });

  it('lets the smaller TTL and max-length win between queue arguments and a policy, and the argument win for the dead-letter exchange', async (t) => {
    const c = await suite.context(t);
    const f = family(c);
    const argSink = await deadLetterSink(c);
    const policySink = await deadLetterSink(c);
    const ch = await c.confirmChannel();
    // Argument TTL smaller than the policy's; argument DLX set.
    const a = f.queue('a');
    await ch.assertQueue(a, { durable: false, arguments: { 'x-message-ttl': 100, 'x-dead-letter-exchange': argSink.exchange } });
    // Policy TTL and max-length smaller than the arguments; no DLX argument.
    const b = f.queue('b');
    await ch.assertQueue(b, { durable: false, arguments: { 'x-message-ttl': 60000, 'x-max-length': 5 } });
    await withPolicy(t, suite.broker, {
      name: f.name,
      pattern: f.pattern,
      definition: { 'message-ttl': 500, 'max-length': 2, 'dead-letter-exchange': policySink.exchange },
    });

    const t0 = Date.now();
    await publishConfirmed(ch, '', a, 'a1');
    for (const m of ['b1', 'b2', 'b3']) ch.sendToQueue(b, Buffer.from(m));
    await withTimeout(ch.waitForConfirms(), 5000, 'confirms');

    // b: max-length 2 (policy) drops b1 at once to the policy's DLX.
    const [first] = await policySink.received.waitFor(1);
    assert.deepEqual([first!.content.toString(), xDeath(first!)[0]!.reason], ['b1', 'maxlen']);
    // a: TTL 100 (argument) to the argument's DLX.
    const [fromA] = await argSink.received.waitFor(1);
    const aElapsed = Date.now() - t0;
    assert.deepEqual([fromA!.content.toString(), xDeath(fromA!)[0]!.reason], ['a1', 'expired']);
    assert.ok(aElapsed >= 95 && aElapsed < 450, `a expired after ${aElapsed} ms, expected its own 100 ms TTL`);
    // b: TTL 500 (policy) rather than 60 s.
    const rest = await policySink.received.waitFor(3);
    const bElapsed = Date.now() - t0;
    assert.deepEqual(bodies(rest.slice(1)), ['b2', 'b3']);
    assert.ok(bElapsed >= 495 && bElapsed < 1500, `b expired after ${bElapsed} ms, expected the policy's 500 ms TTL`);
    assert.equal(policySink.received.messages.length, 3);
    assert.equal(argSink.received.messages.length, 1);
  });

  it('applies only the highest-priority matching policy; definitions are not merged', async (t) => {
    const c = await suite.context(t);
    const f = family(c);
    const sink = await deadLetterSink(c);
    const ch = await c.confirmChannel();
    const q = f.queue('q');
    await withPolicy(t, suite.broker, { name: `${f.name}-low`, pattern: f.pattern, definition: { 'max-length': 1 }, priority: 1 });
    await withPolicy(t, suite.broker, { name: `${f.name}-high`, pattern: f.pattern, definition: { 'dead-letter-exchange': sink.exchange }, priority: 2 });
    await ch.assertQueue(q, { durable: false });
    await publishConfirmed(ch, '', q, 'one');
    await publishConfirmed(ch, '', q, 'two');
    // The lower-priority max-length does not apply.
    assert.equal(await messageCount(ch, q), 2);
    const got = await ch.get(q);
    assert.ok(got);
    ch.reject(got, false);
    const [m] = await sink.received.waitFor(1);
    assert.deepEqual([m!.content.toString(), xDeath(m!)[0]!.reason], ['one', 'rejected']);
  });

  it('applies alternate-exchange to exchanges, with the exchange argument taking precedence', async (t) => {
    const c = await suite.context(t);
    const f = family(c);
    const ch = await c.confirmChannel();
    const policyAe = await c.exchange('fanout');
    const argAe = await c.exchange('fanout');
    const viaPolicy = await c.queue();
    const viaArg = await c.queue();
    await ch.bindQueue(viaPolicy, policyAe, '');
    await ch.bindQueue(viaArg, argAe, '');
    const plain = f.exchange('plain');
    const withArg = f.exchange('with-arg');
    await ch.assertExchange(plain, 'direct', { durable: false });
    await ch.assertExchange(withArg, 'direct', { durable: false, alternateExchange: argAe });
    await withPolicy(t, suite.broker, { name: f.name, pattern: f.pattern, applyTo: 'exchanges', definition: { 'alternate-exchange': policyAe } });

    const policyGot = await consume(ch, viaPolicy, { noAck: true });
    const argGot = await consume(ch, viaArg, { noAck: true });
    const returns = collectReturns(ch);
    await publishConfirmed(ch, plain, 'nowhere', 'p', { mandatory: true });
    await publishConfirmed(ch, withArg, 'nowhere', 'a', { mandatory: true });
    await policyGot.waitFor(1);
    await argGot.waitFor(1);
    assert.deepEqual([bodies(policyGot.messages), bodies(argGot.messages), returns.messages.length], [['p'], ['a'], 0]);
  });
});
