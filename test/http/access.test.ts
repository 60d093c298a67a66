import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as amqp from 'amqplib';
import { addUser, enc, managementSuite, uniq } from './fixture';

const mgmt = managementSuite();

const NOT_ADMIN = { error: 'not_authorised', reason: 'Not administrator user' };
const NOT_MONITOR = { error: 'not_authorised', reason: 'Not monitor user' };
const NOT_MANAGEMENT = { error: 'not_authorised', reason: 'Not management user' };
const REFUSED = { error: 'not_authorised', reason: 'Access refused.' };

describe('authentication', () => {
  it('answers 401 with a Basic challenge when there are no credentials', async () => {
    const r = await mgmt.api('/api/overview', { auth: null });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="RabbitMQ Management"');
    assert.deepEqual(r.json, { error: 'not_authorized', reason: 'Login failed' });
  });

  it('answers 401 Login failed for a wrong password or unknown user', async () => {
    for (const auth of [['guest', 'wrong'], ['nobody', 'x']] as Array<[string, string]>) {
      const r = await mgmt.api('/api/overview', { auth });
      assert.equal(r.status, 401);
      assert.deepEqual(r.json, { error: 'not_authorized', reason: 'Login failed' });
    }
  });

  it('leaves out the challenge for the web UI\'s own requests', async () => {
    const r = await mgmt.api('/api/overview', { auth: ['guest', 'wrong'], headers: { 'x-warren-ui': '1' } });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), null);
  });

  it('refuses users without a management tag everywhere', async () => {
    const auth = await addUser(mgmt, '');
    for (const path of ['/api/overview', '/api/whoami', '/api/queues', '/api/vhosts', '/api/users']) {
      const r = await mgmt.api(path, { auth });
      assert.equal(r.status, 401, path);
      assert.deepEqual(r.json, NOT_MANAGEMENT, path);
    }
  });

  it('answers whoami with the tags', async () => {
    const auth = await addUser(mgmt, 'monitoring,policymaker');
    const r = await mgmt.api('/api/whoami', { auth });
    assert.deepEqual(r.json, { name: auth[0], tags: ['monitoring', 'policymaker'] });
  });
});

