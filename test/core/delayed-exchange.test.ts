import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VHost } from '../../src/core/vhost';
import { PolicyStore } from '../../src/core/policy';
import { Message } from '../../src/core/message';
import { DelayedExchange, type DelayStores } from '../../src/core/exchanges/delayed';
import { encodeProperties } from '../../src/protocol/properties';
import { DelayStore } from '../../src/store/delay-store';

interface Setup {
  vhost: VHost;
  x: DelayedExchange;
  durable: DelayStore;
  scratch: DelayStore;
  drained(): string[];
}

function setup(t: { after(fn: () => Promise<void> | void): void }): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'warren-dx-'));
  const durable = DelayStore.open({ dir: join(dir, 'durable'), durable: true, bucketMs: 5, lookaheadMs: 5 });
  const scratch = DelayStore.open({ dir: join(dir, 'scratch'), durable: false, bucketMs: 5, lookaheadMs: 5 });
  const stores: DelayStores = { durable, scratch: () => scratch };
  const vhost = new VHost('/', new PolicyStore(), null, {}, null, stores);
  t.after(async () => {
    await durable.close();
    await scratch.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const x = vhost.declareExchange({
    name: 'dx',
    type: 'x-delayed-message',
    durable: true,
    autoDelete: false,
    internal: false,
    passive: false,
    arguments: [['x-delayed-type', { type: 'S', value: Buffer.from('direct') }]],
  }) as DelayedExchange;
  const { queue } = vhost.declareQueue({ name: 'q', passive: false, durable: true, exclusiveOwner: null, autoDelete: false, arguments: [] }, {});
  vhost.bind(x, queue, 'k', []);
  return {
    vhost,
    x,
    durable,
    scratch,
    drained: () => {
      const out: string[] = [];
      for (let e = queue.get(true); e !== undefined; e = queue.get(true)) out.push(e.msg.body.toString());
      return out;
    },
  };
}

function message(body: string, delay: number, persistent: boolean, routingKey = 'k'): Message {
  const props = encodeProperties({ deliveryMode: persistent ? 2 : 1, headers: [['x-delay', { type: 'I', value: delay }]] });
  return new Message('dx', routingKey, props, Buffer.from(body));
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

describe('delayed exchange over the delay stores', () => {
  it('keeps publish order for equal due times across persistent and transient messages', async (t) => {
    const s = setup(t);
    const bodies: string[] = [];
    // One due time for all (the clock is read once per publish: pin it).
    const realNow = Date.now;
    const now = realNow();
    Date.now = () => now;
    try {
      for (let i = 0; i < 200; i++) {
        bodies.push(`m${i}`);
        assert.equal(s.vhost.publish(s.x, message(`m${i}`, 40, i % 3 !== 0)), 1);
        assert.ok(s.vhost.lastPublishHeld);
      }
    } finally {
      Date.now = realNow;
    }
    assert.equal(s.x.heldCount, 200);
    assert.equal(s.durable.pending, 133);
    assert.equal(s.scratch.pending, 67);
    const got: string[] = [];
    await until(() => {
      got.push(...s.drained());
      return got.length === 200;
    });
    assert.deepEqual(got, bodies);
    assert.equal(s.x.heldCount, 0);
    assert.equal(s.x.released, 200);
  });

  it('returns a held mandatory message that finds no route, once', async (t) => {
    const s = setup(t);
    const returned: string[] = [];
    const target = { returnUnroutable: (m: Message) => returned.push(m.body.toString()) };
    s.vhost.publish(s.x, message('lost', 10, true, 'nowhere'));
    s.vhost.returnHeldTo(target);
    s.vhost.publish(s.x, message('kept', 10, true));
    s.vhost.returnHeldTo(target);
    s.vhost.publish(s.x, message('lost-quietly', 10, false, 'nowhere'));
    await until(() => s.x.heldCount === 0);
    assert.deepEqual(returned, ['lost']);
    assert.deepEqual(s.drained(), ['kept']);
  });

  it('drops pending messages and their files when the exchange is deleted', async (t) => {
    const s = setup(t);
    for (let i = 0; i < 50; i++) s.vhost.publish(s.x, message(`m${i}`, 60_000 + i * 10, i % 2 === 0));
    assert.equal(s.x.heldCount, 50);
    assert.ok(readdirSync(s.durable.dir).length > 0);
    s.vhost.deleteExchange('dx', false);
    assert.equal(s.x.heldCount, 0);
    assert.deepEqual(readdirSync(s.durable.dir), []);
    assert.deepEqual(readdirSync(s.scratch.dir), []);
    assert.equal(s.durable.pending + s.scratch.pending, 0);
  });

  it('routes CC keys of a released message and keeps its BCC keys', async (t) => {
    const s = setup(t);
    const { queue: q2 } = s.vhost.declareQueue({ name: 'q2', passive: false, durable: true, exclusiveOwner: null, autoDelete: false, arguments: [] }, {});
    s.vhost.bind(s.x, q2, 'cc', []);
    const props = encodeProperties({
      deliveryMode: 2,
      headers: [
        ['x-delay', { type: 'I', value: 10 }],
        ['CC', { type: 'A', value: [{ type: 'S', value: Buffer.from('cc') }] }],
      ],
    });
    const msg = new Message('dx', 'k', props, Buffer.from('both'));
    msg.bcc = ['hidden'];
    s.vhost.publish(s.x, msg);
    await until(() => q2.messageCount === 1);
    const e = q2.get(true)!;
    assert.equal(e.msg.body.toString(), 'both');
    assert.deepEqual(e.msg.bcc, ['hidden']);
    assert.deepEqual(s.drained(), ['both']);
  });
});
