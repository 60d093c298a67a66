import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import { managementSuite, request, uniq } from './fixture';

const mgmt = managementSuite();

/** An export from RabbitMQ 3.10.8 (GET /api/definitions), trimmed to one vhost's objects. */
function rabbitmqExport(): Record<string, any> {
  // Compiled tests run from dist/test/http; the fixture stays in the source tree.
  const path = join(__dirname, '..', '..', '..', 'test', 'http', 'fixtures', 'rabbitmq-3.10.8-definitions.json');
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, any>;
}

describe('POST /api/definitions with a RabbitMQ export', () => {
  it('imports users, vhosts, permissions, policies, queues, exchanges and bindings', async () => {
    const r = await mgmt.api('/api/definitions', { method: 'POST', body: rabbitmqExport() });
    assert.equal(r.status, 204, r.text);

    // Users keep their RabbitMQ password hashes: ref-mon's password was "pw".
    assert.deepEqual((await mgmt.api('/api/whoami', { auth: ['ref-mon', 'pw'] })).json, { name: 'ref-mon', tags: ['monitoring'] });
    assert.deepEqual((await mgmt.api('/api/permissions/mgmt-ref/ref-mg')).json, { user: 'ref-mg', vhost: 'mgmt-ref', configure: '^q', write: '.*', read: '.*' });
    assert.deepEqual((await mgmt.api('/api/topic-permissions/mgmt-ref/ref-mg')).json, [{ user: 'ref-mg', vhost: 'mgmt-ref', exchange: 'x1', write: '^a', read: '.*' }]);

    const q = (await mgmt.api('/api/queues/mgmt-ref/q-lazy')).json;
    assert.equal(q.durable, true);
    assert.deepEqual(q.arguments, { 'x-dead-letter-exchange': 'x-dlx', 'x-message-ttl': 60000, 'x-queue-mode': 'lazy' });
    assert.equal((await mgmt.api('/api/exchanges/mgmt-ref/x1')).json.type, 'topic');
    assert.deepEqual((await mgmt.api('/api/exchanges/mgmt-ref/x-dlx')).json.arguments, { 'alternate-exchange': 'amq.fanout' });
    const bindings = (await mgmt.api('/api/exchanges/mgmt-ref/x1/bindings/source')).json;
    assert.deepEqual(
      bindings.map((b: { destination: string; destination_type: string; routing_key: string; arguments: unknown }) => [b.destination, b.destination_type, b.routing_key, b.arguments]),
      [
        ['q1', 'queue', 'a.#', { k: 'v' }],
        ['x-dlx', 'exchange', 'ee', {}],
      ],
    );
    assert.deepEqual((await mgmt.api('/api/policies/mgmt-ref/p1')).json, { vhost: 'mgmt-ref', name: 'p1', pattern: '^x', 'apply-to': 'all', definition: { 'max-length': 1 }, priority: 0 });
    assert.deepEqual((await mgmt.api('/api/operator-policies/mgmt-ref/op-cap')).json.definition, { 'max-length': 1000 });

    // The imported vhost works over AMQP for an imported user.
    const conn = await amqp.connect(mgmt.amqpUrlFor('ref-mg', 'pw', 'mgmt-ref'));
    const ch = await conn.createChannel();
    await ch.checkQueue('q1');
    await conn.close();
  });

  it('exports what it imported in the same format, and the export imports again', async () => {
    const exported = (await mgmt.api('/api/definitions')).json;
    for (const k of ['rabbit_version', 'users', 'vhosts', 'permissions', 'topic_permissions', 'parameters', 'global_parameters', 'policies', 'queues', 'exchanges', 'bindings']) {
      assert.ok(k in exported, k);
    }
    const original = rabbitmqExport();
    const pick = (list: Array<Record<string, unknown>>, vhost: string): string[] => list.filter((o) => o.vhost === vhost).map((o) => JSON.stringify(o)).sort();
    for (const k of ['queues', 'exchanges', 'bindings', 'policies', 'topic_permissions']) {
      assert.deepEqual(pick(exported[k], 'mgmt-ref'), pick(original[k], 'mgmt-ref'), k);
    }
    assert.deepEqual(
      exported.parameters.filter((p: { vhost: string }) => p.vhost === 'mgmt-ref'),
      original.parameters,
      'operator policies travel as operator_policy parameters, as in RabbitMQ',
    );
    const mon = exported.users.find((u: { name: string }) => u.name === 'ref-mon');
    assert.deepEqual(mon, original.users.find((u: { name: string }) => u.name === 'ref-mon'));

    // Round trip: delete the vhost, import Warren's own export, compare again.
    assert.equal((await mgmt.api('/api/vhosts/mgmt-ref', { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api('/api/definitions', { method: 'POST', body: exported })).status, 204);
    const again = (await mgmt.api('/api/definitions')).json;
    for (const k of ['queues', 'exchanges', 'bindings', 'policies', 'permissions', 'users', 'parameters']) {
      assert.deepEqual(pick(again[k], 'mgmt-ref'), pick(exported[k], 'mgmt-ref'), k);
    }
  });

  it('exports and imports one vhost without vhost fields', async () => {
    const one = await mgmt.api('/api/definitions/mgmt-ref');
    assert.equal(one.status, 200);
    assert.ok(!('users' in one.json));
    assert.ok(one.json.queues.every((q: Record<string, unknown>) => !('vhost' in q)));
    const target = uniq('v');
    await mgmt.api(`/api/vhosts/${target}`, { method: 'PUT', body: {} });
    assert.equal((await mgmt.api(`/api/definitions/${target}`, { method: 'POST', body: one.json })).status, 204);
    assert.equal((await mgmt.api(`/api/queues/${target}/q1`)).json.arguments['x-max-length'], 100);
    assert.equal((await mgmt.api(`/api/exchanges/${target}/x1/bindings/source`)).json.length, 2);
  });

  it('offers the export as a download', async () => {
    const r = await mgmt.api('/api/definitions?download=defs.json');
    assert.equal(r.headers.get('content-disposition'), 'attachment; filename="defs.json"');
  });
});

describe('bad definitions', () => {
  for (const [what, body, reason] of [
    ['a section that is not a list', { queues: 'x' }, "definitions: 'queues' must be a list"],
    ['an unknown vhost', { queues: [{ name: 'q', vhost: 'no-such-vhost', durable: true, auto_delete: false, arguments: {} }] }, ['no_such_vhost', 'no-such-vhost']],
    ['an unknown exchange type', { exchanges: [{ name: 'x', vhost: '/', type: 'nope' }] }, "unknown exchange type 'nope'"],
    ['invalid queue arguments', { queues: [{ name: 'q', vhost: '/', arguments: { 'x-max-length': 'x' } }] }, `invalid arg 'x-max-length' for queue 'q' in vhost '/': "expected integer, got longstr"`],
    ['an invalid policy', { policies: [{ name: 'p', vhost: '/', pattern: '.*', definition: { nope: 1 } }] }, 'Validation failed\n\n[{<<"nope">>,1}] are not recognised policy settings\n'],
  ] as const) {
    it(`refuses ${what} with 400 and changes nothing`, async () => {
      const marker = uniq('marker');
      const defs = { ...body, vhosts: [{ name: marker }], users: [{ name: marker, password_hash: '', tags: '' }] };
      const r = await mgmt.api('/api/definitions', { method: 'POST', body: defs });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual(r.json, { error: 'bad_request', reason });
      assert.equal((await mgmt.api(`/api/vhosts/${marker}`)).status, 404);
      assert.equal((await mgmt.api(`/api/users/${marker}`)).status, 404);
    });
  }

  it('refuses a body that is not JSON', async () => {
    const r = await request(mgmt.base, '/api/definitions', { method: 'POST', body: 'not json' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: 'not_json' });
  });
});