describe('tags, as RabbitMQ enforces them', () => {
  const adminOnly = ['/api/users', '/api/permissions', '/api/definitions', '/api/topic-permissions', '/api/operator-policies', '/api/global-parameters', '/api/users/guest', '/api/vhosts/%2F/permissions'];

  for (const tags of ['management', 'policymaker', 'monitoring']) {
    it(`${tags}: administrator-only resources are refused`, async () => {
      const auth = await addUser(mgmt, tags);
      for (const path of adminOnly) {
        const r = await mgmt.api(path, { auth });
        assert.equal(r.status, 401, path);
        assert.deepEqual(r.json, NOT_ADMIN, path);
      }
      for (const [method, path, body] of [
        ['PUT', `/api/vhosts/${uniq('v')}`, {}],
        ['DELETE', '/api/vhosts/%2F', undefined],
        ['PUT', `/api/users/${uniq('u')}`, { password: 'x', tags: '' }],
        ['DELETE', '/api/users/guest', undefined],
        ['PUT', '/api/permissions/%2F/guest', { configure: '', write: '', read: '' }],
        ['POST', '/api/definitions', {}],
      ] as const) {
        const r = await mgmt.api(path, { method, body, auth });
        assert.equal(r.status, 401, `${method} ${path}`);
        assert.deepEqual(r.json, NOT_ADMIN, `${method} ${path}`);
      }
      assert.equal((await mgmt.api('/api/users/guest')).json.tags[0], 'administrator', 'nothing changed');
    });
  }

  for (const tags of ['management', 'policymaker']) {
    it(`${tags}: nodes are refused, connections are limited to their own`, async () => {
      const auth = await addUser(mgmt, tags);
      const r = await mgmt.api('/api/nodes', { auth });
      assert.equal(r.status, 401);
      assert.deepEqual(r.json, NOT_MONITOR);
      const conn = await amqp.connect(mgmt.amqpUrl);
      try {
        const mine = await mgmt.api('/api/connections', { auth });
        assert.deepEqual(mine.json, []);
        const all = await mgmt.api('/api/connections');
        assert.equal(all.json.length, 1);
      } finally {
        await conn.close();
      }
    });
  }

  it('monitoring sees nodes, all connections and every vhost', async () => {
    const auth = await addUser(mgmt, 'monitoring');
    const v = uniq('v');
    await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: {} });
    assert.equal((await mgmt.api('/api/nodes', { auth })).status, 200);
    const vhosts = (await mgmt.api('/api/vhosts', { auth })).json.map((x: { name: string }) => x.name);
    assert.ok(vhosts.includes(v));
    const queues = await mgmt.api(`/api/queues/${v}`, { auth });
    assert.equal(queues.status, 401);
    assert.deepEqual(queues.json, { error: 'not_authorised', reason: 'User not authorised to access virtual host' });
  });

  it('management users only see the vhosts they have permissions in', async () => {
    const v = uniq('v');
    await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: {} });
    const auth = await addUser(mgmt, 'management', { vhost: v });
    const vhosts = (await mgmt.api('/api/vhosts', { auth })).json.map((x: { name: string }) => x.name);
    assert.deepEqual(vhosts, [v]);
    const r = await mgmt.api('/api/queues/%2F', { auth });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json, { error: 'not_authorised', reason: 'User not authorised to access virtual host' });
  });

  it('only policymakers and administrators may set policies', async () => {
    const name = uniq('p');
    for (const tags of ['management', 'monitoring']) {
      const auth = await addUser(mgmt, tags);
      const r = await mgmt.api(`/api/policies/%2F/${name}`, { method: 'PUT', body: { pattern: '^x', definition: { 'max-length': 1 } }, auth });
      assert.equal(r.status, 401, tags);
      assert.deepEqual(r.json, { error: 'not_authorised', reason: 'User not authorised to access object' });
    }
    const pm = await addUser(mgmt, 'policymaker');
    const ok = await mgmt.api(`/api/policies/%2F/${name}`, { method: 'PUT', body: { pattern: '^x', definition: { 'max-length': 1 } }, auth: pm });
    assert.equal(ok.status, 201);
    assert.equal((await mgmt.api(`/api/policies/%2F/${name}`, { method: 'DELETE', auth: pm })).status, 204);
  });
});

describe('vhost permissions on HTTP operations', () => {
  it('checks configure, write and read like AMQP does, administrators included', async () => {
    const auth = await addUser(mgmt, 'administrator', { vhost: '/', configure: '^mine-', write: '^mine-', read: '^mine-' });
    const ok = await mgmt.api('/api/queues/%2F/mine-q', { method: 'PUT', body: {}, auth });
    assert.equal(ok.status, 201);
    const denied = await mgmt.api(`/api/queues/%2F/${uniq('other')}`, { method: 'PUT', body: {}, auth });
    assert.equal(denied.status, 401);
    assert.deepEqual(denied.json, REFUSED);
    const publish = await mgmt.api('/api/exchanges/%2F/amq.default/publish', {
      method: 'POST',
      body: { routing_key: 'mine-q', payload: 'x', payload_encoding: 'string', properties: {} },
      auth,
    });
    assert.equal(publish.status, 401, 'amq.default does not match ^mine-');
    const get = await mgmt.api('/api/queues/%2F/mine-q/get', { method: 'POST', body: { count: 1, ackmode: 'ack_requeue_true', encoding: 'auto' }, auth });
    assert.equal(get.status, 200);
  });

  it('refuses operations in a vhost where the user has no permission', async () => {
    const v = uniq('v');
    await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: {} });
    const auth = await addUser(mgmt, 'administrator', null);
    assert.equal((await mgmt.api(`/api/queues/${v}`, { auth })).status, 200, 'administrators see every vhost');
    const r = await mgmt.api(`/api/queues/${v}/q`, { method: 'PUT', body: {}, auth });
    assert.equal(r.status, 401);
    assert.deepEqual(r.json, REFUSED);
    const alive = await mgmt.api(`/api/aliveness-test/${v}`, { auth });
    assert.deepEqual(alive.json, REFUSED);
  });

  it('checks topic permissions when publishing to a topic exchange', async () => {
    const auth = await addUser(mgmt, 'management');
    const t = await mgmt.api(`/api/topic-permissions/%2F/${enc(auth[0])}`, { method: 'PUT', body: { exchange: 'amq.topic', write: '^allowed\\.', read: '.*' } });
    assert.equal(t.status, 201);
    const send = (key: string): Promise<{ status: number }> =>
      mgmt.api('/api/exchanges/%2F/amq.topic/publish', { method: 'POST', body: { routing_key: key, payload: 'x', payload_encoding: 'string', properties: {} }, auth });
    assert.equal((await send('allowed.x')).status, 200);
    assert.equal((await send('other.x')).status, 401);
    const rows = (await mgmt.api(`/api/topic-permissions/%2F/${enc(auth[0])}`)).json;
    assert.deepEqual(rows, [{ user: auth[0], vhost: '/', exchange: 'amq.topic', write: '^allowed\\.', read: '.*' }]);
  });
});

