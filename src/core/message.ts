import { BasicProperties, decodeProperties, readDeliveryMode, readPriority } from '../protocol/properties';

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
  /** A delayed exchange already held this message; route it now. */
  delayReleased = false;
  delayHeld = false;
  /** BCC routing keys, stripped from the headers at publish but still used for dead-lettering. */
  bcc: string[] | null = null;
  /** Per-message TTL in ms from the expiration property; -1 when absent. */
  ttl = -1;
  private priorityCache = -1;

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

  /** The priority property (0 when absent); read only by priority queues. */
  get priority(): number {
    if (this.priorityCache < 0) {
      this.priorityCache = readPriority(this.rawProperties, 0, this.rawProperties.length) ?? 0;
    }
    return this.priorityCache;
  }

  get properties(): BasicProperties {
    if (this.decoded === undefined) {
      this.decoded = decodeProperties(this.rawProperties, 0, this.rawProperties.length);
    }
    return this.decoded;
  }
}
