// The AMQP 0-9-1 method catalogue as RabbitMQ speaks it (its amqp-rabbitmq-0.9.1 spec): the
// standard classes plus connection.blocked/unblocked/update-secret, exchange.bind/unbind,
// queue.unbind, basic.nack and confirm. access.request is kept because RabbitMQ still answers
// it (ticket 1) and some old clients send it. basic.credit (60/200-202) is left out: no 0-9-1
// client uses it. Field types and the Method union are derived from this one table.
//
// A field named '' is reserved: dropped from the decoded object, written as 0 / '' / false.

import type { FieldTable } from './field-table';

export type FieldKind = 'octet' | 'short' | 'long' | 'longlong' | 'shortstr' | 'longstr' | 'bit' | 'table';

interface MethodDef {
  readonly key: number;
  readonly name: string;
  readonly fields: readonly (readonly [string, FieldKind])[];
  /** Followed by a content header and body frames. */
  readonly content?: true;
}

export const METHOD_DEFS = {
  // connection (10)
  ConnectionStart: { key: 0x000a_000a, name: 'connection.start', fields: [['versionMajor', 'octet'], ['versionMinor', 'octet'], ['serverProperties', 'table'], ['mechanisms', 'longstr'], ['locales', 'longstr']] },
  ConnectionStartOk: { key: 0x000a_000b, name: 'connection.start-ok', fields: [['clientProperties', 'table'], ['mechanism', 'shortstr'], ['response', 'longstr'], ['locale', 'shortstr']] },
  ConnectionSecure: { key: 0x000a_0014, name: 'connection.secure', fields: [['challenge', 'longstr']] },
  ConnectionSecureOk: { key: 0x000a_0015, name: 'connection.secure-ok', fields: [['response', 'longstr']] },
  ConnectionTune: { key: 0x000a_001e, name: 'connection.tune', fields: [['channelMax', 'short'], ['frameMax', 'long'], ['heartbeat', 'short']] },
  ConnectionTuneOk: { key: 0x000a_001f, name: 'connection.tune-ok', fields: [['channelMax', 'short'], ['frameMax', 'long'], ['heartbeat', 'short']] },
  ConnectionOpen: { key: 0x000a_0028, name: 'connection.open', fields: [['virtualHost', 'shortstr'], ['', 'shortstr'], ['', 'bit']] },
  ConnectionOpenOk: { key: 0x000a_0029, name: 'connection.open-ok', fields: [['', 'shortstr']] },
  ConnectionClose: { key: 0x000a_0032, name: 'connection.close', fields: [['replyCode', 'short'], ['replyText', 'shortstr'], ['classId', 'short'], ['methodId', 'short']] },
  ConnectionCloseOk: { key: 0x000a_0033, name: 'connection.close-ok', fields: [] },
  ConnectionBlocked: { key: 0x000a_003c, name: 'connection.blocked', fields: [['reason', 'shortstr']] },
  ConnectionUnblocked: { key: 0x000a_003d, name: 'connection.unblocked', fields: [] },
  ConnectionUpdateSecret: { key: 0x000a_0046, name: 'connection.update-secret', fields: [['newSecret', 'longstr'], ['reason', 'shortstr']] },
  ConnectionUpdateSecretOk: { key: 0x000a_0047, name: 'connection.update-secret-ok', fields: [] },
  // channel (20)
  ChannelOpen: { key: 0x0014_000a, name: 'channel.open', fields: [['', 'shortstr']] },
  ChannelOpenOk: { key: 0x0014_000b, name: 'channel.open-ok', fields: [['', 'longstr']] },
  ChannelFlow: { key: 0x0014_0014, name: 'channel.flow', fields: [['active', 'bit']] },
  ChannelFlowOk: { key: 0x0014_0015, name: 'channel.flow-ok', fields: [['active', 'bit']] },
  ChannelClose: { key: 0x0014_0028, name: 'channel.close', fields: [['replyCode', 'short'], ['replyText', 'shortstr'], ['classId', 'short'], ['methodId', 'short']] },
  ChannelCloseOk: { key: 0x0014_0029, name: 'channel.close-ok', fields: [] },
  // access (30)
  AccessRequest: { key: 0x001e_000a, name: 'access.request', fields: [['realm', 'shortstr'], ['exclusive', 'bit'], ['passive', 'bit'], ['active', 'bit'], ['write', 'bit'], ['read', 'bit']] },
  AccessRequestOk: { key: 0x001e_000b, name: 'access.request-ok', fields: [['ticket', 'short']] },
  // exchange (40)
  ExchangeDeclare: { key: 0x0028_000a, name: 'exchange.declare', fields: [['', 'short'], ['exchange', 'shortstr'], ['type', 'shortstr'], ['passive', 'bit'], ['durable', 'bit'], ['autoDelete', 'bit'], ['internal', 'bit'], ['noWait', 'bit'], ['arguments', 'table']] },
  ExchangeDeclareOk: { key: 0x0028_000b, name: 'exchange.declare-ok', fields: [] },
  ExchangeDelete: { key: 0x0028_0014, name: 'exchange.delete', fields: [['', 'short'], ['exchange', 'shortstr'], ['ifUnused', 'bit'], ['noWait', 'bit']] },
  ExchangeDeleteOk: { key: 0x0028_0015, name: 'exchange.delete-ok', fields: [] },
  ExchangeBind: { key: 0x0028_001e, name: 'exchange.bind', fields: [['', 'short'], ['destination', 'shortstr'], ['source', 'shortstr'], ['routingKey', 'shortstr'], ['noWait', 'bit'], ['arguments', 'table']] },
  ExchangeBindOk: { key: 0x0028_001f, name: 'exchange.bind-ok', fields: [] },
  ExchangeUnbind: { key: 0x0028_0028, name: 'exchange.unbind', fields: [['', 'short'], ['destination', 'shortstr'], ['source', 'shortstr'], ['routingKey', 'shortstr'], ['noWait', 'bit'], ['arguments', 'table']] },
  ExchangeUnbindOk: { key: 0x0028_0033, name: 'exchange.unbind-ok', fields: [] },
  // queue (50)
  QueueDeclare: { key: 0x0032_000a, name: 'queue.declare', fields: [['', 'short'], ['queue', 'shortstr'], ['passive', 'bit'], ['durable', 'bit'], ['exclusive', 'bit'], ['autoDelete', 'bit'], ['noWait', 'bit'], ['arguments', 'table']] },
  QueueDeclareOk: { key: 0x0032_000b, name: 'queue.declare-ok', fields: [['queue', 'shortstr'], ['messageCount', 'long'], ['consumerCount', 'long']] },
  QueueBind: { key: 0x0032_0014, name: 'queue.bind', fields: [['', 'short'], ['queue', 'shortstr'], ['exchange', 'shortstr'], ['routingKey', 'shortstr'], ['noWait', 'bit'], ['arguments', 'table']] },
  QueueBindOk: { key: 0x0032_0015, name: 'queue.bind-ok', fields: [] },
  QueuePurge: { key: 0x0032_001e, name: 'queue.purge', fields: [['', 'short'], ['queue', 'shortstr'], ['noWait', 'bit']] },
  QueuePurgeOk: { key: 0x0032_001f, name: 'queue.purge-ok', fields: [['messageCount', 'long']] },
  QueueDelete: { key: 0x0032_0028, name: 'queue.delete', fields: [['', 'short'], ['queue', 'shortstr'], ['ifUnused', 'bit'], ['ifEmpty', 'bit'], ['noWait', 'bit']] },
  QueueDeleteOk: { key: 0x0032_0029, name: 'queue.delete-ok', fields: [['messageCount', 'long']] },
  QueueUnbind: { key: 0x0032_0032, name: 'queue.unbind', fields: [['', 'short'], ['queue', 'shortstr'], ['exchange', 'shortstr'], ['routingKey', 'shortstr'], ['arguments', 'table']] },
  QueueUnbindOk: { key: 0x0032_0033, name: 'queue.unbind-ok', fields: [] },
  // basic (60)
  BasicQos: { key: 0x003c_000a, name: 'basic.qos', fields: [['prefetchSize', 'long'], ['prefetchCount', 'short'], ['global', 'bit']] },
  BasicQosOk: { key: 0x003c_000b, name: 'basic.qos-ok', fields: [] },
  BasicConsume: { key: 0x003c_0014, name: 'basic.consume', fields: [['', 'short'], ['queue', 'shortstr'], ['consumerTag', 'shortstr'], ['noLocal', 'bit'], ['noAck', 'bit'], ['exclusive', 'bit'], ['noWait', 'bit'], ['arguments', 'table']] },
  BasicConsumeOk: { key: 0x003c_0015, name: 'basic.consume-ok', fields: [['consumerTag', 'shortstr']] },
  BasicCancel: { key: 0x003c_001e, name: 'basic.cancel', fields: [['consumerTag', 'shortstr'], ['noWait', 'bit']] },
  BasicCancelOk: { key: 0x003c_001f, name: 'basic.cancel-ok', fields: [['consumerTag', 'shortstr']] },
  BasicPublish: { key: 0x003c_0028, name: 'basic.publish', fields: [['', 'short'], ['exchange', 'shortstr'], ['routingKey', 'shortstr'], ['mandatory', 'bit'], ['immediate', 'bit']], content: true },
  BasicReturn: { key: 0x003c_0032, name: 'basic.return', fields: [['replyCode', 'short'], ['replyText', 'shortstr'], ['exchange', 'shortstr'], ['routingKey', 'shortstr']], content: true },
  BasicDeliver: { key: 0x003c_003c, name: 'basic.deliver', fields: [['consumerTag', 'shortstr'], ['deliveryTag', 'longlong'], ['redelivered', 'bit'], ['exchange', 'shortstr'], ['routingKey', 'shortstr']], content: true },
  BasicGet: { key: 0x003c_0046, name: 'basic.get', fields: [['', 'short'], ['queue', 'shortstr'], ['noAck', 'bit']] },
  BasicGetOk: { key: 0x003c_0047, name: 'basic.get-ok', fields: [['deliveryTag', 'longlong'], ['redelivered', 'bit'], ['exchange', 'shortstr'], ['routingKey', 'shortstr'], ['messageCount', 'long']], content: true },
  BasicGetEmpty: { key: 0x003c_0048, name: 'basic.get-empty', fields: [['', 'shortstr']] },
  BasicAck: { key: 0x003c_0050, name: 'basic.ack', fields: [['deliveryTag', 'longlong'], ['multiple', 'bit']] },
  BasicReject: { key: 0x003c_005a, name: 'basic.reject', fields: [['deliveryTag', 'longlong'], ['requeue', 'bit']] },
  BasicRecoverAsync: { key: 0x003c_0064, name: 'basic.recover-async', fields: [['requeue', 'bit']] },
  BasicRecover: { key: 0x003c_006e, name: 'basic.recover', fields: [['requeue', 'bit']] },
  BasicRecoverOk: { key: 0x003c_006f, name: 'basic.recover-ok', fields: [] },
  BasicNack: { key: 0x003c_0078, name: 'basic.nack', fields: [['deliveryTag', 'longlong'], ['multiple', 'bit'], ['requeue', 'bit']] },
  // confirm (85)
  ConfirmSelect: { key: 0x0055_000a, name: 'confirm.select', fields: [['noWait', 'bit']] },
  ConfirmSelectOk: { key: 0x0055_000b, name: 'confirm.select-ok', fields: [] },
  // tx (90)
  TxSelect: { key: 0x005a_000a, name: 'tx.select', fields: [] },
  TxSelectOk: { key: 0x005a_000b, name: 'tx.select-ok', fields: [] },
  TxCommit: { key: 0x005a_0014, name: 'tx.commit', fields: [] },
  TxCommitOk: { key: 0x005a_0015, name: 'tx.commit-ok', fields: [] },
  TxRollback: { key: 0x005a_001e, name: 'tx.rollback', fields: [] },
  TxRollbackOk: { key: 0x005a_001f, name: 'tx.rollback-ok', fields: [] },
} as const satisfies Record<string, MethodDef>;

type Defs = typeof METHOD_DEFS;
export type MethodName = keyof Defs;

/**
 * longlong is a JS number: delivery tags are its only use and stay far below 2^53 in practice;
 * larger wire values decode approximately (they can never match a tag the broker issued).
 */
type KindType<K> = K extends 'shortstr' ? string
  : K extends 'longstr' ? Buffer
  : K extends 'table' ? FieldTable
  : K extends 'bit' ? boolean
  : number;

type Fields<F extends readonly (readonly [string, FieldKind])[]> = {
  -readonly [E in F[number] as E[0] extends '' ? never : E[0]]: KindType<E[1]>;
};

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The decoded form of one method, e.g. MethodOf<'BasicPublish'>. */
export type MethodOf<N extends MethodName> = Simplify<{ key: Defs[N]['key'] } & Fields<Defs[N]['fields']>>;

/** Any method; narrow on `key` against M. */
export type Method = { [N in MethodName]: MethodOf<N> }[MethodName];

/** The method whose key is K, e.g. MethodByKey<typeof M.BasicAck>. */
export type MethodByKey<K extends Method['key']> = Extract<Method, { key: K }>;
