import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { managementSuite } from './fixture';

const mgmt = managementSuite();
const vhost = 'listing';

describe('sorting, pagination and columns', () => {
  before(async () => {
    await mgmt.api(`/api/vhosts/${vhost}`, { method: 'PUT', body: {} });
    for (let i = 0; i < 12; i++) {
      const name = `q-${String(i).padStart(2, '0')}`;
      await mgmt.api(`/api/queues/${vhost}/${name}`, { method: 'PUT', body: {} });
      for (let k = 0; k < i % 4; k++) {
        await mgmt.api(`/api/exchanges/${vhost}/amq.default/publish`, { method: 'POST', body: { routing_key: name, payload: 'x', payload_encoding: 'string', properties: {} } });
      }
    }
    await mgmt.api(`/api/queues/${vhost}/other`, { method: 'PUT', body: {} });
  });

  it('projects columns, including nested paths', async () => {
    const r = await mgmt.api(`/api/queues/${vhost}?columns=name,messages,message_stats.publish`);
    assert.deepEqual(r.json[0], { name: 'other', messages: 0, message_stats: { publish: 0 } });
    assert.deepEqual(r.json[2], { name: 'q-01', messages: 1, message_stats: { publish: 1 } });
  });

  it('sorts by any field, reversed on request, name breaking no ties by itself', async () => {
    const r = await mgmt.api(`/api/queues/${vhost}?sort=messages&sort_reverse=true&columns=name,messages`);
    const counts = r.json.map((q: { messages: number }) => q.messages);
    assert.deepEqual(counts, [...counts].sort((a: number, b: number) => b - a));
    assert.equal(counts[0], 3);
  });

  it('paginates with RabbitMQ\'s envelope', async () => {
    const r = await mgmt.api(`/api/queues/${vhost}?page=2&page_size=5&columns=name`);
    assert.deepEqual(r.json, {
      filtered_count: 13,
      item_count: 5,
      items: ['q-04', 'q-05', 'q-06', 'q-07', 'q-08'].map((name) => ({ name })),
      page: 2,
      page_count: 3,
      page_size: 5,
      total_count: 13,
    });
  });

  it('filters by name, as a substring or a regular expression', async () => {
    const sub = await mgmt.api(`/api/queues/${vhost}?page=1&name=q-1&columns=name`);
    assert.deepEqual(sub.json.items.map((q: { name: string }) => q.name), ['q-10', 'q-11']);
    assert.equal(sub.json.filtered_count, 2);
    assert.equal(sub.json.total_count, 13);
    const re = await mgmt.api(`/api/queues/${vhost}?page=1&name=${encodeURIComponent('^q-0[0-2]$')}&use_regex=true&columns=name`);
    assert.deepEqual(re.json.items.map((q: { name: string }) => q.name), ['q-00', 'q-01', 'q-02']);
  });

  it('answers bad pagination as RabbitMQ does', async () => {
    const zero = await mgmt.api(`/api/queues/${vhost}?page=0`);
    assert.equal(zero.status, 400);
    assert.deepEqual(zero.json, { error: 'invalid_pagination_parameters', reason: 'Invalid pagination parameters: page number 0, page size undefined' });
    const big = await mgmt.api(`/api/queues/${vhost}?page=1&page_size=501`);
    assert.deepEqual(big.json, { error: 'invalid_pagination_parameters', reason: 'Invalid pagination parameters: page number 1, page size 501' });
    const out = await mgmt.api(`/api/queues/${vhost}?page=99`);
    assert.deepEqual(out.json, { error: 'page_out_of_range', reason: 'Page out of range, page: 99 page size: 100, len: 13' });
    const text = await mgmt.api(`/api/queues/${vhost}?page=abc`);
    assert.deepEqual(text.json, { error: 'bad_request', reason: 'Pagination parameters are invalid' });
  });

  it('applies columns to single objects too', async () => {
    const r = await mgmt.api(`/api/queues/${vhost}/q-03?columns=name,messages_ready`);
    assert.deepEqual(r.json, { name: 'q-03', messages_ready: 3 });
  });
});

describe('routing of paths', () => {
  it('answers 404 with RabbitMQ\'s body for unknown paths', async () => {
    const r = await mgmt.api('/api/nopath');
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { error: 'Object Not Found', reason: 'Not Found' });
  });

  it('answers 405 with Allow for a known path and an unsupported method', async () => {
    const r = await mgmt.api('/api/overview', { method: 'POST' });
    assert.equal(r.status, 405);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
  });
});
