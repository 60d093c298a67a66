import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import * as amqp from 'amqplib';
import type { BrokerHandle } from '../../src/broker';
import { ExitCode, main } from '../../src/cli/warrenctl';
import { startManagement } from '../../src/http';
import { FakeCluster, withCluster } from '../http/fake-cluster';

let broker: BrokerHandle;
let url: string;

before(async () => {
  const { startBroker } = await import('../../src/index');
  broker = await startBroker({ port: 0, bind: '127.0.0.1', logLevel: 'silent', managementPort: 0 });
  url = `http://127.0.0.1:${broker.managementPort}`;
});

after(async () => {
  await broker.close();
});

/** A port nothing listens on (fetch refuses well-known ports such as 9 outright). */
function closedPort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** warrenctl in-process, against the test broker unless --url is given. */
async function ctl(args: string[], stdin = ''): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(['--url', url, ...args], {}, {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    readStdin: async () => stdin,
  });
  return { code, stdout, stderr };
}

async function ok(args: string[], stdin?: string): Promise<string> {
  const r = await ctl(args, stdin);
  assert.equal(r.code, 0, `warrenctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('warrenctl', () => {
  it('status prints the version, listeners and totals', async () => {
    const out = await ok(['status']);
    assert.match(out, /^Warren \S+ \(RabbitMQ API 3\.10\.8\)$/m);
    assert.match(out, new RegExp(`amqp 127\\.0\\.0\\.1:${broker.port}`));
    assert.match(out, /^connections: 0 {2}channels: 0/m);
    const json = JSON.parse(await ok(['status', '--json'])) as { overview: { product_name: string }; node: { name: string } };
    assert.equal(json.overview.product_name, 'Warren');
    assert.equal(json.node.name, broker.broker.config.clusterName);
  });

  it('declares, publishes to, lists, gets from, purges and deletes a queue', async () => {
    assert.equal(await ok(['declare_queue', 'work', '--durable', '--arguments', '{"x-max-length": 10}']), "queue 'work' declared\n");
    assert.equal(await ok(['publish', '', 'work', 'hello']), 'message published\n');
    assert.equal(await ok(['publish', 'amq.default', 'work'], 'from stdin'), 'message published\n');
    assert.equal(await ok(['publish', 'amq.direct', 'nowhere', 'x']), 'message published but not routed\n');
    const table = await ok(['list_queues']);
    assert.deepEqual(table.split('\n').slice(0, 2), ['name  messages_ready  messages_unacknowledged  consumers', 'work  2               0                        0']);
    assert.equal(await ok(['list_queues', 'name', 'durable', 'arguments']), 'name  durable  arguments\nwork  true     {"x-max-length":10}\n');
    const json = JSON.parse(await ok(['--json', 'list_queues'])) as Array<{ name: string; messages: number }>;
    assert.equal(json[0]!.messages, 2);
    const got = await ok(['get', 'work', '-c', '2']);
    assert.match(got, /hello/);
    assert.match(got, /from stdin/);
    assert.equal(await ok(['purge_queue', 'work']), "queue 'work' purged\n");
    assert.equal(await ok(['delete_queue', 'work', '--if-empty']), "queue 'work' deleted\n");
    const gone = await ctl(['delete_queue', 'work']);
    assert.equal(gone.code, ExitCode.FAILURE);
    assert.match(gone.stderr, /^warrenctl: not found: DELETE \/api\/queues\/%2F\/work$/m);
  });

  it('declares exchanges and binds and unbinds', async () => {
    await ok(['declare_exchange', 'events', 'topic', '--durable']);
    await ok(['declare_queue', 'audit']);
    assert.equal(await ok(['bind', 'events', 'audit', '-k', 'user.#']), "bound 'audit' to 'events'\n");
    assert.match(await ok(['list_bindings']), /^events\s+audit\s+queue\s+user\.#\s+user\.%23$/m);
    assert.match(await ok(['list_exchanges', 'name', 'type']), /^events\s+topic$/m);
    await ok(['unbind', 'events', 'audit', '-k', 'user.#']);
    assert.doesNotMatch(await ok(['list_bindings']), /events/);
    const missing = await ctl(['unbind', 'events', 'audit', '-k', 'user.#']);
    assert.equal(missing.code, ExitCode.FAILURE);
    await ok(['delete_exchange', 'events']);
  });

  it('manages users, tags, passwords, vhosts and permissions', async () => {
    await ok(['add_user', 'ops', 'pw1', '--tags', 'management']);
    await ok(['set_user_tags', 'ops', 'monitoring', 'policymaker']);
    let users = JSON.parse(await ok(['--json', 'list_users'])) as Array<{ name: string; tags: string[] }>;
    assert.deepEqual(users.find((u) => u.name === 'ops')!.tags, ['monitoring', 'policymaker']);
    // Tags changed, password kept.
    assert.equal((await ctl(['--user', 'ops', '--password', 'pw1', 'list_vhosts'])).code, 0);
    await ok(['change_password', 'ops', 'pw2']);
    assert.equal((await ctl(['--user', 'ops', '--password', 'pw1', 'list_vhosts'])).code, ExitCode.NOPERM);
    assert.equal((await ctl(['--user', 'ops', '--password', 'pw2', 'list_vhosts'])).code, 0);
    users = JSON.parse(await ok(['--json', 'list_users'])) as Array<{ name: string; tags: string[] }>;
    assert.deepEqual(users.find((u) => u.name === 'ops')!.tags, ['monitoring', 'policymaker'], 'tags kept');

    await ok(['add_vhost', 'staging', '--description', 'pre-production']);
    assert.match(await ok(['list_vhosts']), /^staging\s+0\s+pre-production$/m);
    await ok(['-p', 'staging', 'set_permissions', 'ops', '^ops\\.', '.*', '.*']);
    assert.match(await ok(['-p', 'staging', 'list_permissions']), /^ops\s+\^ops\\\.\s+\.\*\s+\.\*$/m);
    const conn = await amqp.connect(`amqp://ops:pw2@127.0.0.1:${broker.port}/staging`);
    await conn.close();
    await ok(['-p', 'staging', 'clear_permissions', 'ops']);
    await assert.rejects(amqp.connect(`amqp://ops:pw2@127.0.0.1:${broker.port}/staging`));
    await ok(['delete_vhost', 'staging']);
    await ok(['delete_user', 'ops']);
    assert.doesNotMatch(await ok(['list_users']), /ops/);
  });

  it('sets and clears policies', async () => {
    assert.equal(await ok(['set_policy', 'cap', '^cap\\.', '{"max-length": 2}', '--apply-to', 'queues', '--priority', '3']), "policy 'cap' set\n");
    const policies = JSON.parse(await ok(['--json', 'list_policies'])) as Array<Record<string, unknown>>;
    assert.deepEqual(policies, [{ vhost: '/', name: 'cap', pattern: '^cap\\.', 'apply-to': 'queues', definition: { 'max-length': 2 }, priority: 3 }]);
    const bad = await ctl(['set_policy', 'bad', '.*', '{"nope": 1}']);
    assert.equal(bad.code, ExitCode.FAILURE);
    assert.match(bad.stderr, /not recognised policy settings/);
    await ok(['set_policy', 'op', '.*', '{"max-length": 100}', '--operator', '--apply-to', 'queues']);
    assert.match(await ok(['list_operator_policies']), /^op\s/m);
    await ok(['clear_policy', 'op', '--operator']);
    await ok(['clear_policy', 'cap']);
    assert.equal(await ok(['list_policies']), 'name  pattern  apply-to  definition  priority\n');
  });

  it('exports and imports definitions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warrenctl-'));
    try {
      await ok(['declare_queue', 'keep-me', '--durable']);
      const file = join(dir, 'defs.json');
      await ok(['export_definitions', file]);
      const defs = JSON.parse(readFileSync(file, 'utf8')) as { queues: Array<{ name: string }> };
      assert.ok(defs.queues.some((q) => q.name === 'keep-me'));
      await ok(['delete_queue', 'keep-me']);
      await ok(['import_definitions', file]);
      assert.match(await ok(['list_queues', 'name']), /^keep-me$/m);
      const viaStdout = JSON.parse(await ok(['export_definitions', '-'])) as { rabbit_version: string };
      assert.equal(viaStdout.rabbit_version, '3.10.8');
      writeFileSync(file, '{not json');
      const bad = await ctl(['import_definitions', file]);
      assert.equal(bad.code, ExitCode.USAGE);
      assert.match(bad.stderr, /is not valid JSON/);
      await ok(['import_definitions', '-'], JSON.stringify({ queues: [{ name: 'from-stdin', vhost: '/', durable: true, auto_delete: false, arguments: {} }] }));
      assert.match(await ok(['list_queues', 'name']), /^from-stdin$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lists and closes connections', async () => {
    const conn = await amqp.connect(broker.url);
    const closed = new Promise<Error>((r) => conn.on('close', r));
    const rows = JSON.parse(await ok(['--json', 'list_connections'])) as Array<{ name: string }>;
    assert.equal(rows.length, 1);
    assert.match(await ok(['list_connections']), /guest\s+\/\s+0\s+running/);
    await ok(['close_connection', rows[0]!.name, 'maintenance']);
    assert.match((await closed).message, /maintenance/);
  });

  it('fails clearly: refused 77, unreachable 69, usage 2', async () => {
    const refused = await ctl(['--password', 'wrong', 'list_queues']);
    assert.equal(refused.code, ExitCode.NOPERM);
    assert.equal(refused.stderr, 'warrenctl: refused: Login failed\n');
    const down = await main(['--url', `http://127.0.0.1:${await closedPort()}`, 'status'], {}, { stdout: { write: () => true }, stderr: { write: () => true }, readStdin: async () => '' });
    assert.equal(down, ExitCode.UNAVAILABLE);
    assert.equal((await ctl(['no_such_command'])).code, ExitCode.USAGE);
    assert.equal((await ctl(['declare_queue'])).code, ExitCode.USAGE);
    assert.equal((await ctl(['declare_queue', 'q', '--arguments', 'nope'])).code, ExitCode.USAGE);
  });

  it('runs as bin/warrenctl.js with WARREN_URL and a non-zero status when unreachable', async () => {
    const bin = resolve(__dirname, '..', '..', '..', 'bin', 'warrenctl.js');
    const run = (env: Record<string, string>, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      new Promise((done) => {
        execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
          done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
        );
      });
    const up = await run({ WARREN_URL: url }, ['list_vhosts', 'name']);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /^\/$/m);
    const port = await closedPort();
    const down = await run({ WARREN_URL: `http://127.0.0.1:${port}` }, ['status']);
    assert.equal(down.code, 69);
    assert.equal(down.stderr, `warrenctl: cannot reach http://127.0.0.1:${port}: ECONNREFUSED\n`);
  });

  it('cluster_status lists the running nodes; list_queues shows where queues live', async () => {
    const name = broker.broker.config.clusterName;
    const solo = await ok(['cluster_status']);
    assert.match(solo, new RegExp(`^Cluster status of node ${name} \\.\\.\\.$`, 'm'));
    assert.match(solo, /^Running Nodes$/m);
    assert.match(solo, new RegExp(`^${name} {2,}\\d+ s$`, 'm'));
    await ok(['add_vhost', 'placement']);
    await ok(['-p', 'placement', 'declare_queue', 'placed']);
    assert.equal(await ok(['-p', 'placement', 'list_queues', 'name', 'node', 'slave_nodes']), `name    node${' '.repeat(name.length - 4)}  slave_nodes\nplaced  ${name}\n`);

    // The same broker seen as a member of a two-node cluster.
    const cluster = new FakeCluster();
    cluster.placements.set('placement/placed', { node: 'warren@b', mirrors: ['warren@a'], inSync: [], epoch: 3 });
    const clustered = await startManagement(withCluster(broker.broker, cluster), { port: 0, bind: '127.0.0.1' });
    try {
      const at = ['--url', `http://127.0.0.1:${clustered.port}`];
      const text = await ok([...at, 'cluster_status']);
      assert.match(text, /^Cluster status of node warren@a \.\.\.$/m);
      assert.match(text, /^warren@a {2}10\.0\.0\.1:5672 {2}\d+ s$/m);
      assert.match(text, /^warren@b {2}10\.0\.0\.2:5672 {2}\d+ s$/m);
      const json = JSON.parse(await ok([...at, '--json', 'cluster_status'])) as { node: string; running_nodes: string[] };
      assert.equal(json.node, 'warren@a');
      assert.deepEqual(json.running_nodes, ['warren@a', 'warren@b']);
      assert.equal(
        await ok([...at, '-p', 'placement', 'list_queues', 'name', 'node', 'slave_nodes', 'synchronised_slave_nodes']),
        'name    node      slave_nodes  synchronised_slave_nodes\nplaced  warren@b  warren@a\n',
      );
      assert.match(await ok([...at, 'status']), /^node: warren@a {2}cluster: /m);
    } finally {
      await clustered.close();
      await ok(['delete_vhost', 'placement']);
    }
  });
});
