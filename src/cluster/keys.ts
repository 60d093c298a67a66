/**
 * The cluster's etcd key layout, all under the configured prefix:
 *
 *   <p>/secret                 shared secret for node-to-node links (created by the first node)
 *   <p>/nodes/<node>           {amqp, link, started}; bound to the node's lease
 *   <p>/meta/<kind>/<...>      one key per metadata entity (see MetaKind); values are JSON
 *   <p>/ha/<vhost>/<queue>     a mirrored queue's {epoch, leader, members, isr}
 *
 * Name segments are percent-encoded so '/' inside vhost or queue names cannot split a key.
 */
export class ClusterKeys {
  readonly secret: string;
  readonly nodes: string;
  readonly meta: string;
  readonly ha: string;

  constructor(readonly prefix: string) {
    const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
    this.secret = `${p}/secret`;
    this.nodes = `${p}/nodes/`;
    this.meta = `${p}/meta/`;
    this.ha = `${p}/ha/`;
  }

  /** A mirrored queue's replication record: leader, epoch, members and in-sync set. */
  haKey(vhost: string, queue: string): string {
    return `${this.ha}${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`;
  }

  parseHa(key: string): { vhost: string; queue: string } | null {
    if (!key.startsWith(this.ha)) return null;
    const [v, q] = key.slice(this.ha.length).split('/');
    if (v === undefined || q === undefined) return null;
    return { vhost: decodeURIComponent(v), queue: decodeURIComponent(q) };
  }

  node(name: string): string {
    return this.nodes + encodeURIComponent(name);
  }

  nodeName(key: string): string {
    return decodeURIComponent(key.slice(this.nodes.length));
  }

  /** A metadata key from its kind and name segments. */
  metaKey(kind: MetaKind, ...parts: string[]): string {
    return `${this.meta}${kind}/${parts.map(encodeURIComponent).join('/')}`;
  }

  /** Kind and decoded segments of a metadata key (the inverse of metaKey). */
  parseMeta(key: string): { kind: MetaKind; parts: string[] } | null {
    if (!key.startsWith(this.meta)) return null;
    const [kind, ...rest] = key.slice(this.meta.length).split('/');
    if (!isMetaKind(kind)) return null;
    return { kind, parts: rest.map(decodeURIComponent) };
  }
}

/**
 * Metadata kinds in dependency order: a vhost before what lives in it, exchanges and queues
 * before the bindings between them. Creations apply in this order, deletions in reverse.
 */
export const META_KINDS = ['vhost', 'user', 'perm', 'topicperm', 'policy', 'limits', 'exchange', 'queue', 'binding'] as const;
export type MetaKind = (typeof META_KINDS)[number];

function isMetaKind(s: string | undefined): s is MetaKind {
  return (META_KINDS as readonly string[]).includes(s ?? '');
}

export function kindRank(kind: MetaKind): number {
  return META_KINDS.indexOf(kind);
}
