// The main thread of a warren-perf run: declare the topology, start the worker threads, let them
// connect, start the clock, print a progress line every interval, stop at -z or when every
// client reached its -C/-D, stop the workers (with a watchdog), delete the queues, summarize.

import * as os from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { PerfConnection, parseAmqpUrl } from './connection';
import { HIST_BUCKETS, summarize, type LatencySummary } from './histogram';
import type { PerfOptions } from './options';
import { ProcessSampler, type ProcessUsage } from './proc-stats';
import {
  SLOT,
  S_BLOCKED,
  S_CONFIRMED,
  S_DONE,
  S_NACKED,
  S_RECEIVED,
  S_SENT,
  nowNs,
  type ClientSpec,
  type FromWorker,
  type Role,
  type ToWorker,
  type WorkerInput,
} from './shared';
import { buildTopology, type Topology } from './topology';

export const VERSION = '0.1.0';

export interface PerfSummary {
  id: string;
  tool: 'warren-perf';
  version: string;
  server: { product: string; version: string };
  producers: number;
  consumers: number;
  queues: number;
  size: number;
  confirm: number;
  persistent: boolean;
  durable: boolean;
  autoack: boolean;
  prefetch: number;
  multi_ack: number;
  exchange_type: string;
  rate: number;
  consumer_rate: number;
  workers: { producer: number; consumer: number };
  elapsed_s: number;
  sent: number;
  confirmed: number;
  nacked: number;
  received: number;
  sent_rate: number;
  confirm_rate: number;
  recv_rate: number;
  recv_mb_s: number;
  latency_us: LatencySummary;
  client_cpu_s: number;
  client_cpu_pct: number;
  client_cpu_us_per_msg: number;
  broker?: ProcessUsage & { cpu_pct: number; cpu_us_per_msg: number };
  queue_prefix: string;
  queue_depth: number;
  blocked: boolean;
  errors: number;
  setup_errors: number;
  cleanup_failed: number;
  timed_out: boolean;
  first_error: string;
}

export interface ProgressSample {
  t: number;
  sentRate: number;
  confirmRate: number;
  recvRate: number;
  latency: LatencySummary;
  blocked: boolean;
}

export interface RunIO {
  /** Called once per interval during the run. */
  progress?(sample: ProgressSample): void;
  /** Warnings and client errors, one line each. */
  warn?(line: string): void;
  /** Aborting ends the run early (as if -z had elapsed); cleanup and summary still happen. */
  signal?: AbortSignal;
}

export class PerfSetupError extends Error {}

interface WorkerHandle {
  worker: Worker;
  role: Role;
  ready: boolean;
  closed: boolean;
  exited: boolean;
  hist: Float64Array | null;
}

