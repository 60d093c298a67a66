import type { Exchange } from '../core/exchanges/exchange';
import type { Message } from '../core/message';

export interface TxPublish {
  exchange: Exchange;
  msg: Message;
  mandatory: boolean;
  extraKeys: string[] | null;
}

export interface TxSettlement<D> {
  deliveries: D[];
  kind: 'ack' | 'reject';
  requeue: boolean;
}

/** Work held back until tx.commit (AMQP 0-9-1 §1.9: publishes and acks are transactional). */
export class Transaction<D> {
  publishes: TxPublish[] = [];
  settlements: TxSettlement<D>[] = [];

  take(): { publishes: TxPublish[]; settlements: TxSettlement<D>[] } {
    const out = { publishes: this.publishes, settlements: this.settlements };
    this.publishes = [];
    this.settlements = [];
    return out;
  }
}
