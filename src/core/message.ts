import { BasicProperties, decodeProperties, readDeliveryMode } from '../protocol/properties';

/**
 * One published message. The content-header property bytes are kept exactly as the publisher
 * sent them and forwarded untouched on delivery; they are decoded only when a feature needs
 * a property (TTL, priority, the headers exchange, dead-lettering).
 */
export class Message {
  private decoded: BasicProperties | undefined;
  private deliveryMode = -1;
  /** Set by the store when the message is written to disk (durability). */
  storeId = 0;
  /** Number of queues still holding this message; the store frees it at zero. */
  refs = 0;

  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    /** Property flags and property list, as on the wire (content header minus its first 12 bytes). */
    readonly rawProperties: Buffer,
    readonly body: Buffer,
  ) {}

  get bodySize(): number {
    return this.body.length;
  }

  get persistent(): boolean {
    if (this.deliveryMode < 0) {
      this.deliveryMode = readDeliveryMode(this.rawProperties, 0, this.rawProperties.length);
    }
    return this.deliveryMode === 2;
  }

  get properties(): BasicProperties {
    if (this.decoded === undefined) {
      this.decoded = decodeProperties(this.rawProperties, 0, this.rawProperties.length);
    }
    return this.decoded;
  }
}
