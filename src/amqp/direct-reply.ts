import { randomBytes } from 'node:crypto';
import { Queue } from '../core/queue/queue';
import { effectiveSettings } from '../core/queue/settings';

export const REPLY_TO = 'amq.rabbitmq.reply-to';
export const REPLY_TO_PREFIX = 'amq.rabbitmq.reply-to.';

/**
 * Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): a consumer on the pseudo-queue gets a
 * private, unlisted queue; a reply published to the default exchange with the generated name
 * as routing key lands there. Reusing Queue keeps dispatch, flow control and teardown identical.
 */
export class DirectReplyRegistry {
  private readonly queues = new Map<string, Queue>();

  /**
   * In a cluster the name carries the node that holds the queue (as RabbitMQ's does), so a
   * reply published on another node can be forwarded there: see replyNode().
   */
  constructor(private readonly node: string | null = null) {}

  create(vhost: string, owner: object): Queue {
    const tag = this.node === null ? '' : `${Buffer.from(this.node).toString('base64url')}.`;
    const name = REPLY_TO_PREFIX + tag + randomBytes(18).toString('base64url');
    const q: Queue = new Queue(
      vhost,
      name,
      { durable: false, exclusiveOwner: owner, autoDelete: true, arguments: [] },
      {
        queueDeleted: (deleted) => {
          this.queues.delete(deleted.name);
        },
        deadLetter: () => {},
      },
      effectiveSettings([], undefined, undefined),
    );
    this.queues.set(name, q);
    return q;
  }

  lookup(name: string): Queue | undefined {
    return this.queues.get(name);
  }
}

/** The node a clustered reply-to name belongs to, or null for a stand-alone name. */
export function replyNode(routingKey: string): string | null {
  const rest = routingKey.slice(REPLY_TO_PREFIX.length);
  const dot = rest.indexOf('.');
  if (dot <= 0) return null;
  try {
    return Buffer.from(rest.slice(0, dot), 'base64url').toString('utf8');
  } catch {
    return null;
  }
}
