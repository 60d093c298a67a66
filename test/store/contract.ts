// The MessageStore contract: what the broker core may rely on, whichever store it is given.
// Every implementation runs this same suite (memory-store.test.ts, segment-store.test.ts);
// "restart" is a broker restart, which for the memory store keeps the process's own state.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { MessageStore } from '../../src/store/message-store';
import { checkBody, message, nextTurn, prng, recoveredIds, synced } from './helpers';

export interface StoreHarness {
  /** A new, empty store. */
  open(): MessageStore;
  /** A clean broker restart: close, then open the same storage again. */
  restart(store: MessageStore): Promise<MessageStore>;
}

const Q1 = '/\u0000orders';
const Q2 = '/\u0000audit';
const Q3 = 'vh\u0000ünïcode queue';

export function messageStoreContract(name: string, makeHarness: (t: TestContext) => StoreHarness): void {
  describe(`MessageStore contract: ${name}`, () => {
    /** Opens a store and closes whatever the test ends with. */
    function setup(t: TestContext): { harness: StoreHarness; store: MessageStore; track(s: MessageStore): MessageStore } {
      const harness = makeHarness(t);
      const open = new Set<MessageStore>();
      t.after(async () => {
        for (const s of open) await s.close();
      });
      const track = (s: MessageStore): MessageStore => {
        open.add(s);
        return s;
      };
      return { harness, store: track(harness.open()), track };
    }

    it('recovers published messages in publish order, not marked redelivered', async (t) => {
      const { harness, store, track } = setup(t);
      const ids = [1, 2, 3, 4, 5].map((n) => store.publish(message(n), [Q1]));
      await synced(store);
      const after = track(await harness.restart(store));
      const q = after.recover().get(Q1);
      assert.ok(q);
      assert.deepEqual(Array.from(q.ids), ids);
      assert.deepEqual(Array.from(q.redelivered), [0, 0, 0, 0, 0]);
      assert.deepEqual(ids.map((id) => checkBody(after.read(id).body)), [1, 2, 3, 4, 5]);
    });

    it('does not bring back an acked message', async (t) => {
      const { harness, store, track } = setup(t);
      const ids = [1, 2, 3, 4].map((n) => store.publish(message(n), [Q1]));
      store.ack(Q1, ids[0]!);
      store.ack(Q1, ids[2]!);
      await synced(store);
      const after = track(await harness.restart(store));
      assert.deepEqual(recoveredIds(after, Q1), [ids[1], ids[3]]);
      assert.throws(() => after.read(ids[0]!), RangeError);
    });

    it('brings back a delivered, unacked message marked redelivered', async (t) => {
      const { harness, store, track } = setup(t);
      const ids = [1, 2, 3].map((n) => store.publish(message(n), [Q1]));
      store.delivered(Q1, ids[0]!);
      store.delivered(Q1, ids[1]!);
      store.ack(Q1, ids[1]!);
      await synced(store);
      const after = track(await harness.restart(store));
      const q = after.recover().get(Q1)!;
      assert.deepEqual(Array.from(q.ids), [ids[0], ids[2]]);
      assert.deepEqual(Array.from(q.redelivered), [1, 0]);
    });

    it('reads back exactly what was published, including empty and binary parts', async (t) => {
      const { harness, store, track } = setup(t);
      const props = Buffer.from([0xff, 0xfc, 0, 1, 2, 3, 0xfe, 0]);
      const cases = [
        { exchange: '', routingKey: '', properties: Buffer.alloc(0), body: Buffer.alloc(0) },
        { exchange: 'ëxchange-ü', routingKey: 'a.b.ç', properties: props, body: Buffer.from([0, 1, 2, 255]) },
        { exchange: 'x'.repeat(255), routingKey: 'k'.repeat(255), properties: props, body: Buffer.alloc(300_000, 7) },
      ];
      const ids = cases.map((m, i) => store.publish(m, [Q1], 1_700_000_000_000 + i));
      await synced(store);
      const check = (s: MessageStore): void =>
        cases.forEach((m, i) => {
          const got = s.read(ids[i]!);
          assert.equal(got.exchange, m.exchange);
          assert.equal(got.routingKey, m.routingKey);
          assert.deepEqual(got.properties, m.properties);
          assert.deepEqual(got.body, m.body);
          assert.equal(got.publishedAt, 1_700_000_000_000 + i);
        });
      check(store);
      check(track(await harness.restart(store)));
    });

    it('refuses reads and publishes once closed', async (t) => {
      const { harness } = setup(t);
      const s = harness.open();
      const id = s.publish(message(1), [Q1]);
      await s.close();
      assert.throws(() => s.read(id), /closed/);
      assert.throws(() => s.publish(message(2), [Q1]), /closed/);
      s.ack(Q1, id); // ignored: channels may settle after the store is gone
    });

    it('stores a message routed to several queues once, until every queue lets go', async (t) => {
      const { harness, store, track } = setup(t);
      const id = store.publish(message(7), [Q1, Q2, Q3]);
      assert.equal(store.stats().messages, 1);
      store.ack(Q1, id);
      store.delivered(Q2, id);
      await synced(store);
      let s = track(await harness.restart(store));
      assert.deepEqual(recoveredIds(s, Q1), []);
      assert.deepEqual(recoveredIds(s, Q2), [id]);
      assert.deepEqual(Array.from(s.recover().get(Q2)!.redelivered), [1]);
      assert.deepEqual(Array.from(s.recover().get(Q3)!.redelivered), [0]);
      assert.equal(checkBody(s.read(id).body), 7);
      s.ack(Q2, id);
      assert.equal(checkBody(s.read(id).body), 7, 'still held by Q3');
      s.ack(Q3, id);
      assert.equal(s.stats().messages, 0);
      assert.throws(() => s.read(id), RangeError);
      await synced(s);
      s = track(await harness.restart(s));
      assert.equal(s.recover().size, 0);
    });

    it('deletes a queue with its delivered and undelivered messages, leaving other queues alone', async (t) => {
      const { harness, store, track } = setup(t);
      const a = store.publish(message(1), [Q1, Q2]);
      const b = store.publish(message(2), [Q1]);
      store.delivered(Q1, a);
      store.deleteQueue(Q1);
      // The broker still settles deliveries of the deleted queue: those acks must be ignored.
      store.ack(Q1, a);
      store.ack(Q1, b);
      assert.throws(() => store.read(b), RangeError);
      // Declared again under the same key, it is a new, empty queue.
      const c = store.publish(message(3), [Q1]);
      await synced(store);
      const s = track(await harness.restart(store));
      assert.deepEqual(recoveredIds(s, Q1), [c]);
      assert.deepEqual(recoveredIds(s, Q2), [a]);
      assert.equal(checkBody(s.read(a).body), 1);
    });

    it('keeps an ack made just before its queue is deleted in the same turn', async (t) => {
      const { harness, store, track } = setup(t);
      const a = store.publish(message(1), [Q1]);
      const b = store.publish(message(2), [Q1, Q2]);
      await synced(store);
      store.ack(Q1, b); // b leaves Q1 first: the delete below only covers up to a
      store.deleteQueue(Q1);
      await synced(store);
      const s = track(await harness.restart(store));
      assert.deepEqual(recoveredIds(s, Q1), []);
      assert.deepEqual(recoveredIds(s, Q2), [b]);
      assert.ok(a < b);
    });

    it('keeps ids increasing across restarts', async (t) => {
      const { harness, store, track } = setup(t);
      const first = store.publish(message(1), [Q1]);
      const second = store.publish(message(2), [Q1]);
      assert.ok(second > first);
      store.ack(Q1, first);
      store.ack(Q1, second);
      await synced(store);
      const s = track(await harness.restart(store));
      const third = s.publish(message(3), [Q1]);
      assert.ok(third > second, `${third} > ${second}`);
      assert.ok(Number.isSafeInteger(third));
    });

    it('runs afterSync callbacks once each, in registration order', async (t) => {
      const { store } = setup(t);
      const order: string[] = [];
      store.publish(message(1), [Q1]);
      store.afterSync(() => order.push('a'));
      store.publish(message(2), [Q1]);
      store.afterSync(() => order.push('b'));
      await nextTurn();
      store.afterSync(() => order.push('c')); // nothing new appended: still called, asynchronously
      assert.ok(!order.includes('c'));
      await synced(store);
      await synced(store);
      assert.deepEqual(order, ['a', 'b', 'c']);
    });

    it('runs pending afterSync callbacks when closed', async (t) => {
      const { harness } = setup(t);
      const s = harness.open();
      s.publish(message(1), [Q1]);
      let called = 0;
      s.afterSync((err) => {
        assert.equal(err, null);
        called++;
      });
      await s.close();
      assert.equal(called, 1);
    });

    it('ignores acks and delivered marks for unknown pairs, and repeated acks', async (t) => {
      const { harness, store, track } = setup(t);
      const a = store.publish(message(1), [Q1, Q2]);
      const b = store.publish(message(2), [Q1]);
      store.ack(Q1, a);
      store.ack(Q1, a);
      store.ack(Q3, b);
      store.ack(Q1, 999_999);
      store.delivered(Q3, b);
      store.delivered('nope', 1);
      await synced(store);
      const s = track(await harness.restart(store));
      assert.deepEqual(recoveredIds(s, Q1), [b]);
      assert.deepEqual(recoveredIds(s, Q2), [a]);
      assert.equal(s.recover().has(Q3), false);
    });

    it('refuses a publish to no queue', (t) => {
      const { store } = setup(t);
      assert.throws(() => store.publish(message(1), []), RangeError);
    });

    it('agrees with a model over a random run of publishes, acks, deliveries, deletes and restarts', async (t) => {
      const seed = Number(process.env.STORE_SEED ?? Date.now() % 100_000);
      const rnd = prng(seed);
      const { harness, track } = setup(t);
      let store = track(harness.open());
      const queues = [Q1, Q2, Q3, 'x\u0000q4'];
      // queue -> id -> delivered
      const model = new Map<string, Map<number, boolean>>(queues.map((q) => [q, new Map()]));
      const body = new Map<number, number>();
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const check = (): void => {
        const inv = (store as { checkInvariants?: () => string[] }).checkInvariants?.() ?? [];
        assert.deepEqual(inv, [], `seed ${seed}`);
        const got = store.recover();
        for (const q of queues) {
          const want = [...model.get(q)!];
          const r = got.get(q);
          assert.deepEqual(r === undefined ? [] : Array.from(r.ids), want.map(([id]) => id), `seed ${seed}, ${q}`);
          if (r !== undefined) assert.deepEqual(Array.from(r.redelivered), want.map(([, d]) => (d ? 1 : 0)), `seed ${seed}`);
          for (const [id] of want) assert.equal(checkBody(store.read(id).body), body.get(id), `seed ${seed}`);
        }
      };
      for (let step = 0; step < 3000; step++) {
        const r = rnd();
        if (r < 0.4) {
          const targets = queues.filter(() => rnd() < 0.4);
          if (targets.length === 0) targets.push(pick(queues));
          const n = step;
          const id = store.publish(message(n, 16 + Math.floor(rnd() * 3000)), targets);
          body.set(id, n);
          for (const q of targets) model.get(q)!.set(id, false);
        } else if (r < 0.75) {
          const q = pick(queues);
          const held = [...model.get(q)!.keys()];
          if (held.length === 0) continue;
          // Mostly the oldest, as consumers do, sometimes any.
          const id = rnd() < 0.7 ? held[0]! : pick(held);
          store.ack(q, id);
          model.get(q)!.delete(id);
        } else if (r < 0.9) {
          const q = pick(queues);
          const held = [...model.get(q)!.keys()];
          if (held.length === 0) continue;
          const id = pick(held.slice(0, 20));
          store.delivered(q, id);
          model.get(q)!.set(id, true);
        } else if (r < 0.905) {
          const q = pick(queues);
          store.deleteQueue(q);
          model.get(q)!.clear();
        } else if (r < 0.908) {
          await synced(store);
          store = track(await harness.restart(store));
          check();
        } else if (r < 0.95) {
          await nextTurn();
          if (step % 50 === 0) check();
        }
      }
      check();
      await synced(store);
      store = track(await harness.restart(store));
      check();
    });
  });
}
