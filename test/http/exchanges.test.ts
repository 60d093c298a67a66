import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addUser, enc, managementSuite, uniq, waitFor } from './fixture';

const mgmt = managementSuite();

describe('exchanges', () => {
  it('lists the predeclared exchanges of a vhost, sorted by name', async () => {
    const r = await mgmt.api('/api/exchanges/%2F?columns=name,type');
    assert.equal(r.status, 200);
    const names = r.json.map((x: { name: string }) => x.name);
    for (const n of ['', 'amq.direct', 'amq.fanout', 'amq.headers', 'amq.match', 'amq.topic']) assert.ok(names.includes(n), n);
    assert.deepEqual(names, [...names].sort());
    assert.deepEqual(r.json[0], { name: '', type: 'direct' });
  });

  it('declares with PUT (201 then 204) and shows RabbitMQ\'s fields', async () => {
    const x = uniq('x');
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'topic', durable: true } })).status, 201);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'topic', durable: true } })).status, 204);
    const r = await mgmt.api(`/api/exchanges/%2F/${x}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.name, x);
    assert.equal(r.json.type, 'topic');
    assert.equal(r.json.durable, true);
    assert.equal(r.json.auto_delete, false);
    assert.equal(r.json.internal, false);
    assert.deepEqual(r.json.arguments, {});
    assert.deepEqual(r.json.incoming, []);
    assert.deepEqual(r.json.outgoing, []);
    assert.deepEqual(r.json.message_stats, { publish_in: 0, publish_in_details: { rate: 0 }, publish_out: 0, publish_out_details: { rate: 0 } });
  });

  it('requires a type and knows the exchange types', async () => {
    const x = uniq('x');
    const missing = await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: {} });
    assert.equal(missing.status, 400);
    assert.deepEqual(missing.json, { error: 'bad_request', reason: '[{key_missing,type}]' });
    const unknown = await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'nope' } });
    assert.equal(unknown.status, 400);
    assert.deepEqual(unknown.json, { error: 'bad_request', reason: "unknown exchange type 'nope'" });
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`)).status, 404);
  });

  it('refuses to declare amq.* names or delete predeclared exchanges', async () => {
    const r = await mgmt.api('/api/exchanges/%2F/amq.mine', { method: 'PUT', body: { type: 'direct' } });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json, { error: 'not_authorised', reason: 'Access refused.' });
    const d = await mgmt.api('/api/exchanges/%2F/amq.direct', { method: 'DELETE' });
    assert.equal(d.status, 401);
  });

  it('shows the default exchange as amq.default', async () => {
    const r = await mgmt.api('/api/exchanges/%2F/amq.default');
    assert.equal(r.status, 200);
    assert.equal(r.json.name, '');
  });

  it('deletes with if-unused', async () => {
    const x = uniq('x');
    const q = uniq('q');
    await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'fanout' } });
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`, { method: 'POST', body: {} });
    const r = await mgmt.api(`/api/exchanges/%2F/${x}?if-unused=true`, { method: 'DELETE' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: `exchange '${x}' in vhost '/' in use` });
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'DELETE' })).status, 404);
  });
});

describe('POST /api/exchanges/vhost/name/publish', () => {
  it('routes through the exchange and says whether it was routed', async () => {
    const x = uniq('x');
    const q = uniq('q');
    await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'topic' } });
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`, { method: 'POST', body: { routing_key: 'a.#' } });
    const hit = await mgmt.api(`/api/exchanges/%2F/${x}/publish`, {
      method: 'POST',
      body: { routing_key: 'a.b', payload: 'hi', payload_encoding: 'string', properties: { priority: 3, headers: { n: 1, s: 'x' }, timestamp: 1700000000 } },
    });
    assert.equal(hit.status, 200);
    assert.deepEqual(hit.json, { routed: true });
    const miss = await mgmt.api(`/api/exchanges/%2F/${x}/publish`, { method: 'POST', body: { routing_key: 'z', payload: 'x', payload_encoding: 'string', properties: {} } });
    assert.deepEqual(miss.json, { routed: false });
    const got = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' } });
    assert.equal(got.json[0].payload, 'hi');
    assert.equal(got.json[0].exchange, x);
    assert.equal(got.json[0].routing_key, 'a.b');
    assert.deepEqual(got.json[0].properties, { priority: 3, headers: { n: 1, s: 'x' }, timestamp: 1700000000 });
    const stats = (await mgmt.api(`/api/exchanges/%2F/${x}`)).json.message_stats;
    assert.equal(stats.publish_in, 2);
    assert.equal(stats.publish_out, 1);
  });

  it('decodes base64 payloads and refuses bad ones', async () => {
    const q = uniq('q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const ok = await mgmt.api('/api/exchanges/%2F/amq.default/publish', {
      method: 'POST',
      body: { routing_key: q, payload: Buffer.from([1, 2, 3]).toString('base64'), payload_encoding: 'base64', properties: {} },
    });
    assert.deepEqual(ok.json, { routed: true });
    const bad = await mgmt.api('/api/exchanges/%2F/amq.default/publish', {
      method: 'POST',
      body: { routing_key: q, payload: '!!', payload_encoding: 'base64', properties: {} },
    });
    assert.equal(bad.status, 400);
    assert.deepEqual(bad.json, { error: 'bad_request', reason: ['not_base64', '!!'] });
  });

  it('reports missing keys, wrong property types and missing exchanges as RabbitMQ', async () => {
    const missing = await mgmt.api('/api/exchanges/%2F/amq.default/publish', { method: 'POST', body: { routing_key: 'x', payload: 'x', properties: {} } });
    assert.deepEqual(missing.json, { error: 'bad_request', reason: '[{key_missing,payload_encoding}]' });
    const badProp = await mgmt.api('/api/exchanges/%2F/amq.default/publish', {
      method: 'POST',
      body: { routing_key: 'x', payload: 'x', payload_encoding: 'string', properties: { delivery_mode: 'x' } },
    });
    assert.deepEqual(badProp.json, { error: 'bad_request', reason: ['not_int', 'delivery_mode'] });
    const noX = await mgmt.api('/api/exchanges/%2F/nox/publish', { method: 'POST', body: { routing_key: 'a', payload: 'x', payload_encoding: 'string', properties: {} } });
    assert.equal(noX.status, 400);
    assert.deepEqual(noX.json, { error: 'bad_request', reason: "404 NOT_FOUND - no exchange 'nox' in vhost '/'" });
  });
});

