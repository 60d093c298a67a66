// The limits API as RabbitMQ 3.10.8 answers it: /api/vhost-limits and /api/user-limits, their
// validation texts, who may see what, the definitions export/import, and persistence.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as amqp from 'amqplib';
import { addUser, enc, managementSuite, request, uniq } from './fixture';

const mgmt = managementSuite();

async function vhost(): Promise<string> {
  const name = uniq('lim-vh');
  const r = await mgmt.api(`/api/vhosts/${enc(name)}`, { method: 'PUT', body: {} });
  assert.equal(r.status, 201, r.text);
  return name;
}

function putLimit(kind: 'vhost-limits' | 'user-limits', owner: string, name: string, body: unknown, auth?: [string, string]) {
  return mgmt.api(`/api/${kind}/${enc(owner)}/${enc(name)}`, { method: 'PUT', body, auth });
}

describe('/api/vhost-limits', () => {
  it('sets, lists, shows and clears limits in RabbitMQ shapes', async () => {
    const v = await vhost();
    assert.equal((await putLimit('vhost-limits', v, 'max-connections', { value: 1 })).status, 204);
    assert.equal((await putLimit('vhost-limits', v, 'max-queues', { value: 2 })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-connections': 1, 'max-queues': 2 } }]);
    const all = (await mgmt.api('/api/vhost-limits')).json as Array<{ vhost: string }>;
    assert.deepEqual(all.filter((l) => l.vhost === v), [{ vhost: v, value: { 'max-connections': 1, 'max-queues': 2 } }]);
    // -1 (no limit) is kept as given.
    assert.equal((await putLimit('vhost-limits', v, 'max-queues', { value: -1 })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-connections': 1, 'max-queues': -1 } }]);
    assert.equal((await mgmt.api(`/api/vhost-limits/${enc(v)}/max-queues`, { method: 'DELETE' })).status, 204);
    // Clearing one that is not set (or an unknown name) succeeds, as in RabbitMQ.
    assert.equal((await mgmt.api(`/api/vhost-limits/${enc(v)}/max-queues`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/vhost-limits/${enc(v)}/max-foo`, { method: 'DELETE' })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-connections': 1 } }]);
    assert.equal((await mgmt.api(`/api/vhost-limits/${enc(v)}/max-connections`, { method: 'DELETE' })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, []);
    assert.equal((await mgmt.api(`/api/vhost-limits/${enc(v)}/max-queues`)).status, 405);
    assert.deepEqual((await mgmt.api('/api/vhost-limits/%2F')).json, []);
  });

  it("refuses what RabbitMQ refuses, with RabbitMQ's reasons", async () => {
    const v = await vhost();
    const cases: Array<[unknown, string]> = [
      [{ value: 2 }, 'max-foo'],
      [{ value: 'x' }, 'max-queues'],
      [{ value: 1.5 }, 'max-queues'],
      [{ value: true }, 'max-queues'],
      [{ value: null }, 'max-queues'],
      [{ value: [1] }, 'max-queues'],
      [{ value: { a: 1 } }, 'max-queues'],
    ];
    const reasons = [];
    for (const [body, name] of cases) {
      const r = await putLimit('vhost-limits', v, name, body);
      assert.equal(r.status, 400);
      reasons.push(r.json.reason);
    }
    assert.deepEqual(reasons, [
      'Validation failed\n\nUnrecognised terms [{<<"max-foo">>,2}] in limits\n',
      'Validation failed\n\nmax-queues should be a number, actually was <<"x">>\n',
      'Validation failed\n\nmax-queues should be a number, actually was 1.5\n',
      'Validation failed\n\nmax-queues should be a number, actually was true\n',
      'Validation failed\n\nmax-queues should be a number, actually was null\n',
      'Validation failed\n\nmax-queues should be a number, actually was [1]\n',
      'Validation failed\n\nmax-queues should be a number, actually was #{<<"a">> => 1}\n',
    ]);
    assert.deepEqual((await putLimit('vhost-limits', v, 'max-queues', {})).json, { error: 'bad_request', reason: '[{key_missing,value}]' });
    const missing = await putLimit('vhost-limits', 'no-such-vhost', 'max-queues', { value: 3 });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { error: 'not_found', reason: 'vhost_not_found' });
    assert.equal((await mgmt.api('/api/vhost-limits/no-such-vhost')).status, 404);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, []);
  });

  it('management users see their own vhosts, monitoring users all, only administrators change them', async () => {
    const mine = await vhost();
    const other = await vhost();
    await putLimit('vhost-limits', mine, 'max-queues', { value: 3 });
    await putLimit('vhost-limits', other, 'max-queues', { value: 4 });
    const manager = await addUser(mgmt, 'management', { vhost: mine });
    const seen = ((await mgmt.api('/api/vhost-limits', { auth: manager })).json as Array<{ vhost: string }>).map((l) => l.vhost);
    assert.ok(seen.includes(mine) && !seen.includes(other));
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(mine)}`, { auth: manager })).json, [{ vhost: mine, value: { 'max-queues': 3 } }]);
    const refused = await mgmt.api(`/api/vhost-limits/${enc(other)}`, { auth: manager });
    assert.equal(refused.status, 401);
    assert.deepEqual(refused.json, { error: 'not_authorised', reason: 'User not authorised to access virtual host' });
    const put = await putLimit('vhost-limits', mine, 'max-queues', { value: 5 }, manager);
    assert.equal(put.status, 401);
    assert.deepEqual(put.json, { error: 'not_authorised', reason: 'Not administrator user' });
    const monitor = await addUser(mgmt, 'monitoring', null);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(other)}`, { auth: monitor })).json, [{ vhost: other, value: { 'max-queues': 4 } }]);
    const nobody = await addUser(mgmt, '', null);
    assert.equal((await mgmt.api('/api/vhost-limits', { auth: nobody })).status, 401);
  });

  it('refuses an HTTP queue declare over max-queues with RabbitMQ reason', async () => {
    const v = await vhost();
    await putLimit('vhost-limits', v, 'max-queues', { value: 0 });
    const r = await mgmt.api(`/api/queues/${enc(v)}/hq`, { method: 'PUT', body: { durable: true } });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'bad_request', reason: `cannot declare queue 'hq': queue limit in vhost '${v}' (0) is reached` });
    await putLimit('vhost-limits', v, 'max-queues', { value: 1 });
    assert.equal((await mgmt.api(`/api/queues/${enc(v)}/hq`, { method: 'PUT', body: { durable: true } })).status, 201);
    // Redeclaring is not creating.
    assert.equal((await mgmt.api(`/api/queues/${enc(v)}/hq`, { method: 'PUT', body: { durable: true } })).status, 204);
  });

  it('go with a deleted vhost: one created again under the name has none', async () => {
    const v = await vhost();
    await putLimit('vhost-limits', v, 'max-connections', { value: 0 });
    assert.equal((await mgmt.api(`/api/vhosts/${enc(v)}`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/vhosts/${enc(v)}`, { method: 'PUT', body: {} })).status, 201);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, []);
  });

  it('are enforced over AMQP once set over HTTP', async () => {
    const v = await vhost();
    await putLimit('vhost-limits', v, 'max-connections', { value: 0 });
    await assert.rejects(amqp.connect(mgmt.amqpUrlFor('guest', 'guest', v)), /ConnectionClose/);
    await mgmt.api(`/api/vhost-limits/${enc(v)}/max-connections`, { method: 'DELETE' });
    const conn = await amqp.connect(mgmt.amqpUrlFor('guest', 'guest', v));
    await conn.close();
  });
});

