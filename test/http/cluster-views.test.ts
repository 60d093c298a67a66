// The management views of a clustered node, without a cluster: a second management server on
// the suite's broker sees a fake membership (ClusterView is structural), while the suite's own
// server shows the same model stand-alone.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startManagement, type ManagementHandle } from '../../src/http';
import { FakeCluster, withCluster } from './fake-cluster';
import { managementSuite, request, uniq, type ApiResponse } from './fixture';

const mgmt = managementSuite();

const cluster = new FakeCluster();
let clustered: Promise<ManagementHandle> | undefined;

// Started on first use: the suite's broker exists only once its own before hook has run.
after(async () => {
  await (await clustered)?.close();
});

async function api(path: string): Promise<ApiResponse> {
  clustered ??= startManagement(withCluster(mgmt.handle.broker, cluster), { port: 0, bind: '127.0.0.1' });
  return request(`http://127.0.0.1:${(await clustered).port}`, path);
}

async function declare(name: string): Promise<void> {
  const r = await mgmt.api(`/api/queues/%2F/${name}`, { method: 'PUT', body: { durable: true } });
  assert.equal(r.status, 201, r.text);
}

describe('stand-alone', () => {
  it('places every queue on this node, unmirrored', async () => {
    const q = uniq('solo');
    await declare(q);
    const node = mgmt.handle.broker.config.clusterName;
    const want = { node, slave_nodes: [], synchronised_slave_nodes: [], leader: node, members: [node], in_sync: [node], epoch: null };
    const one = (await mgmt.api(`/api/queues/%2F/${q}`)).json;
    const listed = ((await mgmt.api('/api/queues/%2F')).json as Array<Record<string, unknown>>).find((x) => x.name === q)!;
    for (const view of [one, listed]) for (const [k, v] of Object.entries(want)) assert.deepEqual(view[k], v, k);
  });

  it('lists one node, named after the cluster, and the overview agrees', async () => {
    const nodes = (await mgmt.api('/api/nodes')).json;
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0].name, mgmt.handle.broker.config.clusterName);
    assert.equal('amqp_address' in nodes[0], false);
    assert.equal((await mgmt.api('/api/overview')).json.node, nodes[0].name);
  });
});

describe('in a cluster', () => {
  it('lists every live member: this node with its metrics, the others with what etcd knows', async () => {
    const r = await api('/api/nodes');
    assert.equal(r.status, 200);
    const nodes = r.json as Array<Record<string, unknown>>;
    assert.deepEqual(nodes.map((n) => n.name), ['warren@a', 'warren@b']);
    for (const n of nodes) {
      assert.equal(n.running, true);
      assert.equal(n.type, 'disc');
    }
    const [a, b] = nodes as [Record<string, unknown>, Record<string, unknown>];
    assert.ok((a.mem_used as number) > 0);
    assert.equal(a.amqp_address, '10.0.0.1:5672');
    assert.equal(b.amqp_address, '10.0.0.2:5672');
    assert.equal(b.cluster_link_address, '10.0.0.2:25672');
    assert.equal(b.mem_used, 0);
    assert.equal(b.fd_used, 0);
    assert.ok((b.uptime as number) >= 60_000);
    assert.equal((await api('/api/nodes/warren%40b')).json.name, 'warren@b');
    assert.equal((await api('/api/nodes/warren%40a')).json.amqp_address, '10.0.0.1:5672');
    assert.equal((await api('/api/nodes/warren%40c')).status, 404);
  });

  it('still lists this node when its own lease is missing from the member list', async () => {
    const saved = cluster.members;
    cluster.members = saved.filter((n) => n.name !== 'warren@a');
    try {
      const nodes = (await api('/api/nodes')).json as Array<Record<string, unknown>>;
      assert.deepEqual(nodes.map((n) => n.name), ['warren@a', 'warren@b']);
      assert.ok((nodes[0]!.mem_used as number) > 0);
    } finally {
      cluster.members = saved;
    }
  });

  it("names this node in the overview and every member in a vhost's cluster_state", async () => {
    const o = (await api('/api/overview')).json;
    assert.equal(o.node, 'warren@a');
    assert.equal(o.cluster_name, mgmt.handle.broker.config.clusterName);
    assert.deepEqual((await api('/api/vhosts/%2F')).json.cluster_state, { 'warren@a': 'running', 'warren@b': 'running' });
  });

  it('shows where a mirrored queue lives, in the list and the single-queue view', async () => {
    const q = uniq('mirrored');
    await declare(q);
    cluster.placements.set(`//${q}`, { node: 'warren@b', mirrors: ['warren@a', 'warren@c'], inSync: ['warren@a'], epoch: 7 });
    const one = (await api(`/api/queues/%2F/${q}`)).json;
    const listed = ((await api('/api/queues/%2F')).json as Array<Record<string, unknown>>).find((x) => x.name === q)!;
    for (const view of [one, listed]) {
      assert.equal(view.node, 'warren@b');
      assert.deepEqual(view.slave_nodes, ['warren@a', 'warren@c']);
      assert.deepEqual(view.synchronised_slave_nodes, ['warren@a']);
      assert.equal(view.leader, 'warren@b');
      assert.deepEqual(view.members, ['warren@b', 'warren@a', 'warren@c']);
      assert.deepEqual(view.in_sync, ['warren@b', 'warren@a']);
      assert.equal(view.epoch, 7);
    }
    const cols = (await api(`/api/queues/%2F?columns=name,node,slave_nodes`)).json as Array<Record<string, unknown>>;
    assert.deepEqual(cols.find((x) => x.name === q), { name: q, node: 'warren@b', slave_nodes: ['warren@a', 'warren@c'] });
  });

  it('places an unmirrored queue on its home node', async () => {
    const q = uniq('homed');
    await declare(q);
    cluster.placements.set(`//${q}`, { node: 'warren@b', mirrors: [], inSync: [], epoch: null });
    const view = (await api(`/api/queues/%2F/${q}`)).json;
    assert.equal(view.node, 'warren@b');
    assert.deepEqual(view.members, ['warren@b']);
    assert.deepEqual(view.slave_nodes, []);
    assert.equal(view.epoch, null);
  });
});