describe('bindings', () => {
  it('POST creates a binding with a Location naming its properties key; GET and DELETE use the key', async () => {
    const x = uniq('x');
    const q = uniq('q');
    await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'direct' } });
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    const r = await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`, { method: 'POST', body: { routing_key: 'k 1/~', arguments: { a: 1 } } });
    assert.equal(r.status, 201);
    const location = r.headers.get('location') ?? '';
    assert.ok(location.startsWith(`${q}/`), location);
    const list = await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`);
    assert.equal(list.json.length, 1);
    const key: string = list.json[0].properties_key;
    assert.equal(location, `${q}/${encodeURIComponent(key)}`);
    assert.ok(key.startsWith('k+1%2F%7E~'), key);
    const one = await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}/${enc(key)}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.json, { source: x, vhost: '/', destination: q, destination_type: 'queue', routing_key: 'k 1/~', arguments: { a: 1 }, properties_key: key });
    assert.equal((await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}/${enc(key)}`, { method: 'DELETE' })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`)).json, []);
    assert.equal((await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}/${enc(key)}`, { method: 'DELETE' })).status, 404);
  });

  it('binds exchanges to exchanges and lists them from both ends', async () => {
    const a = uniq('x');
    const b = uniq('x');
    await mgmt.api(`/api/exchanges/%2F/${a}`, { method: 'PUT', body: { type: 'fanout' } });
    await mgmt.api(`/api/exchanges/%2F/${b}`, { method: 'PUT', body: { type: 'fanout' } });
    assert.equal((await mgmt.api(`/api/bindings/%2F/e/${a}/e/${b}`, { method: 'POST', body: { routing_key: '' } })).status, 201);
    const src = await mgmt.api(`/api/exchanges/%2F/${a}/bindings/source`);
    assert.deepEqual(src.json, [{ source: a, vhost: '/', destination: b, destination_type: 'exchange', routing_key: '', arguments: {}, properties_key: '~' }]);
    const dst = await mgmt.api(`/api/exchanges/%2F/${b}/bindings/destination`);
    assert.equal(dst.json.length, 1);
    assert.equal((await mgmt.api(`/api/bindings/%2F/e/${a}/e/${b}/~`, { method: 'DELETE' })).status, 204);
  });

  it('names the missing end with 404 not_found', async () => {
    const r = await mgmt.api('/api/bindings/%2F/e/amq.direct/q/no-such-queue', { method: 'POST', body: {} });
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { error: 'not_found', reason: "no queue 'no-such-queue' in vhost '/'" });
  });

  it('lists every binding of a vhost', async () => {
    const r = await mgmt.api('/api/bindings/%2F');
    assert.equal(r.status, 200);
    assert.ok(Array.isArray(r.json));
    for (const b of r.json) assert.deepEqual(Object.keys(b), ['source', 'vhost', 'destination', 'destination_type', 'routing_key', 'arguments', 'properties_key']);
  });
});

describe('delayed-message exchanges', () => {
  it('counts the messages a delayed exchange holds as messages_delayed', async () => {
    const x = uniq('delayed');
    const put = await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'x-delayed-message', arguments: { 'x-delayed-type': 'fanout' } } });
    assert.equal(put.status, 201);
    for (let i = 0; i < 3; i++) {
      const r = await mgmt.api(`/api/exchanges/%2F/${x}/publish`, {
        method: 'POST',
        body: { routing_key: '', payload: `m${i}`, payload_encoding: 'string', properties: { headers: { 'x-delay': 60_000 } } },
      });
      assert.equal(r.status, 200);
    }
    const r = await mgmt.api(`/api/exchanges/%2F/${x}`);
    assert.equal(r.json.messages_delayed, 3);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'DELETE' })).status, 204);
  });

  it('lists held messages in due order with /delayed, without releasing them', async () => {
    const x = uniq('delayed');
    const q = uniq('dq');
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'PUT', body: { type: 'x-delayed-message', arguments: { 'x-delayed-type': 'direct' } } })).status, 201);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} })).status, 201);
    assert.equal((await mgmt.api(`/api/bindings/%2F/e/${x}/q/${q}`, { method: 'POST', body: { routing_key: 'k' } })).status, 201);
    // Delays far apart, so due order differs from publish order (ties are the store test's).
    const sent: Array<[string, number]> = [['c', 1500], ['a', 900], ['d', 1800], ['b', 1200]];
    for (const [payload, delay] of sent) {
      const r = await mgmt.api(`/api/exchanges/%2F/${x}/publish`, {
        method: 'POST',
        body: { routing_key: 'k', payload, payload_encoding: 'string', properties: { content_type: 'text/plain', headers: { 'x-delay': delay } } },
      });
      assert.equal(r.status, 200);
    }
    const binary = await mgmt.api(`/api/exchanges/%2F/${x}/publish`, {
      method: 'POST',
      body: { routing_key: 'k', payload: Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString('base64'), payload_encoding: 'base64', properties: { headers: { 'x-delay': 2100 } } },
    });
    assert.equal(binary.status, 200);

    const r = await mgmt.api(`/api/exchanges/%2F/${x}/delayed`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.map((m: { payload: string }) => m.payload), ['a', 'b', 'c', 'd', Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString('base64')]);
    const first = r.json[0];
    assert.deepEqual(Object.keys(first).sort(), ['due', 'due_in_ms', 'exchange', 'payload', 'payload_bytes', 'payload_encoding', 'properties', 'routing_key', 'x_delay'].sort());
    assert.equal(first.x_delay, 900);
    assert.equal(first.exchange, x);
    assert.equal(first.routing_key, 'k');
    assert.equal(first.payload_bytes, 1);
    assert.equal(first.payload_encoding, 'string');
    assert.deepEqual(first.properties, { content_type: 'text/plain', headers: { 'x-delay': 900 } });
    assert.equal(typeof first.due_in_ms, 'number');
    assert.ok(!Number.isNaN(Date.parse(first.due)));
    for (let i = 1; i < r.json.length; i++) assert.ok(Date.parse(r.json[i - 1].due) <= Date.parse(r.json[i].due));
    assert.equal(r.json[4].payload_encoding, 'base64');
    assert.equal(r.json[4].payload_bytes, 4);

    // count, encoding and truncate as for /get.
    const two = await mgmt.api(`/api/exchanges/%2F/${x}/delayed?count=2&encoding=base64&truncate=0`);
    assert.equal(two.status, 200);
    assert.deepEqual(two.json.map((m: { payload: string; payload_bytes: number }) => [m.payload, m.payload_bytes]), [['', 1], ['', 1]]);
    assert.equal(two.json[0].payload_encoding, 'base64');
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}/delayed?count=1001`)).status, 400);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}/delayed?encoding=utf16`)).status, 400);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/amq.direct/delayed`)).status, 400);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${uniq('missing')}/delayed`)).status, 404);
    const [user, pw] = await addUser(mgmt, 'management', { vhost: '/', read: '^$' });
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}/delayed`, { auth: [user, pw] })).status, 401);

    // Listing changed nothing: all five are still held, then delivered in due order.
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`)).json.messages_delayed, 5);
    await waitFor(async () => (await mgmt.api(`/api/queues/%2F/${q}`)).json.messages === 5, 15_000, 'delayed messages to be released');
    const got = await mgmt.api(`/api/queues/%2F/${q}/get`, { method: 'POST', body: { count: 10, ackmode: 'ack_requeue_false', encoding: 'auto' } });
    assert.deepEqual(got.json.map((m: { payload: string }) => m.payload), ['a', 'b', 'c', 'd', Buffer.from([0xff, 0xfe, 0x00, 0x41]).toString('base64')]);
    assert.deepEqual((await mgmt.api(`/api/exchanges/%2F/${x}/delayed`)).json, []);
    assert.equal((await mgmt.api(`/api/exchanges/%2F/${x}`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`, { method: 'DELETE' })).status, 204);
  });
});
