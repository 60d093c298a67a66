import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as amqp from 'amqplib';
import { managementSuite, uniq, waitFor } from './fixture';

const mgmt = managementSuite();

describe('GET /api/overview', () => {
  it('has RabbitMQ\'s top-level fields', async () => {
    const r = await mgmt.api('/api/overview');
    assert.equal(r.status, 200);
    for (const k of [
      'management_version',
      'rates_mode',
      'exchange_types',
      'product_version',
      'product_name',
      'rabbitmq_version',
      'cluster_name',
      'message_stats',
      'queue_totals',
      'object_totals',
      'node',
      'listeners',
    ]) {
      assert.ok(k in r.json, k);
    }
    assert.equal(r.json.product_name, 'Warren');
    assert.deepEqual(Object.keys(r.json.object_totals).sort(), ['channels', 'connections', 'consumers', 'exchanges', 'queues']);
    const protocols = r.json.listeners.map((l: { protocol: string }) => l.protocol);
    assert.deepEqual(protocols, ['amqp', 'http']);
    assert.equal(r.json.listeners[0].port, mgmt.handle.port);
  });

  it('counts messages published and delivered, with rates once sampled', async () => {
    const q = uniq('q');
    const conn = await amqp.connect(mgmt.amqpUrl);
    try {
      const ch = await conn.createConfirmChannel();
      await ch.assertQueue(q);
      const before = (await mgmt.api('/api/overview')).json.message_stats.publish;
      for (let i = 0; i < 20; i++) ch.sendToQueue(q, Buffer.from('x'));
      await ch.waitForConfirms();
      const after = (await mgmt.api('/api/overview')).json;
      assert.equal(after.message_stats.publish - before, 20);
      assert.equal(after.queue_totals.messages_ready, 20);
      assert.equal(after.object_totals.connections, 1);
      assert.equal(after.object_totals.channels, 1);
      // The sampler runs once a second; a rate shows up after the next sample.
      await waitFor(async () => (await mgmt.api('/api/overview')).json.message_stats.publish_details.rate > 0, 3000, 'a publish rate');
      const qs = (await mgmt.api(`/api/queues/%2F/${q}`)).json;
      assert.equal(qs.message_stats.publish, 20);
      await waitFor(async () => (await mgmt.api(`/api/queues/%2F/${q}`)).json.message_stats.publish_details.rate > 0, 3000, 'a queue publish rate');
    } finally {
      await conn.close();
    }
  });

  it('returns chart samples when asked with lengths_age / msg_rates_age', async () => {
    const r = await mgmt.api('/api/overview?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5');
    const d = r.json.queue_totals.messages_details;
    assert.ok(Array.isArray(d.samples));
    assert.ok(d.samples.length >= 1);
    assert.deepEqual(Object.keys(d.samples[0]).sort(), ['sample', 'timestamp']);
    assert.ok(Array.isArray(r.json.message_stats.publish_details.samples));
  });
});

describe('nodes, health and aliveness', () => {
  it('lists one node whose name is the cluster name', async () => {
    const r = await mgmt.api('/api/nodes');
    assert.equal(r.json.length, 1);
    const n = r.json[0];
    assert.equal(n.name, mgmt.handle.broker.config.clusterName);
    assert.equal(n.running, true);
    for (const k of ['mem_used', 'mem_limit', 'disk_free', 'disk_free_limit', 'fd_used', 'uptime', 'processors']) assert.equal(typeof n[k], 'number', k);
    assert.equal((await mgmt.api(`/api/nodes/${encodeURIComponent(n.name)}`)).json.name, n.name);
    assert.equal((await mgmt.api('/api/nodes/nobody@nowhere')).status, 404);
  });

  it('answers the health checks', async () => {
    assert.deepEqual((await mgmt.api('/api/health/checks/alarms')).json, { status: 'ok' });
    assert.deepEqual((await mgmt.api('/api/health/checks/virtual-hosts')).json, { status: 'ok' });
    const port = await mgmt.api(`/api/health/checks/port-listener/${mgmt.handle.port}`);
    assert.equal(port.status, 200);
    const missing = await mgmt.api('/api/health/checks/port-listener/1');
    assert.equal(missing.status, 503);
    assert.equal(missing.json.status, 'failed');
    assert.equal((await mgmt.api('/api/health/checks/protocol-listener/amqp')).status, 200);
  });

  it('runs the aliveness test through a real queue', async () => {
    const r = await mgmt.api('/api/aliveness-test/%2F');
    assert.deepEqual(r.json, { status: 'ok' });
    assert.equal((await mgmt.api('/api/queues/%2F/aliveness-test')).json.messages, 0);
    assert.equal((await mgmt.api('/api/aliveness-test/nope')).status, 404);
  });
});

