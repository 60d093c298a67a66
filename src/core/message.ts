import { BasicProperties, decodeProperties, readDeliveryMode, readPriority } from '../protocol/properties';

/** Where a paged-out message's bytes can be read back (the message store). */
export interface MessageSource {
  read(id: number): { properties: Buffer; body: Buffer };
}

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
  /** A durable delayed exchange wrote it to its schedule: the confirm waits for that fsync. */
  delayDurable = false;
  /** Every queue it was routed to keeps it in the store, so its bytes may leave memory. */
  pageable = false;
  /**
   * Who hears about it if a delayed exchange finds no route when the delay ends: the publishing
   * channel of a mandatory message, while it is open.
   */
  returnTo: { returnUnroutable(msg: Message): void } | null = null;
  /** BCC routing keys, stripped from the headers at publish but still used for dead-lettering. */
  bcc: string[] | null = null;
  /** Per-message TTL in ms from the expiration property; -1 when absent. */
  ttl = -1;
  private priorityCache = -1;
  private props: Buffer | null;
  private content: Buffer | null;
  /** Set while the bytes live only in the store (paged out to bound memory). */
  private source: MessageSource | null = null;
  /** Id in the transient pager's scratch store; 0 when never paged there. */
  pageId = 0;
  readonly bodySize: number;

  constructor(
    readonly exchange: string,
    readonly routingKey: string,
    /** Property flags and property list, as on the wire (content header minus its first 12 bytes). */
    rawProperties: Buffer,
    body: Buffer,
  ) {
    this.props = rawProperties;
    this.content = body;
    this.bodySize = body.length;
  }

  get rawProperties(): Buffer {
    if (this.props === null) this.pageIn();
    return this.props!;
  }

  get body(): Buffer {
    if (this.content === null) this.pageIn();
    return this.content!;
  }

  get pagedOut(): boolean {
    return this.source !== null;
  }

  /**
   * Drops the bytes of a message that is safely in the store; they are read back when the
   * message is delivered. Queue memory then holds small records, not bodies.
   */
  pageOut(source: MessageSource): void {
    if (this.storeId === 0) return;
    // Read the flags needed later while the bytes are still here.
    void this.persistent;
    void this.priority;
    this.props = null;
    this.content = null;
    this.decoded = undefined; // decoded headers can outweigh the body; decode again if needed
    this.source = source;
  }

  /** Brings paged-out bytes back; done before a delivery may release the message in the store. */
  load(): void {
    if (this.source !== null) this.pageIn();
  }

  /** Transient paging: the bytes went to a scratch store under its own id. */
  pageOutTo(source: MessageSource, pageId: number): void {
    void this.persistent;
    void this.priority;
    this.pageId = pageId;
    this.props = null;
    this.content = null;
    this.decoded = undefined;
    this.source = source;
  }

  private pageIn(): void {
    const m = this.source!.read(this.pageId !== 0 ? this.pageId : this.storeId);
    this.props = m.properties;
    this.content = m.body;
    this.source = null;
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
