// A Jepsen-style check for the cluster tests: publishers record what the broker confirmed,
// consumers record what came out, and check() compares the two. Both sides ride out
// connection loss by moving on to the next URL, so a test can kill, freeze and partition
// nodes underneath them and look at the history afterwards.
import * as amqp from 'amqplib';

export interface ClientOptions {
  /** Broker URLs, tried round-robin after each connection loss. */
  urls: string[];
  queue: string;
  /**
   * Declares what the client needs on a fresh channel; default: a durable classic queue.
   * Cluster tests pass their own (e.g. quorum-queue arguments).
   */
  declare?: (ch: amqp.Channel, queue: string) => Promise<void>;
  /** Heartbeat in seconds, added to URLs lacking one, so a frozen node is noticed. Default 2. */
  heartbeat?: number;
  /** Socket connect timeout, so a frozen node does not stall the loop. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** Backoff between failed connection attempts, doubling from min to max. Default 50..1000 ms. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

const defaultDeclare = async (ch: amqp.Channel, queue: string): Promise<void> => {
  await ch.assertQueue(queue, { durable: true });
};

function withHeartbeat(url: string, seconds: number): string {
  const u = new URL(url);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(seconds));
  return u.toString();
}

/**
 * The connect/backoff/round-robin loop the publisher and consumer share. `session` runs
 * with one live connection and returns once that connection is lost or the client stops.
 */
abstract class ReconnectingClient {
  protected stopping = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  protected conn: amqp.ChannelModel | undefined;
  private urlIndex = 0;
  /** Connection attempts and losses, for a test's diagnostics. */
  readonly events: string[] = [];
  connects = 0;

  constructor(protected readonly opts: ClientOptions) {
    if (opts.urls.length === 0) throw new Error('no broker URLs');
  }

  protected abstract session(conn: amqp.ChannelModel, lost: Promise<void>): Promise<void>;

  protected startLoop(): void {
    if (this.loop !== undefined) throw new Error('already started');
    this.loop = this.run();
  }

  /** A retry delay that stop() cuts short. */
  private backoff(ms: number): Promise<void> {
    return new Promise((done) => {
      const timer = setTimeout(done, ms);
      this.wake = () => {
        clearTimeout(timer);
        done();
      };
    });
  }

  private note(event: string): void {
    // Bounded: a long partition must not grow this without limit.
    if (this.events.length >= 1000) this.events.shift();
    this.events.push(`${new Date().toISOString()} ${event}`);
  }

  private async run(): Promise<void> {
    const min = this.opts.minBackoffMs ?? 50;
    const max = this.opts.maxBackoffMs ?? 1000;
    let wait = min;
    while (!this.stopping) {
      const raw = this.opts.urls[this.urlIndex % this.opts.urls.length] as string;
      this.urlIndex++;
      const url = withHeartbeat(raw, this.opts.heartbeat ?? 2);
      let conn: amqp.ChannelModel;
      try {
        conn = await amqp.connect(url, { timeout: this.opts.connectTimeoutMs ?? 2000 });
      } catch (err) {
        this.note(`connect ${raw} failed: ${(err as Error).message}`);
        await this.backoff(wait);
        wait = Math.min(max, wait * 2);
        continue;
      }
      this.connects++;
      this.note(`connected to ${raw}`);
      this.conn = conn;
      const lost = new Promise<void>((done) => {
        conn.once('close', () => done());
        // 'error' precedes 'close'; without a listener it would crash the test process.
        conn.on('error', (err: Error) => this.note(`connection error: ${err.message}`));
      });
      const began = Date.now();
      try {
        if (this.stopping) break;
        await this.session(conn, lost);
        this.note(`session on ${raw} ended`);
      } catch (err) {
        this.note(`session on ${raw} failed: ${(err as Error).message}`);
      } finally {
        this.conn = undefined;
        await conn.close().catch(() => undefined);
      }
      // Only a session that lasted resets the backoff: a broker that cancels or closes us
      // at once, over and over, must not turn this into a busy loop.
      if (Date.now() - began > 1000) wait = min;
      if (!this.stopping) await this.backoff(wait);
      wait = Math.min(max, wait * 2);
    }
  }

