import type { Exchange } from '../core/exchanges/exchange';
import { Message } from '../core/message';
import { AmqpError } from '../protocol/errors';
import { tableGet } from '../protocol/field-table';
import { decodeProperties, encodeProperties, readExpiration } from '../protocol/properties';
import type { Channel } from './channel';
import { applyMirrorOp, routeInCluster, ROUTED_REMOTELY } from './channel-cluster';
import { ConfirmTracker } from './confirms';
import type { PendingPublish } from './content-assembler';
import { REPLY_TO, REPLY_TO_PREFIX } from './direct-reply';
import { MIRROR_EXCHANGE } from '../cluster/mirror-protocol';
import type { Transaction } from './transaction';
import type { Delivery } from './unacked';
import { EXPIRATION_FLAG, INSPECTED_PROPERTIES, parseExpiration, routingKeysOf } from './publish-properties';

/**
 * A channel's publishing side, from an assembled basic.publish to routing, basic.return and
 * the publisher confirm. One per channel, so the per-message path allocates only the Message.
 */
export class ChannelPublisher {
  /** Non-null once confirm.select was received. */
  confirms: ConfirmTracker | null = null;
  private unregisteredSyncs = 0;
  /** Some of them wait for the delayed-message store's fsync too. */
  private delayedSyncs = false;

  constructor(readonly ch: Channel) {}

  /** A complete message: checked, then routed now or, inside a transaction, at commit. */
  publish(p: PendingPublish, properties: Buffer, body: Buffer, tx: Transaction<Delivery> | null): void {
    const ch = this.ch;
    const conn = ch.conn;
    const vhost = ch.session.vhost;
    if (conn.isClusterLink && p.exchange === MIRROR_EXCHANGE) {
      applyMirrorOp(this, p.routingKey, properties, body);
      return;
    }
    const exchange = vhost.exchanges.get(p.exchange);
    if (exchange === undefined) throw vhost.noExchange(p.exchange).at(60, 40);
    const denied = ch.session.access.check('write', 'exchange', p.exchange);
    if (denied !== undefined) throw new AmqpError('ACCESS_REFUSED', denied, 60, 40);
    if (exchange.type === 'topic') {
      const topicDenied = ch.session.access.checkTopic('write', p.exchange, p.routingKey);
      if (topicDenied !== undefined) throw new AmqpError('ACCESS_REFUSED', topicDenied, 60, 40);
    }
    if (exchange.internal) {
      throw new AmqpError('ACCESS_REFUSED', `cannot publish to internal exchange '${p.exchange}' in vhost '${vhost.name}'`, 60, 40);
    }
    let extraKeys: string[] | null = null;
    let bcc: string[] | null = null;
    const flags = properties.length >= 2 ? properties.readUInt16BE(0) : 0;
    if ((flags & INSPECTED_PROPERTIES) !== 0) {
      const inspected = this.inspectProperties(properties);
      properties = inspected.raw;
      extraKeys = inspected.extraKeys;
      bcc = inspected.bcc;
    }
    conn.notePublish();
    const msg = new Message(p.exchange, p.routingKey, properties, body);
    msg.bcc = bcc;
    if ((flags & EXPIRATION_FLAG) !== 0) msg.ttl = parseExpiration(readExpiration(properties, 0, properties.length)!);
    ch.stats.published++;
    if (tx !== null) {
      tx.publishes.push({ exchange, msg, mandatory: p.mandatory, extraKeys });
      return;
    }
    this.route(exchange, msg, p.mandatory, extraKeys);
  }

