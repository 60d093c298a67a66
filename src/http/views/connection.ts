import type { Channel } from '../../amqp/channel';
import type { Connection } from '../../amqp/connection';
import { CH, CONN } from '../../observability/broker-stats';
import type { Management } from '../context';
import { jsonValue } from './json';
import { withRate } from './stats';

/** Connection names are "peer:port -> local:port" (RabbitMQ's format); split them back. */
export function endpoints(conn: Connection): { peerHost: string; peerPort: number; host: string; port: number } {
  const [peer = '', local = ''] = conn.name.split(' -> ');
  const p = splitHostPort(peer);
  const l = splitHostPort(local);
  return { peerHost: p.host, peerPort: p.port, host: l.host, port: l.port };
}

function splitHostPort(s: string): { host: string; port: number } {
  const at = s.lastIndexOf(':');
  if (at < 0) return { host: s, port: 0 };
  return { host: unmapped(s.slice(0, at)), port: Number(s.slice(at + 1)) || 0 };
}

/** IPv4 peers of a dual-stack listener appear as ::ffff:a.b.c.d; RabbitMQ shows a.b.c.d. */
function unmapped(host: string): string {
  return host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
}

export function peerOf(conn: Connection): { peer_host: string; peer_port: number } {
  const e = endpoints(conn);
  return { peer_host: e.peerHost, peer_port: e.peerPort };
}

export function channelName(ch: Channel): string {
  return `${ch.conn.name} (${ch.id})`;
}

/** Client properties as JSON: strings as they are, other field values decoded. */
function clientPropertiesJson(props: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(props)) out[k] = fieldJson(v);
  return out;
}

function fieldJson(v: unknown): unknown {
  if (typeof v !== 'object' || v === null || !('type' in v)) return jsonValue(v);
  const f = v as { type: string; value?: unknown };
  switch (f.type) {
    case 'S':
      return Buffer.isBuffer(f.value) ? f.value.toString('utf8') : f.value;
    case 'F':
      return Object.fromEntries((f.value as Array<[string, unknown]>).map(([k, x]) => [k, fieldJson(x)]));
    case 'A':
      return (f.value as unknown[]).map(fieldJson);
    case 'V':
      return null;
    case 'D': {
      const d = v as unknown as { scale: number; value: number };
      return d.value / 10 ** d.scale;
    }
    default:
      return jsonValue(f.value);
  }
}

export function connectionView(m: Management, conn: Connection): Record<string, unknown> {
  const e = endpoints(conn);
  const props = clientPropertiesJson(conn.clientProperties);
  const tls = conn.tlsInfo;
  const view: Record<string, unknown> = {
    name: conn.name,
    node: m.nodeName,
    vhost: conn.vhost?.name ?? null,
    user: conn.userName,
    user_who_performed_action: conn.userName,
    host: e.host,
    port: e.port,
    peer_host: e.peerHost,
    peer_port: e.peerPort,
    protocol: 'AMQP 0-9-1',
    type: 'network',
    state: conn.isOpen ? 'running' : 'starting',
    auth_mechanism: 'PLAIN',
    channels: conn.channelCount,
    channel_max: conn.negotiatedChannelMax,
    frame_max: conn.writer.frameMax,
    timeout: m.broker.config.heartbeat,
    connected_at: conn.connectedAt,
    client_properties: props,
    user_provided_name: typeof props.connection_name === 'string' ? props.connection_name : undefined,
    ssl: tls !== null,
    ssl_protocol: tls?.protocol ?? null,
    ssl_key_exchange: null,
    ssl_cipher: tls?.cipher ?? null,
    ssl_hash: null,
    peer_cert_subject: tls?.peerSubject ?? null,
    peer_cert_issuer: null,
    peer_cert_validity: null,
    send_pend: conn.writer.pendingBytes,
  };
  withRate(view, 'recv_oct', conn.bytesReceived, m.stats.connectionRate(conn, CONN.recvOct));
  withRate(view, 'send_oct', conn.bytesSent, m.stats.connectionRate(conn, CONN.sendOct));
  if (view.user_provided_name === undefined) delete view.user_provided_name;
  return view;
}

export function channelView(m: Management, ch: Channel): Record<string, unknown> {
  const conn = ch.conn;
  const stats: Record<string, unknown> = {};
  withRate(stats, 'publish', ch.stats.published, m.stats.channelRate(ch, CH.publish));
  withRate(stats, 'deliver_get', ch.stats.delivered, m.stats.channelRate(ch, CH.deliverGet));
  withRate(stats, 'deliver', ch.stats.delivered, m.stats.channelRate(ch, CH.deliverGet));
  withRate(stats, 'ack', ch.stats.acked, m.stats.channelRate(ch, CH.ack));
  return {
    name: channelName(ch),
    number: ch.id,
    node: m.nodeName,
    vhost: conn.vhost?.name ?? null,
    user: conn.userName,
    user_who_performed_action: conn.userName,
    connection_details: { name: conn.name, ...peerOf(conn) },
    state: 'running',
    consumer_count: ch.consumers.size,
    prefetch_count: ch.prefetch,
    global_prefetch_count: 0,
    messages_unacknowledged: ch.unackedMessages,
    messages_unconfirmed: 0,
    messages_uncommitted: 0,
    acks_uncommitted: 0,
    confirm: ch.inConfirmMode,
    transactional: ch.transactional,
    message_stats: stats,
  };
}