  /** Ends the loop and closes the connection; `beforeClose` runs first, while still connected. */
  protected async stopLoop(beforeClose?: () => Promise<void>): Promise<void> {
    this.stopping = true;
    this.wake?.();
    if (beforeClose !== undefined) await beforeClose().catch(() => undefined);
    const conn = this.conn;
    if (conn !== undefined) {
      // close() waits for close-ok, which a frozen broker never sends; the heartbeat
      // then ends the connection, and with it the loop.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        conn.close().catch(() => undefined),
        new Promise<void>((done) => {
          timer = setTimeout(done, 2000);
        }),
      ]);
      clearTimeout(timer);
    }
    await this.loop;
  }
}

export interface PublisherOptions extends ClientOptions {
  /** Prefix of every message id; unique per publisher. Default: 'p' + a random number. */
  publisherId?: string;
  /** Default '' (the default exchange, routing key = queue). */
  exchange?: string;
  routingKey?: string;
}

/**
 * Publishes persistent messages with ids `${publisherId}-${n}` on a confirm channel. A
 * message counts only once the broker acks it; one in flight when the connection dies is
 * neither confirmed nor nacked, and the next connection continues with fresh ids.
 */
export class ConfirmedPublisher extends ReconnectingClient {
  readonly publisherId: string;
  readonly confirmed = new Set<string>();
  readonly nacked = new Set<string>();
  /** Ids sent whose fate the broker never told us (connection lost in flight). */
  readonly unknown = new Set<string>();
  private next = 0;
  private inFlight = 0;
  private concurrency = 1;
  private waiters: { count: number; done: () => void }[] = [];
  private drainWaiters: (() => void)[] = [];

  constructor(private readonly popts: PublisherOptions) {
    super(popts);
    this.publisherId = popts.publisherId ?? `p${Math.floor(Math.random() * 1e9)}`;
  }

  get published(): number {
    return this.next;
  }

  /** Starts publishing with at most `concurrency` messages awaiting confirmation at once. */
  start(concurrency = 10): void {
    this.concurrency = Math.max(1, concurrency);
    this.startLoop();
  }

  /** Stops publishing, gives in-flight confirms up to `drainMs` to arrive, then disconnects. */
  async stop(drainMs = 5000): Promise<void> {
    await this.stopLoop(() => this.drain(drainMs));
    for (const w of this.waiters) w.done();
    this.waiters = [];
  }