/** Runs one measurement and resolves with its summary (errors are counted in it). */
export async function runPerf(o: PerfOptions, io: RunIO = {}): Promise<PerfSummary> {
  const url = parseAmqpUrl(o.uri);
  const topo = buildTopology(o);
  const warn = (line: string): void => io.warn?.(line);
  let errors = 0;
  let setupErrors = 0;
  let firstError = '';
  const noteError = (who: string, message: string, setup: boolean): void => {
    errors++;
    if (setup) setupErrors++;
    if (!firstError) firstError = `${who}: ${message}`;
    if (errors <= 10) warn(`warren-perf: ${who}: ${message}`);
    else if (errors === 11) warn('warren-perf: (more errors not shown)');
  };

  let setup: PerfConnection;
  try {
    setup = await PerfConnection.open(url, { timeoutMs: o.setupTimeout * 1000, name: 'warren-perf setup' });
    await setup.openChannel(1);
  } catch (err) {
    throw new PerfSetupError(err instanceof Error ? err.message : String(err));
  }
  let server = setup.server;
  try {
    await declare(setup, o, topo);
  } catch (err) {
    await deleteTopology(setup, o, topo).catch(() => 0);
    await setup.close();
    throw new PerfSetupError(`setup failed: ${err instanceof Error ? err.message : String(err)}`);
  }

  // ---- workers -------------------------------------------------------------------------------
  const nClients = o.producers + o.consumers;
  const stats = new Float64Array(new SharedArrayBuffer(Math.max(1, nClients) * SLOT * 8));
  const cpus = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const maxWorkers = o.workers > 0 ? o.workers : Math.max(2, cpus);
  const groups = (role: Role, count: number, firstSlot: number): ClientSpec[][] => {
    const n = Math.min(count, maxWorkers);
    const out: ClientSpec[][] = Array.from({ length: n }, () => []);
    for (let i = 0; i < count; i++) out[i % n]!.push({ id: i, slot: firstSlot + i, queueIdx: i % topo.queues.length });
    return out;
  };
  const consumerGroups = groups('consumer', o.consumers, 0);
  const producerGroups = groups('producer', o.producers, o.consumers);
  const handles: WorkerHandle[] = [];
  const workerFile = join(__dirname, 'worker.js');
  const spawn = (role: Role, clients: ClientSpec[], index: number): void => {
    const histSab = role === 'consumer' ? new SharedArrayBuffer((HIST_BUCKETS + 1) * 8) : null;
    const input: WorkerInput = { role, index, options: o, topology: topo, clients, stats: stats.buffer as SharedArrayBuffer, hist: histSab };
    const worker = new Worker(workerFile, { workerData: input });
    const h: WorkerHandle = { worker, role, ready: false, closed: false, exited: false, hist: histSab ? new Float64Array(histSab) : null };
    worker.on('message', (m: FromWorker) => {
      if (m.type === 'ready') {
        h.ready = true;
        if (!server.product && m.server.product) server = m.server;
      } else if (m.type === 'error') noteError(m.who, m.message, m.setup);
      else if (m.type === 'closed') h.closed = true;
    });
    worker.on('error', (err) => noteError(`${role} worker ${index}`, err.message, !h.ready));
    worker.on('exit', () => {
      h.exited = true;
      h.ready = true;
      h.closed = true;
    });
    handles.push(h);
  };
  consumerGroups.forEach((g, i) => spawn('consumer', g, i));
  producerGroups.forEach((g, i) => spawn('producer', g, i));

  const terminateAll = async (): Promise<void> => {
    await Promise.all(handles.map((h) => h.worker.terminate().catch(() => 0)));
  };

  // Every client connected (or failed), bounded.
  const readyBy = Date.now() + (o.setupTimeout + 5) * 1000;
  while (!handles.every((h) => h.ready)) {
    if (Date.now() > readyBy || io.signal?.aborted) {
      noteError('setup', `clients not connected after ${o.setupTimeout + 5} s`, true);
      await terminateAll();
      await deleteTopology(setup, o, topo).catch(() => 0);
      await setup.close();
      throw new PerfSetupError(`setup failed: ${firstError}`);
    }
    await sleep(5);
  }

  // ---- the measured interval -------------------------------------------------------------------
  const sampler = o.watchPid > 0 ? new ProcessSampler(o.watchPid) : null;
  sampler?.start();
  const cpu0 = process.cpuUsage();
  const t0 = nowNs();
  for (const h of handles) h.worker.postMessage({ type: 'start', t0 } satisfies ToWorker);

  const sum = (field: number, from: number, to: number): number => {
    let s = 0;
    for (let i = from; i < to; i++) s += stats[i * SLOT + field]!;
    return s;
  };
  const allDone = (from: number, to: number): boolean => {
    for (let i = from; i < to; i++) if (stats[i * SLOT + S_DONE] !== 1) return false;
    return true;
  };
  const pFrom = o.consumers;
  const pTo = nClients;
  const mergedHist = (): Float64Array => {
    const m = new Float64Array(HIST_BUCKETS + 1);
    for (const h of handles) if (h.hist) for (let i = 0; i <= HIST_BUCKETS; i++) m[i]! += h.hist[i]!;
    return m;
  };

  const deadline = t0 + o.duration * 1e9;
  const intervalNs = o.interval * 1e9;
  let nextTick = t0 + intervalNs;
  let last: { t: number; sent: number; confirmed: number; received: number; hist: Float64Array } = { t: t0, sent: 0, confirmed: 0, received: 0, hist: new Float64Array(HIST_BUCKETS + 1) };
  let everBlocked = false;
  for (;;) {
    const now = nowNs();
    if (now >= deadline || io.signal?.aborted) break;
    const pdone = allDone(pFrom, pTo);
    const cdone = allDone(0, o.consumers);
    if (nClients > 0 && pdone && cdone) break;
    if (o.producers > 0 && pdone && !o.pmessages && o.consumers > 0 && !o.cmessages) break; // producers died
    if (o.producers === 0 && cdone) break;
    if (o.consumers === 0 && pdone) break;
    if (now >= nextTick) {
      const sent = sum(S_SENT, pFrom, pTo);
      const confirmed = sum(S_CONFIRMED, pFrom, pTo);
      const received = sum(S_RECEIVED, 0, o.consumers);
      const hist = mergedHist();
      const delta = new Float64Array(HIST_BUCKETS);
      for (let i = 0; i < HIST_BUCKETS; i++) delta[i] = hist[i]! - last.hist[i]!;
      const dt = (now - last.t) / 1e9;
      const blocked = sum(S_BLOCKED, 0, nClients) > 0;
      everBlocked ||= blocked;
      io.progress?.({
        t: (now - t0) / 1e9,
        sentRate: (sent - last.sent) / dt,
        confirmRate: (confirmed - last.confirmed) / dt,
        recvRate: (received - last.received) / dt,
        latency: summarize(delta, hist[HIST_BUCKETS]! - last.hist[HIST_BUCKETS]!),
        blocked,
      });
      last = { t: now, sent, confirmed, received, hist };
      nextTick += intervalNs;
      if (nextTick < now) nextTick = now + intervalNs;
    }
    await sleep(Math.max(1, Math.min(10, (Math.min(deadline, nextTick) - nowNs()) / 1e6)));
  }
  const t1 = nowNs();
  const cpu = process.cpuUsage(cpu0);
  const brokerUsage = sampler?.stop();
  const sent = sum(S_SENT, pFrom, pTo);
  const confirmed = sum(S_CONFIRMED, pFrom, pTo);
  const nacked = sum(S_NACKED, pFrom, pTo);
  const received = sum(S_RECEIVED, 0, o.consumers);
  everBlocked ||= sum(S_BLOCKED, 0, nClients) > 0;

  // ---- stop, bounded by the watchdog -----------------------------------------------------------
  for (const h of handles) if (!h.exited) h.worker.postMessage({ type: 'stop' } satisfies ToWorker);
  const stopBy = Date.now() + o.grace * 1000;
  while (!handles.every((h) => h.closed) && Date.now() < stopBy) await sleep(5);
  const timedOut = !handles.every((h) => h.closed);
  if (timedOut) noteError('watchdog', `clients did not stop within ${o.grace} s (--grace); terminated`, false);
  const finalHist = mergedHist();
  const latency = summarize(finalHist.subarray(0, HIST_BUCKETS), finalHist[HIST_BUCKETS]!);
  await terminateAll();

  // ---- cleanup ---------------------------------------------------------------------------------
  let depth = -1;
  let cleanupFailed = 0;
  if (setup.error !== null) {
    await setup.close();
    try {
      setup = await PerfConnection.open(url, { timeoutMs: 5000, name: 'warren-perf cleanup' });
      await setup.openChannel(1);
    } catch (err) {
      noteError('cleanup', err instanceof Error ? err.message : String(err), false);
    }
  }
  if (o.keep) {
    depth = 0;
    for (const q of topo.queues) {
      try {
        depth += await setup.queueDeclare(1, q, { passive: true });
      } catch {
        depth = -1;
        break;
      }
    }
  } else {
    cleanupFailed = await deleteTopology(setup, o, topo);
  }
  await setup.close();

  const elapsed = (t1 - t0) / 1e9;
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const msgs = sent + received;
  const summary: PerfSummary = {
    id: o.id,
    tool: 'warren-perf',
    version: VERSION,
    server,
    producers: o.producers,
    consumers: o.consumers,
    queues: topo.queues.length,
    size: o.size,
    confirm: o.confirm,
    persistent: o.persistent,
    durable: o.durable,
    autoack: o.autoack,
    prefetch: o.prefetch,
    multi_ack: o.multiAck,
    exchange_type: o.exchangeType || (topo.exchange ? 'direct' : 'default'),
    rate: o.rate,
    consumer_rate: o.consumerRate,
    workers: { producer: producerGroups.length, consumer: consumerGroups.length },
    elapsed_s: round(elapsed, 3),
    sent,
    confirmed,
    nacked,
    received,
    sent_rate: round(sent / elapsed, 1),
    confirm_rate: round(confirmed / elapsed, 1),
    recv_rate: round(received / elapsed, 1),
    recv_mb_s: round((received * o.size) / elapsed / 1e6, 2),
    latency_us: roundLatency(latency),
    client_cpu_s: round(cpuS, 3),
    client_cpu_pct: round((100 * cpuS) / elapsed, 1),
    client_cpu_us_per_msg: msgs > 0 ? round((cpuS * 1e6) / msgs, 3) : 0,
    queue_prefix: topo.prefix,
    queue_depth: depth,
    blocked: everBlocked,
    errors,
    setup_errors: setupErrors,
    cleanup_failed: cleanupFailed,
    timed_out: timedOut,
    first_error: firstError,
  };
  if (brokerUsage) {
    summary.broker = {
      ...brokerUsage,
      cpu_s: round(brokerUsage.cpu_s, 2),
      cpu_pct: round((100 * brokerUsage.cpu_s) / elapsed, 1),
      cpu_us_per_msg: msgs > 0 ? round((brokerUsage.cpu_s * 1e6) / msgs, 3) : 0,
    };
  }
  return summary;
}

