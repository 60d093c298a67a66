/**
 * Replication operations of a mirrored queue, from its leader to each mirror. They travel as
 * publishes on the node-to-node link (exchange MIRROR_EXCHANGE, routing key = queue name), so
 * the mirror's confirm (sent after its own group commit) is the replication ack. The body is
 *
 *   u16 header length | header | payload
 *   header: u8 op | u32 epoch | f64 id | u8 len + exchange | u8 len + routing key | f64 publishedAt
 *
 * and for Enqueue the payload is the message body, its properties riding as the publish's
 * own properties byte for byte. Settle's payload is a list of f64 ids.
 */
export const MIRROR_EXCHANGE = 'amq.warren.mirror';

export const enum MirrorOp {
  /** A message entered the queue: id, exchange, routing key, properties, body. */
  Enqueue = 1,
  /** Messages left the queue for good. */
  Settle = 2,
  /** Start over for this epoch: drop everything held for the queue. */
  Reset = 3,
  /** The catch-up stream is complete; its confirm tells the leader the mirror is in sync. */
  SyncDone = 4,
}

export interface MirrorHeader {
  op: MirrorOp;
  epoch: number;
  id: number;
  exchange: string;
  routingKey: string;
  publishedAt: number;
}

export function encodeMirror(h: MirrorHeader, payload: Buffer | null): Buffer {
  const x = Buffer.from(h.exchange);
  const rk = Buffer.from(h.routingKey);
  const headerLength = 1 + 4 + 8 + 1 + x.length + 1 + rk.length + 8;
  const out = Buffer.allocUnsafe(2 + headerLength + (payload?.length ?? 0));
  let p = out.writeUInt16BE(headerLength, 0);
  p = out.writeUInt8(h.op, p);
  p = out.writeUInt32BE(h.epoch >>> 0, p);
  p = out.writeDoubleBE(h.id, p);
  p = out.writeUInt8(x.length, p);
  p += x.copy(out, p);
  p = out.writeUInt8(rk.length, p);
  p += rk.copy(out, p);
  p = out.writeDoubleBE(h.publishedAt, p);
  if (payload !== null) payload.copy(out, p);
  return out;
}

export function encodeSettle(epoch: number, ids: readonly number[]): Buffer {
  const payload = Buffer.allocUnsafe(ids.length * 8);
  for (let i = 0; i < ids.length; i++) payload.writeDoubleBE(ids[i]!, i * 8);
  return encodeMirror({ op: MirrorOp.Settle, epoch, id: 0, exchange: '', routingKey: '', publishedAt: 0 }, payload);
}

/** Throws RangeError on a malformed body (the link then closes the channel). */
export function decodeMirror(body: Buffer): { header: MirrorHeader; payload: Buffer } {
  const headerLength = body.readUInt16BE(0);
  if (2 + headerLength > body.length) throw new RangeError('mirror header overruns the body');
  let p = 2;
  const op = body.readUInt8(p) as MirrorOp;
  p += 1;
  const epoch = body.readUInt32BE(p);
  p += 4;
  const id = body.readDoubleBE(p);
  p += 8;
  const xl = body.readUInt8(p++);
  const exchange = body.toString('utf8', p, p + xl);
  p += xl;
  const rl = body.readUInt8(p++);
  const routingKey = body.toString('utf8', p, p + rl);
  p += rl;
  const publishedAt = body.readDoubleBE(p);
  return { header: { op, epoch, id, exchange, routingKey, publishedAt }, payload: body.subarray(2 + headerLength) };
}

export function settleIds(payload: Buffer): number[] {
  const ids: number[] = [];
  for (let p = 0; p + 8 <= payload.length; p += 8) ids.push(payload.readDoubleBE(p));
  return ids;
}

/** Empty basic properties (flags 0): what Settle, Reset and SyncDone carry. */
export const NO_PROPERTIES = Buffer.from([0, 0]);