  /** Resolves true once `count` messages are confirmed, false after `timeoutMs`. */
  waitForConfirmed(count: number, timeoutMs: number): Promise<boolean> {
    if (this.confirmed.size >= count) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        count,
        done: () => {
          clearTimeout(timer);
          resolve(this.confirmed.size >= count);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private drain(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private settled(id: string, outcome: 'ack' | 'nack' | 'unknown'): void {
    this.inFlight--;
    if (outcome === 'ack') this.confirmed.add(id);
    else if (outcome === 'nack') this.nacked.add(id);
    else this.unknown.add(id);
    if (outcome === 'ack' && this.waiters.length > 0) {
      const ready = this.waiters.filter((w) => this.confirmed.size >= w.count);
      this.waiters = this.waiters.filter((w) => this.confirmed.size < w.count);
      for (const w of ready) w.done();
    }
    if (this.inFlight === 0) {
      const drained = this.drainWaiters;
      this.drainWaiters = [];
      for (const d of drained) d();
    }
  }

  protected override async session(conn: amqp.ChannelModel, lost: Promise<void>): Promise<void> {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    let chClosed = false;
    const closed = new Promise<void>((done) => ch.once('close', () => {
      chClosed = true;
      done();
    }));
    await (this.popts.declare ?? defaultDeclare)(ch, this.popts.queue);
    const exchange = this.popts.exchange ?? '';
    const routingKey = this.popts.routingKey ?? this.popts.queue;
    let over = false;
    const gone = Promise.race([lost, closed]).then(() => {
      over = true;
    });

    const worker = async (): Promise<void> => {
      while (!this.stopping && !chClosed && !over) {
        const id = `${this.publisherId}-${this.next++}`;
        this.inFlight++;
        const confirm = new Promise<void>((done) => {
          try {
            ch.publish(exchange, routingKey, Buffer.from(id), { persistent: true, messageId: id }, (err) => {
              // amqplib reports a broker nack and a channel closing under an unconfirmed
              // message through the same callback; only the former is the broker's verdict.
              if (err === null || err === undefined) this.settled(id, 'ack');
              else this.settled(id, err.message === 'message nacked' ? 'nack' : 'unknown');
              done();
            });
          } catch {
            // The channel closed between the loop check and publish: never sent.
            this.settled(id, 'unknown');
            done();
          }
        });
        // Without this a lost connection would leave the worker waiting for a callback
        // that amqplib already fired, or would fire never if the frame was never queued.
        await Promise.race([confirm, gone]);
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, () => worker()));
    if (!this.stopping) await gone;
  }
}

export interface ConsumerOptions extends ClientOptions {
  /** basic.qos prefetch; default 100. */
  prefetch?: number;
}

/**
 * Consumes with manual acks and records every delivery by message id (body when no id).
 * It records before acking: an ack lost to a crash makes a duplicate, never a loss.
 */
export class RecordingConsumer extends ReconnectingClient {
  readonly received = new Map<string, number>();
  /** Ids that arrived at least once with the redelivered flag set. */
  readonly redelivered = new Set<string>();
  deliveries = 0;
  cancels = 0;
  private waiters: (() => void)[] = [];

  constructor(private readonly copts: ConsumerOptions) {
    super(copts);
  }

  start(): void {
    this.startLoop();
  }

  async stop(): Promise<void> {
    await this.stopLoop();
    this.notify();
  }

  /** Resolves true once every id in `ids` has been received, false after `timeoutMs`. */
  waitForIds(ids: Iterable<string>, timeoutMs: number): Promise<boolean> {
    const missing = new Set<string>();
    for (const id of ids) if (!this.received.has(id)) missing.add(id);
    if (missing.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        for (const id of missing) if (this.received.has(id)) missing.delete(id);
        if (missing.size === 0 || this.stopping) finish(missing.size === 0);
      };
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.waiters.push(check);
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  protected override async session(conn: amqp.ChannelModel, lost: Promise<void>): Promise<void> {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    const closed = new Promise<void>((done) => ch.once('close', () => done()));
    await (this.copts.declare ?? defaultDeclare)(ch, this.copts.queue);
    await ch.prefetch(this.copts.prefetch ?? 100);
    let cancelled: () => void = () => undefined;
    const cancel = new Promise<void>((done) => {
      cancelled = done;
    });
    await ch.consume(
      this.copts.queue,
      (msg) => {
        if (msg === null) {
          // The broker cancelled us (queue deleted, leader moved...): start over elsewhere.
          this.cancels++;
          cancelled();
          return;
        }
        const id = msg.properties.messageId ?? msg.content.toString();
        this.deliveries++;
        this.received.set(id, (this.received.get(id) ?? 0) + 1);
        if (msg.fields.redelivered) this.redelivered.add(id);
        try {
          ch.ack(msg);
        } catch {
          // Channel already closed: the broker will redeliver, which the count shows.
        }
        this.notify();
      },
      { noAck: false },
    );
    await Promise.race([lost, closed, cancel]);
  }
}

export interface CheckResult {
  /** Confirmed ids never received: the one thing a broker must not do. */
  lost: string[];
  /** Deliveries beyond the first per id (allowed under at-least-once, but worth watching). */
  duplicates: number;
  /** Distinct ids received. */
  receivedCount: number;
  confirmedCount: number;
}

export function check(confirmed: ReadonlySet<string>, received: ReadonlyMap<string, number>): CheckResult {
  const lost: string[] = [];
  for (const id of confirmed) if (!received.has(id)) lost.push(id);
  let duplicates = 0;
  for (const count of received.values()) if (count > 1) duplicates += count - 1;
  return { lost, duplicates, receivedCount: received.size, confirmedCount: confirmed.size };
}