  /**
   * The few properties the broker acts on before routing: user-id must match the login
   * (RabbitMQ validates it), a reply-to of amq.rabbitmq.reply-to becomes this channel's
   * reply queue, and CC/BCC headers add routing keys (BCC is stripped before delivery).
   * The caller only gets here when one of those property flags is set.
   */
  private inspectProperties(raw: Buffer): { raw: Buffer; extraKeys: string[] | null; bcc: string[] | null } {
    const conn = this.ch.conn;
    const props = decodeProperties(raw, 0, raw.length);
    let changed = false;
    let extraKeys: string[] | null = null;
    let bcc: string[] | null = null;
    if (props.userId !== undefined && props.userId !== conn.userName) {
      throw new AmqpError('PRECONDITION_FAILED', `user_id property set to '${props.userId}' but authenticated user was '${conn.userName}'`, 60, 40);
    }
    if (props.replyTo === REPLY_TO) {
      const replyQueue = this.ch.replyQueue;
      if (replyQueue === null) {
        throw new AmqpError('PRECONDITION_FAILED', 'fast reply consumer does not exist', 60, 40);
      }
      props.replyTo = replyQueue.name;
      changed = true;
    }
    if (props.headers !== undefined) {
      const cc = routingKeysOf(tableGet(props.headers, 'CC'));
      const bccKeys = routingKeysOf(tableGet(props.headers, 'BCC'));
      if (cc.length !== 0 || bccKeys.length !== 0) extraKeys = [...cc, ...bccKeys];
      if (bccKeys.length !== 0) bcc = bccKeys;
      if (tableGet(props.headers, 'BCC') !== undefined) {
        props.headers = props.headers.filter(([k]) => k !== 'BCC');
        changed = true;
      }
    }
    return { raw: changed ? encodeProperties(props) : raw, extraKeys, bcc };
  }

  route(exchange: Exchange, msg: Message, mandatory: boolean, extraKeys: string[] | null): void {
    const ch = this.ch;
    const conn = ch.conn;
    const vhost = ch.session.vhost;
    const cluster = conn.broker.cluster;
    let routed: number;
    if (cluster == null) routed = vhost.publish(exchange, msg, extraKeys);
    else {
      routed = routeInCluster(this, cluster, exchange, msg, mandatory, extraKeys);
      if (routed === ROUTED_REMOTELY) return;
    }
    if (routed === 0 && exchange.name === '' && msg.routingKey.startsWith(REPLY_TO_PREFIX)) {
      const replyQueue = conn.broker.directReply.lookup(msg.routingKey);
      if (replyQueue !== undefined) {
        replyQueue.enqueue(msg);
        routed = 1;
      }
    }
    const rejected = vhost.lastPublishRejected;
    // A mandatory message held by a delayed exchange is judged when its delay ends.
    if (mandatory && vhost.lastPublishHeld) vhost.returnHeldTo(ch);
    if (vhost.backloggedQueue !== null) {
      conn.throttleFor(vhost.backloggedQueue);
      vhost.backloggedQueue = null;
    }
    if (routed === 0 && mandatory && !rejected) {
      conn.writer.basicReturn(ch.id, 312, 'NO_ROUTE', msg.exchange, msg.routingKey, msg.rawProperties, msg.body);
    }
    const confirms = this.confirms;
    if (confirms !== null) {
      const seq = confirms.next();
      if (rejected) confirms.rejected(seq);
      else if (msg.storeId !== 0 || msg.delayDurable) {
        if (msg.delayDurable) this.delayedSyncs = true;
        this.awaitSync(confirms, seq);
      } else confirms.confirmed(seq);
    }
  }

  /**
   * A persistent message reached a durable queue: its confirm waits for the group commit.
   * Registration with the store happens once per channel per I/O turn, in flushConfirms,
   * after the turn's publishes were appended, so one sync callback covers all of them.
   */
  awaitSync(confirms: ConfirmTracker, seq: number): void {
    confirms.awaitSync(seq);
    if (this.unregisteredSyncs++ === 0) this.ch.conn.requestFlush();
  }

  flushConfirms(): void {
    const confirms = this.confirms;
    if (confirms === null) return;
    const conn = this.ch.conn;
    if (this.unregisteredSyncs !== 0) {
      const n = this.unregisteredSyncs;
      this.unregisteredSyncs = 0;
      const delayed = this.delayedSyncs;
      this.delayedSyncs = false;
      conn.broker.afterSync(delayed, (err) => {
        if (this.confirms !== confirms) return;
        if (err !== null) conn.log.error({ err: err.message }, 'message store sync failed; nacking publishes');
        confirms.syncedOldest(n, err === null);
      });
    }
    confirms.flush(conn.writer);
  }
}