describe('topic permissions over AMQP', () => {
  it('refuse publishing and binding with routing keys outside the patterns', async () => {
    const [name, password] = await addUser(mgmt, 'management');
    await mgmt.api(`/api/topic-permissions/%2F/${enc(name)}`, { method: 'PUT', body: { exchange: 'amq.topic', write: '^allowed\\.', read: '^mine\\.' } });
    const conn = await amqp.connect(mgmt.amqpUrlFor(name, password));
    try {
      const ok = await conn.createConfirmChannel();
      ok.publish('amq.topic', 'allowed.x', Buffer.from('x'));
      await ok.waitForConfirms();
      const q = (await ok.assertQueue('', { exclusive: true })).queue;
      await ok.bindQueue(q, 'amq.topic', 'mine.#');
      const refusedPublish = await conn.createConfirmChannel();
      const closed = new Promise<Error>((r) => refusedPublish.on('error', r));
      refusedPublish.publish('amq.topic', 'other.x', Buffer.from('x'));
      assert.match((await closed).message, new RegExp(`ACCESS_REFUSED - access to topic 'other.x' in exchange 'amq.topic' in vhost '/' refused for user '${name}'`));
      const refusedBind = await conn.createChannel();
      refusedBind.on('error', () => {});
      await assert.rejects(refusedBind.bindQueue(q, 'amq.topic', 'theirs.#'), /ACCESS_REFUSED/);
    } finally {
      await conn.close().catch(() => {});
    }
  });
});

