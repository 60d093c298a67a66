import { FieldTable, fromPlain } from '../protocol/field-table';

// Same keys RabbitMQ 3.x announces in connection.start, so clients that inspect them
// (capabilities above all) behave as they do against RabbitMQ.
export function serverProperties(version: string, clusterName: string): FieldTable {
  return fromPlain({
    capabilities: {
      publisher_confirms: true,
      exchange_exchange_bindings: true,
      'basic.nack': true,
      consumer_cancel_notify: true,
      'connection.blocked': true,
      consumer_priorities: true,
      authentication_failure_close: true,
      per_consumer_qos: true,
      direct_reply_to: true,
    },
    cluster_name: clusterName,
    copyright: 'Copyright (c) Warren contributors',
    information: 'Licensed under the MIT License',
    platform: `Node.js ${process.version}`,
    product: 'Warren',
    version,
  });
}
