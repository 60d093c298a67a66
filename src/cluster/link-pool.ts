import type { Message } from '../core/message';
import { LinkChannel, LinkConnection } from './link-client';

/** The internal user node-to-node links log in as; its password is the cluster's secret. */
export const CLUSTER_LINK_USER = 'warren-cluster-link';

/** What a link connection carries (see LinkPool.link). */
export type LinkPurpose = 'publish' | 'consume' | 'mirror';

interface Link {
  conn: Promise<LinkConnection>;
  publisher: Promise<LinkChannel> | null;
  /** The publisher channel once open: the per-message path then needs no extra promise. */
  ready: LinkChannel | null;
}

/** What the pool needs to know about peers. */
export interface LinkPeers {
  readonly nodeName: string;
  /** host:port of a live node's link listener, or undefined when it is down. */
  linkAddress(node: string): string | undefined;
  /** The cluster's secret (the links' password). */
  secret(): string;
}

/**
 * This node's outgoing node-to-node links, opened on first use and dropped when they close
 * or their node goes down: one connection per peer, vhost and purpose.
 */
export class LinkPool {
  private readonly links = new Map<string, Link>();
  private readonly sentOnce = new WeakMap<Message, Map<string, Promise<void>>>();

  constructor(private readonly peers: LinkPeers) {}

  async openChannel(node: string, vhost: string, purpose: LinkPurpose): Promise<LinkChannel> {
    const conn = await this.link(node, vhost, purpose).conn;
    return conn.openChannel();
  }

  /** Sends `msg` to `node` at most once, however many callers ask; resolves on its confirm. */
  publishOnce(node: string, vhost: string, msg: Message): Promise<void> {
    let sent = this.sentOnce.get(msg);
    if (sent === undefined) this.sentOnce.set(msg, (sent = new Map()));
    let p = sent.get(node);
    if (p === undefined) sent.set(node, (p = this.publish(node, vhost, msg)));
    return p;
  }

  /** A confirmed publish on the node's publishing link; resolves on its confirm. */
  publish(node: string, vhost: string, msg: Message): Promise<void> {
    if (this.peers.linkAddress(node) === undefined) return Promise.reject(new Error(`node ${node} is down`));
    const link = this.link(node, vhost, 'publish');
    const ready = link.ready;
    if (ready !== null && !ready.closed) return ready.publish(msg.exchange, msg.routingKey, false, msg.rawProperties, msg.body);
    link.ready = null;
    if (link.publisher === null || ready !== null) {
      link.publisher = link.conn.then(async (c) => {
        const ch = await c.openChannel();
        await ch.confirmSelect();
        link.ready = ch;
        return ch;
      });
    }
    // Messages sent while the channel opens keep their order: then-callbacks run in order.
    const { exchange, routingKey } = msg;
    const properties = msg.rawProperties;
    const body = msg.body;
    return link.publisher.then((ch) => ch.publish(exchange, routingKey, false, properties, body));
  }

  /** The node is gone: its links are destroyed (their channels report the loss). */
  dropNode(node: string): void {
    for (const [id, link] of [...this.links]) {
      if (!id.startsWith(`${node}\u0000`)) continue;
      this.links.delete(id);
      link.conn.then((c) => c.destroy(), () => undefined);
    }
  }

  closeAll(): void {
    for (const link of this.links.values()) link.conn.then((c) => c.destroy(), () => undefined);
    this.links.clear();
  }

  /**
   * One link connection per peer, vhost and purpose. Forwarded publishes get their own: the
   * home node may stop reading a publishing connection (flow control), and the acks of
   * consumers must never wait behind that, or a prefetch-limited consumer stalls for good.
   */
  private link(node: string, vhost: string, purpose: LinkPurpose): Link {
    const id = `${node}\u0000${vhost}\u0000${purpose}`;
    const existing = this.links.get(id);
    if (existing !== undefined) return existing;
    const address = this.peers.linkAddress(node);
    const at = address?.lastIndexOf(':') ?? -1;
    const conn =
      address === undefined
        ? Promise.reject(new Error(`node ${node} is down`))
        : LinkConnection.connect({
            host: address.slice(0, at),
            port: Number(address.slice(at + 1)),
            user: CLUSTER_LINK_USER,
            password: this.peers.secret(),
            vhost,
            connectionName: `cluster link ${this.peers.nodeName} -> ${node}`,
          });
    const entry: Link = { conn, publisher: null, ready: null };
    this.links.set(id, entry);
    const forget = (): void => {
      if (this.links.get(id) === entry) this.links.delete(id);
    };
    conn.then((c) => (c.onClose = forget), forget);
    return entry;
  }
}
