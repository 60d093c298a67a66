// A worker thread running a group of producers or a group of consumers (never both, so that a
// rate-limited producer's precise sleeps never delay a consumer's receive timestamps). Counters
// and latencies go to shared memory; the main thread reads them when it likes.

import { parentPort, workerData } from 'node:worker_threads';
import { PerfConnection, parseAmqpUrl, type AmqpUrl } from './connection';
import { Consumer } from './consumer';
import { Producer } from './producer';
import { S_BLOCKED, S_DONE, S_FAILED, nowNs, type ClientSpec, type FromWorker, type ToWorker, type WorkerInput } from './shared';
import { producerKeys } from './topology';
import { publishTemplate } from './wire';

const SETUP_CONCURRENCY = 32;

/** Drives the rate-limited producers of this worker: one timer for all of them. */
class RateScheduler {
  private timer: NodeJS.Timeout | null = null;
  private immediate = false;
  private stopped = false;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly producers: Producer[]) {
    for (const p of producers) p.wake = () => this.kick();
  }

  start(): void {
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  kick(): void {
    if (this.stopped || this.immediate) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.immediate = true;
    setImmediate(this.run);
  }

  private readonly run = (): void => {
    this.immediate = false;
    this.timer = null;
    if (this.stopped) return;
    const now = nowNs();
    let next = Infinity;
    for (const p of this.producers) {
      const d = p.sendDue(now);
      if (d < next) next = d;
    }
    if (next === Infinity) return;
    const wait = next - nowNs();
    if (wait > 2e6) {
      // Wake a millisecond early; the last stretch is slept precisely below.
      this.timer = setTimeout(this.run, Math.floor((wait - 1e6) / 1e6));
    } else {
      this.immediate = true;
      setImmediate(() => {
        const w = next - nowNs();
        // Sub-millisecond sleep without spinning (timers have 1 ms granularity). This blocks
        // only this worker, which holds nothing but producers.
        if (w > 0) Atomics.wait(this.sleeper, 0, 0, w / 1e6);
        this.run();
      });
    }
  };
}

function post(msg: FromWorker): void {
  parentPort!.postMessage(msg);
}

async function main(): Promise<void> {
  const input = workerData as WorkerInput;
  const o = input.options;
  const stats = new Float64Array(input.stats);
  const hist = input.hist ? new Float64Array(input.hist) : new Float64Array(0);
  const url = parseAmqpUrl(o.uri);
  let running = false;
  let stopping = false;

  const producers: Producer[] = [];
  const consumers: Consumer[] = [];
  const conns: PerfConnection[] = [];
  let server = { product: '', version: '' };

  const failed = (spec: ClientSpec, who: string, message: string, setup: boolean): void => {
    stats[spec.slot * 8 + S_DONE] = 1;
    stats[spec.slot * 8 + S_FAILED] = 1;
    if (!stopping) post({ type: 'error', who, message, setup });
  };

  const setupOne = async (spec: ClientSpec): Promise<void> => {
    const who = `${input.role} ${spec.id}`;
    let conn: PerfConnection | null = null;
    try {
      conn = await PerfConnection.open(url as AmqpUrl, { timeoutMs: o.setupTimeout * 1000, name: `warren-perf ${who}` });
      conns.push(conn);
      server = conn.server;
      await conn.openChannel(1);
      const base = spec.slot * 8;
      if (input.role === 'producer') {
        if (o.confirm > 0) await conn.confirmSelect(1);
        const templates = producerKeys(o, input.topology, spec.id).map((rk) =>
          publishTemplate({
            channel: 1,
            exchange: input.topology.exchange,
            routingKey: rk,
            size: o.size,
            persistent: o.persistent,
            frameMax: conn!.frameMax,
          }),
        );
        const p = new Producer(conn, {
          id: spec.id,
          templates,
          confirm: o.confirm,
          rate: o.rate,
          limit: o.pmessages,
          batchBytes: o.batchBytes,
          stats,
          base,
        });
        producers.push(p);
      } else {
        if (o.prefetch > 0) await conn.qos(1, o.prefetch);
        const c = new Consumer(conn, {
          id: spec.id,
          autoack: o.autoack,
          multiAck: o.multiAck,
          limit: o.cmessages,
          rate: o.consumerRate,
          stats,
          base,
          hist,
        });
        await conn.consume(1, input.topology.queues[spec.queueIdx]!, o.autoack);
        // Hold deliveries in the socket until the run starts (as amqpperf does).
        if (!running) conn.socket.pause();
        consumers.push(c);
      }
      const c = conn;
      conn.onFailure = (err) => failed(spec, who, err.message, !running);
      conn.onBlockedChange = (b) => {
        stats[spec.slot * 8 + S_BLOCKED] = b ? 1 : 0;
      };
      if (c.error) failed(spec, who, c.error.message, true);
    } catch (err) {
      failed(spec, who, err instanceof Error ? err.message : String(err), true);
      conn?.socket.destroy();
    }
  };

  // Connect in bounded parallel batches.
  const queue = [...input.clients];
  await Promise.all(
    Array.from({ length: Math.min(SETUP_CONCURRENCY, queue.length) }, async () => {
      for (let spec = queue.shift(); spec !== undefined; spec = queue.shift()) await setupOne(spec);
    }),
  );

  const rated = producers.filter((p) => p.rateLimited);
  const scheduler = rated.length > 0 ? new RateScheduler(rated) : null;

  parentPort!.on('message', (msg: ToWorker) => {
    if (msg.type === 'start') {
      running = true;
      for (const p of producers) p.start(msg.t0, o.producers);
      scheduler?.start();
      for (const c of consumers) c.start();
    } else if (msg.type === 'stop') {
      if (stopping) return;
      stopping = true;
      running = false;
      scheduler?.stop();
      for (const p of producers) p.stop();
      for (const c of consumers) c.stop();
      void Promise.all(conns.map((c) => c.close(Math.max(1000, (o.grace * 1000) / 3)))).then(() => post({ type: 'closed' }));
    }
  });
  post({ type: 'ready', server });
}

main().catch((err: unknown) => {
  post({ type: 'error', who: 'worker', message: err instanceof Error ? (err.stack ?? err.message) : String(err), setup: true });
  post({ type: 'ready', server: { product: '', version: '' } });
});
