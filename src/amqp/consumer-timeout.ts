import type { ChannelConsumer } from './channel-consumer';
import { AmqpError } from '../protocol/errors';
import type { Delivery, UnackedDeliveries } from './unacked';
import { requeueByQueue } from './unacked';

/** What the consumer timeout needs from its channel. */
export interface TimeoutHost {
  readonly id: number;
  readonly isOpen: boolean;
  readonly unacked: UnackedDeliveries;
  readonly defaultTimeout: number;
  readonly action: 'cancel-consumer' | 'close-channel';
  /** RabbitMQ's way: close the channel with 406. */
  fail(err: AmqpError): void;
  /** Warren's way: cancel this consumer (server-sent basic.cancel), keep the channel. */
  cancelTimedOut(consumer: ChannelConsumer): void;
}

/**
 * RabbitMQ's consumer_timeout with one timer per channel, armed for the earliest delivery
 * deadline; never a timer per message.
 */
export class ConsumerTimeouts {
  private timer: NodeJS.Timeout | null = null;
  private at = Infinity;

  constructor(private readonly host: TimeoutHost) {}

  /** A delivery to an acking consumer or basic.get started its clock. */
  track(d: Delivery): void {
    const timeout = d.queue.settings.consumerTimeout ?? this.host.defaultTimeout;
    if (timeout > 0) this.arm(d.deliveredAt + timeout);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.at = Infinity;
  }

  private arm(at: number): void {
    if (at >= this.at || !this.host.isOpen) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.at = at;
    this.timer = setTimeout(() => this.fire(), Math.min(2 ** 31 - 1, Math.max(0, at - Date.now())));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = null;
    this.at = Infinity;
    const host = this.host;
    if (!host.isOpen) return;
    const { stuck, next } = host.unacked.overdue(Date.now(), host.defaultTimeout);
    if (stuck.length !== 0) {
      const timeout = stuck[0]!.queue.settings.consumerTimeout ?? host.defaultTimeout;
      if (host.action === 'close-channel') {
        host.fail(
          new AmqpError(
            'PRECONDITION_FAILED',
            `delivery acknowledgement on channel ${host.id} timed out. Timeout value used: ${timeout} ms. ` +
              'This timeout value can be configured, see consumers doc guide to learn more',
          ),
        );
        return;
      }
      this.timeOutConsumers(stuck);
    }
    if (next !== Infinity) this.arm(next);
  }

  /**
   * Warren's default: only the stuck consumers go and their unacked messages are requeued;
   * the channel and its other consumers carry on. A stuck basic.get delivery is requeued.
   */
  private timeOutConsumers(stuck: Delivery[]): void {
    const consumers = new Set<ChannelConsumer>();
    const gets: Delivery[] = [];
    for (const d of stuck) {
      if (d.consumer !== null) consumers.add(d.consumer);
      else gets.push(d);
    }
    for (const c of consumers) {
      this.host.cancelTimedOut(c);
      requeueByQueue(this.host.unacked.takeConsumer(c));
    }
    for (const d of gets) requeueByQueue(this.host.unacked.take(d.tag, false, 0));
  }
}
