import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as amqp from 'amqplib';
import { enc, managementSuite, uniq } from './fixture';

const mgmt = managementSuite();

async function publish(queue: string, payload: string | Buffer, properties: Record<string, unknown> = {}): Promise<void> {
  const body = Buffer.isBuffer(payload)
    ? { routing_key: queue, payload: payload.toString('base64'), payload_encoding: 'base64', properties }
    : { routing_key: queue, payload, payload_encoding: 'string', properties };
  const r = await mgmt.api('/api/exchanges/%2F/amq.default/publish', { method: 'POST', body });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { routed: true });
}

describe('PUT /api/queues/vhost/name', () => {
  it('creates a queue (201), then accepts an equivalent redeclare (204)', async () => {
    const q = uniq('q');
    const r1 = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: true, arguments: { 'x-max-length': 100 } } });
    assert.equal(r1.status, 201);
    assert.equal(r1.text, '');
    const r2 = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: true, arguments: { 'x-max-length': 100 } } });
    assert.equal(r2.status, 204);
    const g = await mgmt.api(`/api/queues/%2F/${q}`);
    assert.equal(g.status, 200);
    assert.equal(g.json.name, q);
    assert.equal(g.json.vhost, '/');
    assert.equal(g.json.durable, true);
    assert.equal(g.json.auto_delete, false);
    assert.equal(g.json.exclusive, false);
    assert.deepEqual(g.json.arguments, { 'x-max-length': 100 });
    assert.equal(g.json.type, 'classic');
    assert.equal(g.json.state, 'running');
    assert.deepEqual(g.json.consumer_details, []);
    for (const k of ['messages', 'messages_ready', 'messages_unacknowledged']) {
      assert.equal(g.json[k], 0);
      assert.deepEqual(g.json[`${k}_details`], { rate: 0 });
    }
  });

  it('defaults to durable false and auto_delete false, as RabbitMQ', async () => {
    const q = uniq('q');
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT' })).status, 201);
    const g = await mgmt.api(`/api/queues/%2F/${q}`);
    assert.equal(g.json.durable, false);
    assert.equal(g.json.auto_delete, false);
  });

  it('accepts rabbitmqadmin\'s string booleans', async () => {
    const q = uniq('q');
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: 'true', auto_delete: 'false' } })).status, 201);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.durable, true);
  });

  it('refuses an inequivalent redeclare with 400 and RabbitMQ\'s reason', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: true } });
    const r = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: false } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, {
      error: 'bad_request',
      reason: `inequivalent arg 'durable' for queue '${q}' in vhost '/': received 'false' but current is 'true'`,
    });
  });

  it('answers bad JSON with 400 not_json and creates nothing', async () => {
    const q = uniq('q');
    const r = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: '{bad' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: 'not_json' });
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).status, 404);
  });

  it('answers a wrongly typed field with 400 and creates nothing', async () => {
    const q = uniq('q');
    const r = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: 'yes' } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: ['not_boolean', 'yes'] });
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).status, 404);
  });

  it('validates queue arguments as queue.declare does', async () => {
    const q = uniq('q');
    const r = await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { arguments: { 'x-max-length': 'abc' } } });
    assert.equal(r.status, 400);
    assert.equal(r.json.reason, `invalid arg 'x-max-length' for queue '${q}' in vhost '/': "expected integer, got longstr"`);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).status, 404);
  });

  it('refuses names over 255 bytes and the reserved amq. prefix', async () => {
    const long = await mgmt.api(`/api/queues/%2F/${'a'.repeat(300)}`, { method: 'PUT', body: {} });
    assert.equal(long.status, 400);
    assert.equal(long.json.reason, 'queue should be less than 255 bytes, actually was 300\n');
    const reserved = await mgmt.api('/api/queues/%2F/amq.foo', { method: 'PUT', body: {} });
    assert.equal(reserved.status, 401);
    assert.deepEqual(reserved.json, { error: 'not_authorised', reason: 'Access refused.' });
  });

  it('answers 404 for a queue in an unknown vhost', async () => {
    const r = await mgmt.api('/api/queues/no-such-vhost/q', { method: 'PUT', body: {} });
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { error: 'Object Not Found', reason: 'Not Found' });
  });

  it('makes the queue usable over AMQP', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const conn = await amqp.connect(mgmt.amqpUrl);
    try {
      const ch = await conn.createChannel();
      const ok = await ch.checkQueue(q);
      assert.equal(ok.queue, q);
    } finally {
      await conn.close();
    }
  });
});

describe('DELETE /api/queues/vhost/name', () => {
  it('deletes (204), then 404', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'DELETE' })).status, 404);
  });

  it('honours if-empty', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await publish(q, 'x');
    const r = await mgmt.api(`/api/queues/%2F/${q}?if-empty=true`, { method: 'DELETE' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: `queue '${q}' in vhost '/' not empty` });
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).status, 200);
  });

  it('honours if-unused', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const conn = await amqp.connect(mgmt.amqpUrl);
    try {
      const ch = await conn.createChannel();
      await ch.consume(q, () => {});
      const r = await mgmt.api(`/api/queues/%2F/${q}?if-unused=true`, { method: 'DELETE' });
      assert.equal(r.status, 400);
      assert.deepEqual(r.json, { error: 'bad_request', reason: `queue '${q}' in vhost '/' in use` });
    } finally {
      await conn.close();
    }
  });
});