describe('users and vhosts created over HTTP work over AMQP', () => {
  it('a new vhost accepts connection.open at once, and its creator has permissions', async () => {
    const v = uniq('v');
    assert.equal((await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: { description: 'test', tags: 'a,b' } })).status, 201);
    assert.equal((await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: { description: 'changed' } })).status, 204);
    const shown = await mgmt.api(`/api/vhosts/${v}`);
    assert.equal(shown.json.description, 'changed');
    assert.deepEqual(shown.json.tags, ['a', 'b']);
    assert.deepEqual(shown.json.metadata, { description: 'changed', tags: ['a', 'b'] });
    assert.deepEqual((await mgmt.api(`/api/permissions/${v}/guest`)).json, { user: 'guest', vhost: v, configure: '.*', write: '.*', read: '.*' });
    const conn = await amqp.connect(mgmt.amqpUrlFor('guest', 'guest', v));
    const ch = await conn.createChannel();
    await ch.assertQueue('in-new-vhost');
    await conn.close();
    assert.equal((await mgmt.api(`/api/queues/${v}/in-new-vhost`)).status, 200);
  });

  it('deleting a vhost closes its connections and removes its objects', async () => {
    const v = uniq('v');
    await mgmt.api(`/api/vhosts/${v}`, { method: 'PUT', body: {} });
    const conn = await amqp.connect(mgmt.amqpUrlFor('guest', 'guest', v));
    const closed = new Promise<Error>((resolve) => conn.on('close', resolve));
    const ch = await conn.createChannel();
    await ch.assertQueue('q');
    assert.equal((await mgmt.api(`/api/vhosts/${v}`, { method: 'DELETE' })).status, 204);
    const err = await closed;
    assert.match(err.message, /CONNECTION_FORCED/);
    assert.equal((await mgmt.api(`/api/vhosts/${v}`)).status, 404);
    assert.equal((await mgmt.api(`/api/vhosts/${v}`, { method: 'DELETE' })).status, 404);
    assert.equal((await mgmt.api(`/api/permissions/${v}/guest`)).status, 404);
  });

  it('a user created over HTTP logs in over AMQP with their permissions enforced', async () => {
    const name = uniq('amqp-user');
    assert.equal((await mgmt.api(`/api/users/${name}`, { method: 'PUT', body: { password: 's3cret', tags: '' } })).status, 201);
    await assert.rejects(amqp.connect(mgmt.amqpUrlFor(name, 's3cret')), 'no permission on / yet');
    await mgmt.api(`/api/permissions/%2F/${name}`, { method: 'PUT', body: { configure: '^own\\.', write: '.*', read: '.*' } });
    const conn = await amqp.connect(mgmt.amqpUrlFor(name, 's3cret'));
    try {
      const ch = await conn.createChannel();
      ch.on('error', () => {});
      await ch.assertQueue('own.q');
      await assert.rejects(ch.assertQueue('foreign.q'), /ACCESS_REFUSED/);
    } finally {
      await conn.close().catch(() => {});
    }
    await assert.rejects(amqp.connect(mgmt.amqpUrlFor(name, 'wrong')));
  });

  it('replaces users as RabbitMQ does: no password given means no password login', async () => {
    const name = uniq('u');
    await mgmt.api(`/api/users/${name}`, { method: 'PUT', body: { password: 'pw', tags: 'management' } });
    assert.equal((await mgmt.api('/api/whoami', { auth: [name, 'pw'] })).status, 200);
    assert.equal((await mgmt.api(`/api/users/${name}`, { method: 'PUT', body: { tags: 'management,monitoring' } })).status, 204);
    const u = (await mgmt.api(`/api/users/${name}`)).json;
    assert.deepEqual(u, { name, password_hash: '', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['management', 'monitoring'], limits: {} });
    assert.equal((await mgmt.api('/api/whoami', { auth: [name, 'pw'] })).status, 401);
  });

  it('accepts RabbitMQ password hashes', async () => {
    const name = uniq('u');
    // guest's hash as exported by RabbitMQ 3.10 for password "guest".
    const hash = 'uWKSOktKjP/LSe9+DH3OVkIP2E09Ry0hfeFGSe385A+/DQAj';
    const r = await mgmt.api(`/api/users/${name}`, { method: 'PUT', body: { password_hash: hash, hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['management'] } });
    assert.equal(r.status, 201);
    assert.equal((await mgmt.api('/api/whoami', { auth: [name, 'guest'] })).status, 200);
    const bad = await mgmt.api(`/api/users/${uniq('u')}`, { method: 'PUT', body: { password_hash: 'not-a-hash', tags: '' } });
    assert.equal(bad.status, 400);
  });

  it('deletes users with their permissions', async () => {
    const [name] = await addUser(mgmt, 'management');
    assert.equal((await mgmt.api(`/api/users/${name}/permissions`)).json.length, 1);
    assert.equal((await mgmt.api(`/api/users/${name}`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/users/${name}`)).status, 404);
    assert.equal((await mgmt.api(`/api/permissions/%2F/${name}`)).status, 404);
    assert.equal((await mgmt.api(`/api/users/${name}`, { method: 'DELETE' })).status, 404);
  });

  it('validates permission bodies and refuses unknown users or vhosts', async () => {
    const missing = await mgmt.api('/api/permissions/%2F/guest', { method: 'PUT', body: { configure: '.*' } });
    assert.deepEqual(missing.json, { error: 'bad_request', reason: '[{key_missing,write},{key_missing,read}]' });
    const nouser = await mgmt.api('/api/permissions/%2F/nobody', { method: 'PUT', body: { configure: '.*', write: '.*', read: '.*' } });
    assert.deepEqual(nouser.json, { error: 'bad_request', reason: 'vhost_or_user_not_found' });
    const badRe = await mgmt.api('/api/permissions/%2F/guest', { method: 'PUT', body: { configure: '(', write: '.*', read: '.*' } });
    assert.equal(badRe.status, 400);
    assert.equal((await mgmt.api('/api/permissions/%2F/guest')).json.configure, '.*', 'nothing changed');
  });
});
