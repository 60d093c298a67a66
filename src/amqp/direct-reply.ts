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

  create(vhost: string, owner: object): Queue {
    const name = REPLY_TO_PREFIX + randomBytes(18).toString('base64url');
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