describe('DELETE /api/queues/vhost/name/contents', () => {
  it('purges the ready messages', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await publish(q, 'a');
    await publish(q, 'b');
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.messages_ready, 2);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}/contents`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.messages_ready, 0);
    assert.equal((await mgmt.api(`/api/queues/%2F/nope-${q}/contents`, { method: 'DELETE' })).status, 404);
  });
});

describe('POST /api/queues/vhost/name/get', () => {
  it('peeks with ack_requeue_true: messages stay, marked redelivered', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await publish(q, 'hello', { content_type: 'text/plain', headers: { h: 1 }, delivery_mode: 2 });
    await publish(q, 'world');
    const r = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 5, ackmode: 'ack_requeue_true', encoding: 'auto' } });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, [
      {
        payload_bytes: 5,
        redelivered: false,
        exchange: '',
        routing_key: q,
        message_count: 1,
        properties: { content_type: 'text/plain', headers: { h: 1 }, delivery_mode: 2 },
        payload: 'hello',
        payload_encoding: 'string',
      },
      { payload_bytes: 5, redelivered: false, exchange: '', routing_key: q, message_count: 0, properties: {}, payload: 'world', payload_encoding: 'string' },
    ]);
    const again = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 1, ackmode: 'ack_requeue_true', encoding: 'auto' } });
    assert.equal(again.json[0].payload, 'hello');
    assert.equal(again.json[0].redelivered, true);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.messages_ready, 2);
  });

  it('removes the messages with ack_requeue_false and reject_requeue_false', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await publish(q, 'a');
    await publish(q, 'b');
    const r1 = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' } });
    assert.equal(r1.json[0].payload, 'a');
    const r2 = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: '1', ackmode: 'reject_requeue_false', encoding: 'auto' } });
    assert.equal(r2.json[0].payload, 'b');
    const g = await mgmt.api(`/api/queues/%2F/${q}`);
    assert.equal(g.json.messages, 0);
  });

  it('encodes binary payloads as base64 with encoding auto, and truncates', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await publish(q, Buffer.from([0xff, 0x00, 0x80]));
    await publish(q, 'abcdef');
    const r = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 2, ackmode: 'ack_requeue_true', encoding: 'auto', truncate: 3 } });
    assert.equal(r.json[0].payload_encoding, 'base64');
    assert.equal(r.json[0].payload, Buffer.from([0xff, 0x00, 0x80]).toString('base64'));
    assert.equal(r.json[1].payload, 'abc');
    assert.equal(r.json[1].payload_bytes, 6);
    const b = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 2, ackmode: 'ack_requeue_true', encoding: 'base64' } });
    assert.equal(b.json[1].payload, Buffer.from('abcdef').toString('base64'));
    assert.equal(b.json[1].payload_encoding, 'base64');
  });

  it('reports missing keys as RabbitMQ does', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const r = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { ackmode: 'ack_requeue_true', encoding: 'auto' } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: '[{key_missing,count}]' });
    const bad = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 1, ackmode: 'nope', encoding: 'auto' } });
    assert.equal(bad.status, 400);
  });
});

describe('GET /api/queues/vhost/name/messages (browse)', () => {
  it('lists ready messages without taking them, reordering them or marking them redelivered', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    for (let i = 0; i < 5; i++) await publish(q, `m${i}`, { message_id: `id${i}` });
    const r = await mgmt.api(`/api/queues/%2F/${q}/messages?offset=1&count=3`);
    assert.equal(r.status, 200);
    assert.equal(r.json.total, 5);
    assert.equal(r.json.offset, 1);
    assert.equal(r.json.count, 3);
    assert.deepEqual(
      r.json.items.map((m: { position: number; payload: string; redelivered: boolean; properties: { message_id: string } }) => [m.position, m.payload, m.redelivered, m.properties.message_id]),
      [
        [1, 'm1', false, 'id1'],
        [2, 'm2', false, 'id2'],
        [3, 'm3', false, 'id3'],
      ],
    );
    const g = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 5, ackmode: 'ack_requeue_false', encoding: 'auto' } });
    assert.deepEqual(
      g.json.map((m: { payload: string; redelivered: boolean }) => [m.payload, m.redelivered]),
      [0, 1, 2, 3, 4].map((i) => [`m${i}`, false]),
    );
    const stats = (await mgmt.api(`/api/queues/%2F/${q}`)).json.message_stats;
    assert.equal(stats.redeliver, 0);
  });

  it('answers an empty page past the end and 400 for a bad offset', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const r = await mgmt.api(`/api/queues/%2F/${q}/messages?offset=10`);
    assert.deepEqual(r.json, { offset: 10, count: 0, total: 0, items: [] });
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}/messages?offset=-1`)).status, 400);
  });
});

describe('GET /api/queues/vhost/name/bindings', () => {
  it('lists the default exchange binding and the others', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await mgmt.api(`/api/bindings/%2F/e/amq.topic/q/${q}`, { method: 'POST', body: { routing_key: 'a.#', arguments: { k: 'v' } } });
    const r = await mgmt.api(`/api/queues/%2F/${enc(q)}/bindings`);
    assert.equal(r.status, 200);
    assert.equal(r.json.length, 2);
    assert.deepEqual(r.json[0], { source: '', vhost: '/', destination: q, destination_type: 'queue', routing_key: q, arguments: {}, properties_key: q });
    assert.equal(r.json[1].source, 'amq.topic');
    assert.equal(r.json[1].routing_key, 'a.#');
    assert.deepEqual(r.json[1].arguments, { k: 'v' });
    assert.match(r.json[1].properties_key, /^a\.%23~[A-Za-z0-9_-]{6}$/);
  });
});
