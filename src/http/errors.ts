import { AmqpError } from '../protocol/errors';

/**
 * An HTTP answer other than success, with RabbitMQ's management error body
 * `{"error": ..., "reason": ...}` (reason is usually a string; RabbitMQ sometimes sends a list).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reason: unknown,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(typeof reason === 'string' ? reason : JSON.stringify(reason));
  }

  get body(): { error: string; reason: unknown } {
    return { error: this.error, reason: this.reason };
  }
}

/** RabbitMQ's answer for a path or object that does not exist. */
export function notFound(): HttpError {
  return new HttpError(404, 'Object Not Found', 'Not Found');
}

export function badRequest(reason: unknown): HttpError {
  return new HttpError(400, 'bad_request', reason);
}

/** RabbitMQ 3.x answers 401 for authorisation failures too, spelt "not_authorised". */
export function notAuthorised(reason: string): HttpError {
  return new HttpError(401, 'not_authorised', reason);
}

export const ACCESS_REFUSED = 'Access refused.';

/** The reply text without its "NAME - " prefix, as the management API shows AMQP errors. */
export function amqpReason(err: AmqpError): string {
  const prefix = `${err.replyName} - `;
  return err.replyText.startsWith(prefix) ? err.replyText.slice(prefix.length) : err.replyText;
}

/**
 * How RabbitMQ's management maps an AMQP error raised by an operation: access refused is
 * "not authorised", a missing object is 404, anything else is a bad request.
 */
export function fromAmqpError(err: AmqpError): HttpError {
  switch (err.replyName) {
    case 'ACCESS_REFUSED':
      return notAuthorised(ACCESS_REFUSED);
    case 'NOT_FOUND':
      return new HttpError(404, 'not_found', amqpReason(err));
    default:
      return badRequest(amqpReason(err));
  }
}

/** Runs a model operation, turning its AmqpError into the HTTP error RabbitMQ would send. */
export function amqp<T>(op: () => T): T {
  try {
    return op();
  } catch (err) {
    if (err instanceof AmqpError) throw fromAmqpError(err);
    throw err;
  }
}
