// AMQP 0-9-1 reply codes by name. The spec (section 1.9 "Constants") decides which are
// channel-scoped (soft) and which close the whole connection (hard); that decision lives
// here and nowhere else.

export const ReplyCode = {
  REPLY_SUCCESS: 200,
  CONTENT_TOO_LARGE: 311,
  NO_ROUTE: 312,
  NO_CONSUMERS: 313,
  CONNECTION_FORCED: 320,
  INVALID_PATH: 402,
  ACCESS_REFUSED: 403,
  NOT_FOUND: 404,
  RESOURCE_LOCKED: 405,
  PRECONDITION_FAILED: 406,
  FRAME_ERROR: 501,
  SYNTAX_ERROR: 502,
  COMMAND_INVALID: 503,
  CHANNEL_ERROR: 504,
  UNEXPECTED_FRAME: 505,
  RESOURCE_ERROR: 506,
  NOT_ALLOWED: 530,
  NOT_IMPLEMENTED: 540,
  INTERNAL_ERROR: 541,
} as const;

export type ReplyName = keyof typeof ReplyCode;

const CHANNEL_SCOPED: ReadonlySet<ReplyName> = new Set<ReplyName>([
  'CONTENT_TOO_LARGE',
  'NO_ROUTE',
  'NO_CONSUMERS',
  'ACCESS_REFUSED',
  'NOT_FOUND',
  'RESOURCE_LOCKED',
  'PRECONDITION_FAILED',
]);

/**
 * An error the peer must hear about. The text is prefixed with the reply name, as RabbitMQ
 * does ("NOT_FOUND - no queue 'q' in vhost '/'"); classId/methodId name the failing method.
 */
export class AmqpError extends Error {
  readonly code: number;
  readonly replyText: string;
  constructor(
    readonly replyName: ReplyName,
    text: string,
    public classId = 0,
    public methodId = 0,
    /** Force connection scope even for a soft code (e.g. errors on channel 0, or RabbitMQ's own choices). */
    readonly forceConnection = false,
  ) {
    super(`${replyName} - ${text}`);
    this.code = ReplyCode[replyName];
    this.replyText = `${replyName} - ${text}`;
  }

  get isConnectionError(): boolean {
    return this.forceConnection || !CHANNEL_SCOPED.has(this.replyName);
  }

  /** Attach the failing method if the raiser did not know it. */
  at(classId: number, methodId: number): this {
    if (this.classId === 0 && this.methodId === 0) {
      this.classId = classId;
      this.methodId = methodId;
    }
    return this;
  }
}

/**
 * A method id RabbitMQ cannot even name: its reader crashes and drops the socket without a
 * connection.close, and so do we.
 */
export class UnknownMethodError extends AmqpError {}

/** Bytes as Erlang prints a binary with ~p, which RabbitMQ's frame-error texts embed. */
export function erlangBinary(b: Buffer): string {
  if (b.length === 0) return '<<>>';
  let printable = true;
  for (const c of b) {
    if (c < 32 || c > 126) {
      printable = false;
      break;
    }
  }
  if (printable) return `<<"${b.toString('latin1').replace(/["\\]/g, '\\$&')}">>`;
  return `<<${[...b].join(',')}>>`;
}
