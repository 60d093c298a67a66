/** What the heartbeat monitor needs from its connection. */
export interface HeartbeatHost {
  sendHeartbeat(): void;
  /** True while we deliberately stopped reading the peer (alarms, flow control). */
  readingPaused(): boolean;
  peerSilent(): void;
}

/**
 * AMQP heartbeats on one timer per connection. It ticks at half the negotiated interval: a
 * heartbeat goes out if nothing else did, and four silent half-intervals are RabbitMQ's "two
 * missed heartbeats". The data paths only flip two booleans.
 */
export class HeartbeatMonitor {
  received = true;
  sent = false;
  private missed = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly host: HeartbeatHost) {}

  start(seconds: number): void {
    this.timer = setInterval(() => this.tick(), (seconds * 1000) / 2);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (!this.sent) this.host.sendHeartbeat();
    this.sent = false;
    if (this.received || this.host.readingPaused()) {
      // A connection we stopped reading cannot be judged by what it sent.
      this.missed = 0;
    } else if (++this.missed >= 4) {
      this.host.peerSilent();
    }
    this.received = false;
  }
}