/** --cleanup: delete the queues and exchange of a prefix. Resolves with the number of failures. */
export async function runCleanup(o: PerfOptions): Promise<{ cleanup: string; queues: number; failed: number }> {
  const url = parseAmqpUrl(o.uri);
  const topo = buildTopology({ ...o, predeclared: false, exchangeType: o.exchangeType || 'direct' });
  const conn = await PerfConnection.open(url, { timeoutMs: o.setupTimeout * 1000, name: 'warren-perf cleanup' });
  await conn.openChannel(1);
  const failed = await deleteTopology(conn, { ...o, predeclared: false, keep: false }, { ...topo, ownsExchange: !topo.exchange.startsWith('amq.') });
  await conn.close();
  return { cleanup: topo.prefix, queues: topo.queues.length, failed };
}

async function declare(c: PerfConnection, o: PerfOptions, t: Topology): Promise<void> {
  if (t.ownsExchange) await c.exchangeDeclare(1, t.exchange, t.exchangeType, o.durable);
  if (t.ownsQueues) await pipelined(t.queues, (q) => c.queueDeclare(1, q, { durable: o.durable, args: o.queueArgs }));
  await pipelined(t.bindings, (b) => c.queueBind(1, b.queue, t.exchange, b.key));
}

/** Issues up to 64 RPCs before awaiting them (replies come back in order on one channel). */
async function pipelined<T>(items: T[], f: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += 64) {
    await Promise.all(items.slice(i, i + 64).map(f));
  }
}

/** Deletes what the run declared; reopens the channel after an error. Returns failures. */
async function deleteTopology(c: PerfConnection, o: PerfOptions, t: Topology): Promise<number> {
  if (o.keep || c.error !== null) return c.error !== null && t.ownsQueues ? t.queues.length : 0;
  let failed = 0;
  const attempt = async (f: () => Promise<void>): Promise<void> => {
    try {
      await f();
    } catch {
      failed++;
      if (c.error === null) await c.openChannel(1).catch(() => 0);
    }
  };
  if (t.ownsQueues) for (const q of t.queues) await attempt(() => c.queueDelete(1, q));
  if (t.ownsExchange) await attempt(() => c.exchangeDelete(1, t.exchange));
  return failed;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function round(v: number, digits: number): number {
  if (!Number.isFinite(v)) return 0;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

function roundLatency(l: LatencySummary): LatencySummary {
  const out = { ...l };
  for (const k of Object.keys(out) as (keyof LatencySummary)[]) if (k !== 'samples') out[k] = round(out[k], 1);
  return out;
}
