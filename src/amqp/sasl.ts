import { AmqpError } from '../protocol/errors';
import { decodeTableWithin, fieldString, tableGet } from '../protocol/field-table';

export interface SaslCredentials {
  user: string;
  password: string;
}

/** The mechanisms offered in connection.start, in RabbitMQ's order. */
export const SASL_MECHANISMS = 'AMQPLAIN PLAIN';

/** Reads the user and password out of connection.start-ok's response for PLAIN or AMQPLAIN. */
export function parseSaslResponse(mechanism: string, response: Buffer): SaslCredentials {
  if (mechanism === 'PLAIN') {
    // RFC 4616: authzid NUL authcid NUL passwd
    const parts = response.toString('utf8').split('\x00');
    return { user: parts[1] ?? '', password: parts[2] ?? '' };
  }
  if (mechanism === 'AMQPLAIN') {
    // AMQPLAIN's response is a field table without its length prefix.
    const framed = Buffer.allocUnsafe(response.length + 4);
    framed.writeUInt32BE(response.length, 0);
    response.copy(framed, 4);
    const { table } = decodeTableWithin(framed, 0, framed.length);
    return { user: fieldString(tableGet(table, 'LOGIN')) ?? '', password: fieldString(tableGet(table, 'PASSWORD')) ?? '' };
  }
  throw new AmqpError('COMMAND_INVALID', `unknown authentication mechanism '${mechanism}'`, 10, 11);
}
