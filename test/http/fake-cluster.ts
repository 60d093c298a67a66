// A stand-in for cluster membership (the management API sees it through the structural
// ClusterView), so the clustered views can be tested on one stand-alone broker.
import type { ManagedBroker } from '../../src/http';
import type { ClusterMember, ClusterView, QueuePlacement } from '../../src/http/context';

export const STARTED = Date.now() - 60_000;

export class FakeCluster implements ClusterView {
  readonly nodeName = 'warren@a';
  members: ClusterMember[] = [
    { name: 'warren@b', amqp: '10.0.0.2:5672', link: '10.0.0.2:25672', started: STARTED },
    { name: 'warren@a', amqp: '10.0.0.1:5672', link: '10.0.0.1:25672', started: STARTED },
  ];
  readonly placements = new Map<string, QueuePlacement>();

  nodeList(): ClusterMember[] {
    return this.members;
  }

  describeQueue(vhost: string, name: string): QueuePlacement {
    return this.placements.get(`${vhost}/${name}`) ?? { node: this.nodeName, mirrors: [], inSync: [], epoch: null };
  }
}

/** The suite's broker seen through a ManagedBroker that adds the fake membership. */
export function withCluster(b: ManagedBroker, c: ClusterView): ManagedBroker {
  return {
    config: b.config,
    logger: b.logger,
    users: b.users,
    vhosts: b.vhosts,
    policies: b.policies,
    limits: b.limits,
    connections: b.connections,
    version: b.version,
    addVhost: (name) => b.addVhost(name),
    deleteVhost: (name) => b.deleteVhost(name),
    metadataChanged: () => b.metadataChanged(),
    cluster: c,
  };
}