describe('connections, channels and consumers', () => {
  it('lists a client\'s connection, channel and consumer, then closes the connection', async () => {
    const q = uniq('q');
    const conn = await amqp.connect(mgmt.amqpUrl, { clientProperties: { connection_name: 'my-app' } });
    const closed = new Promise<Error>((resolve) => conn.on('close', resolve));
    const ch = await conn.createChannel();
    await ch.prefetch(7);
    await ch.assertQueue(q);
    await ch.consume(q, () => {}, { consumerTag: 'ctag-1' });

    const conns = (await mgmt.api('/api/connections')).json;
    assert.equal(conns.length, 1);
    const c = conns[0];
    assert.equal(c.user, 'guest');
    assert.equal(c.vhost, '/');
    assert.equal(c.protocol, 'AMQP 0-9-1');
    assert.equal(c.channels, 1);
    assert.equal(c.peer_host, '127.0.0.1');
    assert.equal(c.port, mgmt.handle.port);
    assert.equal(c.user_provided_name, 'my-app');
    assert.equal(c.client_properties.connection_name, 'my-app');
    assert.equal(c.client_properties.capabilities.publisher_confirms, true);
    assert.equal(c.state, 'running');

    const one = await mgmt.api(`/api/connections/${encodeURIComponent(c.name)}`);
    assert.equal(one.json.name, c.name);

    const chans = (await mgmt.api('/api/channels')).json;
    assert.equal(chans.length, 1);
    assert.equal(chans[0].name, `${c.name} (1)`);
    assert.equal(chans[0].number, 1);
    assert.equal(chans[0].prefetch_count, 7);
    assert.equal(chans[0].consumer_count, 1);
    assert.deepEqual(chans[0].connection_details, { name: c.name, peer_host: '127.0.0.1', peer_port: c.peer_port });
    assert.equal((await mgmt.api(`/api/connections/${encodeURIComponent(c.name)}/channels`)).json.length, 1);
    assert.equal((await mgmt.api(`/api/channels/${encodeURIComponent(chans[0].name)}`)).json.number, 1);

    const consumers = (await mgmt.api('/api/consumers/%2F')).json;
    assert.equal(consumers.length, 1);
    assert.equal(consumers[0].consumer_tag, 'ctag-1');
    assert.deepEqual(consumers[0].queue, { name: q, vhost: '/' });
    assert.equal(consumers[0].ack_required, true);
    assert.equal(consumers[0].prefetch_count, 7);
    assert.equal(consumers[0].channel_details.name, chans[0].name);
    const qd = (await mgmt.api(`/api/queues/%2F/${q}`)).json;
    assert.equal(qd.consumers, 1);
    assert.equal(qd.consumer_details[0].consumer_tag, 'ctag-1');

    const del = await mgmt.api(`/api/connections/${encodeURIComponent(c.name)}`, { method: 'DELETE', headers: { 'x-reason': 'bye now' } });
    assert.equal(del.status, 204);
    const err = await closed;
    assert.match(err.message, /320/);
    assert.match(err.message, /bye now/);
    await waitFor(async () => (await mgmt.api('/api/connections')).json.length === 0, 2000, 'the connection to go');
    assert.equal((await mgmt.api(`/api/connections/${encodeURIComponent(c.name)}`)).status, 404);
  });
});

describe('GET /metrics', () => {
  it('exposes Prometheus text with warren_ names and per-queue series', async () => {
    const q = uniq('metrics-q');
    await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: {} });
    await mgmt.api('/api/exchanges/%2F/amq.default/publish', { method: 'POST', body: { routing_key: q, payload: 'x', payload_encoding: 'string', properties: {} } });
    const res = await fetch(`${mgmt.base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    for (const family of [
      'warren_connections',
      'warren_channels',
      'warren_queues',
      'warren_global_messages_received_total',
      'warren_global_messages_delivered_total',
      'warren_global_messages_acknowledged_total',
      'warren_process_resident_memory_bytes',
      'warren_disk_space_available_bytes',
      'warren_alarms_memory_used_watermark',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${family} (gauge|counter)$`, 'm'), family);
    }
    assert.match(text, new RegExp(`^warren_queue_messages_ready\\{vhost="/",queue="${q}"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^warren_queue_messages_unacked\\{vhost="/",queue="${q}"\\} 0$`, 'm'));
    // Consume and ack over AMQP: the global counters move.
    const conn = await amqp.connect(mgmt.amqpUrl);
    try {
      const ch = await conn.createChannel();
      const msg = await ch.get(q);
      assert.ok(msg !== false);
      ch.ack(msg);
      await ch.close();
    } finally {
      await conn.close();
    }
    const after = await (await fetch(`${mgmt.base}/metrics`)).text();
    const counter = (name: string, t: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(t)?.[1] ?? NaN);
    assert.ok(counter('warren_global_messages_delivered_total', after) >= 1);
    assert.ok(counter('warren_global_messages_acknowledged_total', after) >= 1);
    assert.match(after, new RegExp(`^warren_queue_messages_acked_total\\{vhost="/",queue="${q}"\\} 1$`, 'm'));
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-z_]+(\{[^}]*\})? -?[0-9.e+]+$/, line);
    }
  });
});