describe('/api/user-limits', () => {
  it('sets, lists, shows and clears limits in RabbitMQ shapes; the user record shows them', async () => {
    const [user] = await addUser(mgmt, 'management', null);
    assert.equal((await putLimit('user-limits', user, 'max-connections', { value: 1 })).status, 204);
    assert.equal((await putLimit('user-limits', user, 'max-channels', { value: 2 })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, [{ user, value: { 'max-connections': 1, 'max-channels': 2 } }]);
    const all = (await mgmt.api('/api/user-limits')).json as Array<{ user: string }>;
    assert.deepEqual(all.filter((l) => l.user === user), [{ user, value: { 'max-connections': 1, 'max-channels': 2 } }]);
    assert.deepEqual((await mgmt.api(`/api/users/${enc(user)}`)).json.limits, { 'max-connections': 1, 'max-channels': 2 });
    // Replacing the user (new tags) keeps the limits, as in RabbitMQ.
    await mgmt.api(`/api/users/${enc(user)}`, { method: 'PUT', body: { password: 'p', tags: 'monitoring' } });
    assert.deepEqual((await mgmt.api(`/api/users/${enc(user)}`)).json.limits, { 'max-connections': 1, 'max-channels': 2 });
    assert.deepEqual((await mgmt.api('/api/user-limits/guest')).json, []);
    assert.equal((await mgmt.api(`/api/user-limits/${enc(user)}/max-channels`)).status, 405);
    assert.equal((await mgmt.api(`/api/user-limits/${enc(user)}/max-channels`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/user-limits/${enc(user)}/max-channels`, { method: 'DELETE' })).status, 204);
    assert.equal((await mgmt.api(`/api/user-limits/${enc(user)}/max-connections`, { method: 'DELETE' })).status, 204);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, []);
    assert.deepEqual((await mgmt.api(`/api/users/${enc(user)}`)).json.limits, {});
  });

  it("refuses what RabbitMQ refuses, with RabbitMQ's reasons", async () => {
    const [user] = await addUser(mgmt, 'management', null);
    const r = async (name: string, body: unknown, owner = user): Promise<[number, unknown]> => {
      const res = await putLimit('user-limits', owner, name, body);
      return [res.status, res.json];
    };
    assert.deepEqual(await r('max-queues', { value: 2 }), [400, { error: 'bad_request', reason: 'Unrecognised terms [{<<"max-queues">>,2}] in user-limits' }]);
    assert.deepEqual(await r('max-channels', { value: 'x' }), [400, { error: 'bad_request', reason: 'max-channels should be a number, actually was <<"x">>' }]);
    assert.deepEqual(await r('max-channels', { value: 1.5 }), [400, { error: 'bad_request', reason: 'max-channels should be a number, actually was 1.5' }]);
    assert.deepEqual(await r('max-channels', {}), [400, { error: 'bad_request', reason: '[{key_missing,value}]' }]);
    assert.deepEqual(await r('max-channels', { value: 2 }, 'no-such-user'), [400, { error: 'bad_request', reason: ['no_such_user', 'no-such-user'] }]);
    assert.equal((await mgmt.api('/api/user-limits/no-such-user')).status, 404);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, []);
  });

  it('management users see only their own; monitoring users see all', async () => {
    const manager = await addUser(mgmt, 'management', null);
    const other = await addUser(mgmt, 'management', null);
    await putLimit('user-limits', manager[0], 'max-channels', { value: 5 });
    await putLimit('user-limits', other[0], 'max-channels', { value: 6 });
    assert.deepEqual((await mgmt.api('/api/user-limits', { auth: manager })).json, [{ user: manager[0], value: { 'max-channels': 5 } }]);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(other[0])}`, { auth: manager })).json, []);
    const monitor = await addUser(mgmt, 'monitoring', null);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(other[0])}`, { auth: monitor })).json, [{ user: other[0], value: { 'max-channels': 6 } }]);
    assert.equal((await putLimit('user-limits', manager[0], 'max-channels', { value: 50 }, manager)).status, 401);
  });

  it('are enforced over AMQP once set over HTTP', async () => {
    const v = await vhost();
    const [user, password] = await addUser(mgmt, 'management', { vhost: v });
    await putLimit('user-limits', user, 'max-connections', { value: 1 });
    const first = await amqp.connect(mgmt.amqpUrlFor(user, password, v));
    await assert.rejects(amqp.connect(mgmt.amqpUrlFor(user, password, v)), /ConnectionClose/);
    await putLimit('user-limits', user, 'max-channels', { value: 1 });
    await first.createChannel();
    const closed = new Promise<Error>((resolve) => first.once('error', resolve));
    await assert.rejects(first.createChannel());
    assert.match((await closed).message, new RegExp(`530 \\(NOT-ALLOWED\\) with message "NOT_ALLOWED - number of channels opened for user '${user}' has reached the maximum allowed user limit of \\(1\\)"`));
  });
});

describe('limits in definitions', () => {
  it('exports vhost limits as vhost-limits parameters and user limits in the user, and imports them back', async () => {
    const v = await vhost();
    const [user] = await addUser(mgmt, 'management', null);
    await putLimit('vhost-limits', v, 'max-queues', { value: 7 });
    await putLimit('user-limits', user, 'max-connections', { value: 3 });
    const defs = (await mgmt.api('/api/definitions')).json;
    assert.deepEqual(
      defs.parameters.filter((p: { vhost: string }) => p.vhost === v),
      [{ value: { 'max-queues': 7 }, vhost: v, component: 'vhost-limits', name: 'limits' }],
    );
    assert.deepEqual(defs.users.find((u: { name: string }) => u.name === user).limits, { 'max-connections': 3 });
    const perVhost = (await mgmt.api(`/api/definitions/${enc(v)}`)).json;
    assert.deepEqual(perVhost.parameters, [{ value: { 'max-queues': 7 }, component: 'vhost-limits', name: 'limits' }]);

    // Clear both, import the export, and they are back.
    await mgmt.api(`/api/vhost-limits/${enc(v)}/max-queues`, { method: 'DELETE' });
    await mgmt.api(`/api/user-limits/${enc(user)}/max-connections`, { method: 'DELETE' });
    const r = await mgmt.api('/api/definitions', { method: 'POST', body: defs });
    assert.equal(r.status, 204, r.text);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-queues': 7 } }]);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, [{ user, value: { 'max-connections': 3 } }]);
  });

  it('imports a vhost created in the same file with its limits, and refuses bad limits before changing anything', async () => {
    const v = uniq('lim-imported');
    const r = await mgmt.api('/api/definitions', {
      method: 'POST',
      body: { vhosts: [{ name: v }], parameters: [{ value: { 'max-connections': 9, 'max-queues': 7 }, vhost: v, component: 'vhost-limits', name: 'limits' }] },
    });
    assert.equal(r.status, 204, r.text);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-connections': 9, 'max-queues': 7 } }]);
    const bad = await mgmt.api('/api/definitions', {
      method: 'POST',
      body: { parameters: [{ value: { 'max-foo': 7 }, vhost: v, component: 'vhost-limits', name: 'limits' }] },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.reason, `Validation failed\n\nUnrecognised terms [{<<"max-foo">>,7}] in limits\n (${v}/vhost-limits/limits)`);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-connections': 9, 'max-queues': 7 } }]);
    const badUser = await mgmt.api('/api/definitions', { method: 'POST', body: { users: [{ name: uniq('lim-u'), password_hash: '', tags: [], limits: { 'max-queues': 1 } }] } });
    assert.equal(badUser.status, 400);
  });

  it("aborts an import whose new queues would exceed a vhost's max-queues, with RabbitMQ's text", async () => {
    const v = await vhost();
    assert.equal((await mgmt.api(`/api/queues/${enc(v)}/hq`, { method: 'PUT', body: { durable: true } })).status, 201);
    await putLimit('vhost-limits', v, 'max-queues', { value: 1 });
    const q = (name: string) => ({ name, vhost: v, durable: true, auto_delete: false, arguments: {} });
    // An existing queue is not added.
    assert.equal((await mgmt.api('/api/definitions', { method: 'POST', body: { queues: [q('hq')] } })).status, 204);
    const r = await mgmt.api('/api/definitions', { method: 'POST', body: { queues: [q('hq'), q('hq2')] } });
    assert.equal(r.status, 400);
    assert.equal(r.json.reason, `Adding 1 queue(s) to virtual host "${v}" would exceed the limit of 1 queue(s).\n\nThis virtual host currently has 1 queue(s) defined.\n\nImport aborted!`);
    assert.equal((await mgmt.api(`/api/queues/${enc(v)}/hq2`)).status, 404);
    await putLimit('vhost-limits', v, 'max-queues', { value: 3 });
    assert.equal((await mgmt.api('/api/definitions', { method: 'POST', body: { queues: [q('hq'), q('hq2'), q('hq3')] } })).status, 204);
  });
});

describe('limits are durable', () => {
  it('survive a restart through the definitions file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-limits-'));
    const { startBroker } = await import('../../src/index');
    try {
      let b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', managementPort: 0, dataDir: dir });
      let base = `http://127.0.0.1:${b.managementPort}`;
      assert.equal((await request(base, '/api/vhosts/durable-lim', { method: 'PUT', body: {} })).status, 201);
      assert.equal((await request(base, '/api/vhost-limits/durable-lim/max-queues', { method: 'PUT', body: { value: 0 } })).status, 204);
      assert.equal((await request(base, '/api/vhost-limits/durable-lim/max-connections', { method: 'PUT', body: { value: 5 } })).status, 204);
      assert.equal((await request(base, '/api/user-limits/guest/max-channels', { method: 'PUT', body: { value: 10 } })).status, 204);
      await b.close();
      b = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', managementPort: 0, dataDir: dir });
      base = `http://127.0.0.1:${b.managementPort}`;
      try {
        assert.deepEqual((await request(base, '/api/vhost-limits/durable-lim')).json, [{ vhost: 'durable-lim', value: { 'max-queues': 0, 'max-connections': 5 } }]);
        assert.deepEqual((await request(base, '/api/user-limits/guest')).json, [{ user: 'guest', value: { 'max-channels': 10 } }]);
        const r = await request(base, '/api/queues/durable-lim/q', { method: 'PUT', body: { durable: true } });
        assert.equal(r.json.reason, "cannot declare queue 'q': queue limit in vhost 'durable-lim' (0) is reached");
      } finally {
        await b.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('warrenctl limits commands', () => {
  async function ctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const { main } = await import('../../src/cli/warrenctl');
    let stdout = '';
    let stderr = '';
    const code = await main(['--url', mgmt.base, ...args], {}, {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      readStdin: async () => '',
    });
    return { code, stdout, stderr };
  }

  it('set_vhost_limits replaces, clear_vhost_limits clears, list_vhost_limits shows', async () => {
    const v = await vhost();
    assert.deepEqual(await ctl(['-p', v, 'set_vhost_limits', '{"max-connections": 5, "max-queues": 3}']), { code: 0, stdout: `limits of vhost '${v}' set\n`, stderr: '' });
    assert.equal((await ctl(['-p', v, 'set_vhost_limits', '{"max-queues": 4}'])).code, 0);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, [{ vhost: v, value: { 'max-queues': 4 } }]);
    assert.deepEqual(JSON.parse((await ctl(['--json', '-p', v, 'list_vhost_limits'])).stdout), [{ vhost: v, value: { 'max-queues': 4 } }]);
    const bad = await ctl(['-p', v, 'set_vhost_limits', '{"max-foo": 1}']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Unrecognised terms/);
    assert.equal((await ctl(['-p', v, 'clear_vhost_limits'])).code, 0);
    assert.deepEqual((await mgmt.api(`/api/vhost-limits/${enc(v)}`)).json, []);
  });

  it('set_user_limits adds to the user’s limits, clear_user_limits removes one or all', async () => {
    const [user] = await addUser(mgmt, 'management', null);
    assert.equal((await ctl(['set_user_limits', user, '{"max-connections": 2}'])).code, 0);
    assert.equal((await ctl(['set_user_limits', user, '{"max-channels": 8}'])).code, 0);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, [{ user, value: { 'max-connections': 2, 'max-channels': 8 } }]);
    assert.equal((await ctl(['clear_user_limits', user, 'max-channels'])).code, 0);
    assert.deepEqual(JSON.parse((await ctl(['--json', 'list_user_limits', user])).stdout), [{ user, value: { 'max-connections': 2 } }]);
    assert.equal((await ctl(['clear_user_limits', user, 'all'])).code, 0);
    assert.deepEqual((await mgmt.api(`/api/user-limits/${enc(user)}`)).json, []);
  });
});
