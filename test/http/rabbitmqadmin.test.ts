// Debian's rabbitmqadmin (from the rabbitmq-server package), unchanged, against Warren's API.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { managementSuite, uniq } from './fixture';

const RABBITMQADMIN = '/usr/bin/rabbitmqadmin';
const mgmt = managementSuite();

function admin(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'python3',
      [RABBITMQADMIN, '-H', '127.0.0.1', '-P', String(mgmt.handle.managementPort), '-u', 'guest', '-p', 'guest', ...args],
      { timeout: 10_000 },
      (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
    );
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await admin(...args);
  assert.equal(r.code, 0, `rabbitmqadmin ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('rabbitmqadmin', { skip: existsSync(RABBITMQADMIN) ? false : 'rabbitmqadmin is not installed (apt-get install rabbitmq-server)' }, () => {
  it('declares, lists, publishes, gets, purges and deletes', async () => {
    const q = uniq('q');
    const x = uniq('x');
    assert.match(await ok('declare', 'queue', `name=${q}`, 'durable=true', 'arguments={"x-max-length": 10}'), /queue declared/);
    assert.match(await ok('declare', 'exchange', `name=${x}`, 'type=topic'), /exchange declared/);
    assert.match(await ok('declare', 'binding', `source=${x}`, `destination=${q}`, 'routing_key=a.#'), /binding declared/);
    assert.match(await ok('publish', `exchange=${x}`, 'routing_key=a.b', 'payload=hello'), /Message published$/m);
    await ok('publish', `routing_key=${q}`, 'payload=world', 'properties={"content_type":"text/plain"}');

    const queues = JSON.parse(await ok('-f', 'raw_json', 'list', 'queues', 'name', 'messages', 'durable')) as Array<{ name: string; messages: number; durable: boolean }>;
    assert.deepEqual(queues.find((r) => r.name === q), { name: q, messages: 2, durable: true });
    const table = await ok('list', 'queues');
    assert.match(table, new RegExp(`\\| ${q} +\\| 2 +\\|`));
    assert.match(await ok('list', 'exchanges'), new RegExp(`\\| ${x} +\\| topic +\\|`));
    const bindings = JSON.parse(await ok('-f', 'raw_json', 'list', 'bindings')) as Array<{ source: string; routing_key: string }>;
    assert.ok(bindings.some((b) => b.source === x && b.routing_key === 'a.#'));

    const got = JSON.parse(await ok('-f', 'raw_json', 'get', `queue=${q}`, 'count=2')) as Array<{ payload: string; redelivered: boolean }>;
    assert.deepEqual(got.map((m) => m.payload), ['hello', 'world']);
    const again = JSON.parse(await ok('-f', 'raw_json', 'get', `queue=${q}`, 'ackmode=ack_requeue_false')) as Array<{ payload: string; redelivered: boolean }>;
    assert.equal(again[0]!.redelivered, true);
    assert.match(await ok('purge', 'queue', `name=${q}`), /queue purged/);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.messages, 0);

    assert.match(await ok('delete', 'binding', `source=${x}`, 'destination_type=queue', `destination=${q}`, 'properties_key=a.%23'), /binding deleted/);
    assert.match(await ok('delete', 'queue', `name=${q}`), /queue deleted/);
    assert.match(await ok('delete', 'exchange', `name=${x}`), /exchange deleted/);
    assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).status, 404);
  });

  it('manages vhosts, users, permissions and policies', async () => {
    const v = uniq('v');
    const u = uniq('u');
    await ok('declare', 'vhost', `name=${v}`);
    await ok('declare', 'user', `name=${u}`, 'password=pw', 'tags=management');
    await ok('declare', 'permission', `vhost=${v}`, `user=${u}`, 'configure=.*', 'write=.*', 'read=.*');
    await ok('-V', v, 'declare', 'policy', 'name=cap', 'pattern=^q', 'definition={"max-length": 5}', 'apply-to=queues');
    assert.deepEqual((await mgmt.api('/api/whoami', { auth: [u, 'pw'] })).json, { name: u, tags: ['management'] });
    const policies = JSON.parse(await ok('-f', 'raw_json', 'list', 'policies')) as Array<{ name: string; vhost: string; definition: unknown }>;
    assert.deepEqual(policies.find((p) => p.vhost === v), { vhost: v, name: 'cap', pattern: '^q', 'apply-to': 'queues', definition: { 'max-length': 5 }, priority: 0 });
    assert.match(await ok('list', 'users'), new RegExp(u));
    assert.match(await ok('list', 'vhosts'), new RegExp(v));
    assert.match(await ok('list', 'permissions'), new RegExp(u));
    assert.match(await ok('show', 'overview'), /3\.10\.8/);
    assert.match(await ok('list', 'nodes'), /disc/);
    await ok('-V', v, 'delete', 'policy', 'name=cap');
    await ok('delete', 'permission', `vhost=${v}`, `user=${u}`);
    await ok('delete', 'user', `name=${u}`);
    await ok('delete', 'vhost', `name=${v}`);
    assert.equal((await mgmt.api(`/api/vhosts/${v}`)).status, 404);
  });

  it('exports and imports definitions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warren-defs-'));
    try {
      const q = uniq('q');
      await mgmt.api(`/api/queues/%2F/${q}`, { method: 'PUT', body: { durable: true } });
      const file = join(dir, 'defs.json');
      await ok('export', file);
      const defs = JSON.parse(readFileSync(file, 'utf8')) as { queues: Array<{ name: string }> };
      assert.ok(defs.queues.some((x) => x.name === q));
      await mgmt.api(`/api/queues/%2F/${q}`, { method: 'DELETE' });
      await ok('import', file);
      assert.equal((await mgmt.api(`/api/queues/%2F/${q}`)).json.durable, true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says so when refused or when something is missing', async () => {
    const refused = await admin('-u', 'guest', '-p', 'wrong', 'list', 'queues');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /Access refused/);
    const missing = await admin('delete', 'queue', 'name=does-not-exist');
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /Not found/);
    const bad = await admin('declare', 'exchange', 'name=bad', 'type=nope');
    assert.match(bad.stderr, /unknown exchange type 'nope'/);
  });
});
