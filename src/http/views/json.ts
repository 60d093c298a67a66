import type { Message } from '../../core/message';
import { FieldTable, fromPlain, tablePlain } from '../../protocol/field-table';
import { BasicProperties, encodeProperties } from '../../protocol/properties';
import { badRequest } from '../errors';

/**
 * Field-table values as JSON: 64-bit integers become numbers when safe (strings otherwise)
 * and byte arrays become base64 text, since JSON has neither.
 */
export function jsonValue(x: unknown): unknown {
  if (typeof x === 'bigint') return Number.isSafeInteger(Number(x)) ? Number(x) : x.toString();
  if (Buffer.isBuffer(x)) return x.toString('base64');
  if (Array.isArray(x)) return x.map(jsonValue);
  if (typeof x === 'object' && x !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) out[k] = jsonValue(v);
    return out;
  }
  return x;
}

export function tableJson(table: FieldTable): Record<string, unknown> {
  return jsonValue(tablePlain(table)) as Record<string, unknown>;
}

/**
 * JSON arguments (queue, exchange, binding) as a field table, with the types RabbitMQ's
 * management gives them: integers → long, other numbers → double, strings → longstr.
 */
export function argumentsTable(args: Record<string, unknown> | undefined): FieldTable {
  if (args === undefined) return [];
  try {
    return fromPlain(args);
  } catch (err) {
    throw badRequest(`invalid arguments: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** AMQP basic properties as the management API shows them (snake_case, headers as JSON). */
export function propertiesJson(p: BasicProperties): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (p.contentType !== undefined) out.content_type = p.contentType;
  if (p.contentEncoding !== undefined) out.content_encoding = p.contentEncoding;
  if (p.headers !== undefined) out.headers = tableJson(p.headers);
  if (p.deliveryMode !== undefined) out.delivery_mode = p.deliveryMode;
  if (p.priority !== undefined) out.priority = p.priority;
  if (p.correlationId !== undefined) out.correlation_id = p.correlationId;
  if (p.replyTo !== undefined) out.reply_to = p.replyTo;
  if (p.expiration !== undefined) out.expiration = p.expiration;
  if (p.messageId !== undefined) out.message_id = p.messageId;
  if (p.timestamp !== undefined) out.timestamp = jsonValue(p.timestamp);
  if (p.type !== undefined) out.type = p.type;
  if (p.userId !== undefined) out.user_id = p.userId;
  if (p.appId !== undefined) out.app_id = p.appId;
  if (p.clusterId !== undefined) out.cluster_id = p.clusterId;
  return out;
}

const STRING_PROPERTIES: Array<[string, keyof BasicProperties]> = [
  ['content_type', 'contentType'],
  ['content_encoding', 'contentEncoding'],
  ['correlation_id', 'correlationId'],
  ['reply_to', 'replyTo'],
  ['expiration', 'expiration'],
  ['message_id', 'messageId'],
  ['type', 'type'],
  ['user_id', 'userId'],
  ['app_id', 'appId'],
  ['cluster_id', 'clusterId'],
];

/**
 * JSON properties (as sent to /publish) to encoded AMQP property bytes. Unknown keys are
 * ignored, as RabbitMQ does; wrongly typed known keys are a 400 with RabbitMQ's reason.
 */
export function encodeJsonProperties(json: Record<string, unknown>): { raw: Buffer; props: BasicProperties } {
  const p: BasicProperties = {};
  for (const [key, field] of STRING_PROPERTIES) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') throw badRequest(['not_string', key]);
    (p as Record<string, unknown>)[field] = v;
  }
  for (const [key, field, max] of [['delivery_mode', 'deliveryMode', 255], ['priority', 'priority', 255]] as const) {
    const v = json[key];
    if (v === undefined || v === null) continue;
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) throw badRequest(['not_int', key]);
    p[field] = n;
  }
  const ts = json.timestamp;
  if (ts !== undefined && ts !== null) {
    if (typeof ts !== 'number' || !Number.isSafeInteger(ts) || ts < 0) throw badRequest(['not_int', 'timestamp']);
    p.timestamp = ts;
  }
  const headers = json.headers;
  if (headers !== undefined && headers !== null) {
    if (typeof headers !== 'object' || Array.isArray(headers)) throw badRequest(['not_table', 'headers']);
    p.headers = argumentsTable(headers as Record<string, unknown>);
  }
  if (p.expiration !== undefined && !/^\d+$/.test(p.expiration)) {
    throw badRequest(`invalid expiration '${p.expiration}'`);
  }
  return { raw: encodeProperties(p), props: p };
}

/** A message's payload for JSON: text when `auto` and the bytes are valid UTF-8, base64 otherwise. */
export function payloadJson(body: Buffer, encoding: 'auto' | 'base64', truncate?: number): { payload: string; payload_encoding: 'string' | 'base64' } {
  const bytes = truncate !== undefined && truncate >= 0 && body.length > truncate ? body.subarray(0, truncate) : body;
  if (encoding === 'auto') {
    const text = bytes.toString('utf8');
    if (Buffer.from(text, 'utf8').equals(bytes)) return { payload: text, payload_encoding: 'string' };
  }
  return { payload: bytes.toString('base64'), payload_encoding: 'base64' };
}

/** The parts of a message management shows for /get and the browse endpoint. */
export function messageJson(msg: Message, encoding: 'auto' | 'base64', truncate?: number): Record<string, unknown> {
  return {
    payload_bytes: msg.bodySize,
    exchange: msg.exchange,
    routing_key: msg.routingKey,
    properties: propertiesJson(msg.properties),
    ...payloadJson(msg.body, encoding, truncate),
  };
}
