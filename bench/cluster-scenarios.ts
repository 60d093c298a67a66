// The cluster group (BENCH_SCENARIOS=cluster): Warren nodes clustered on etcd, started with the
// cluster test harness (test/cluster/harness.ts) so that process management and cleanup are the
// same as in the fault tests. RabbitMQ clusters are not available here, so every figure is a
// Warren-only ratio against a Warren baseline measured in the same run.
//
// Loaded lazily by run.ts: the harness installs exit and signal handlers when imported, which
// must not change how a run without this group reacts to Ctrl-C.
//
//   C1  normal mode: a client on n2 using a queue homed on n1, against the same client on n1
//   C2  mirrored queues (ha-mode exactly 2 / all on 3 nodes) against an unmirrored queue
//   C3  3 nodes with node-local queues against the same load on one node
//   F   failover: kill -9 (and graceful stop) of a mirrored queue's leader under a publisher
//
// Environment (besides BENCH_ROUNDS / BENCH_DURATION): BENCH_CLUSTER_KILLS=12,
// BENCH_CLUSTER_STOPS=5, BENCH_CLUSTER_RATE=200 (msg/s of the failover publisher).

import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import * as amqp from 'amqplib';
import { Etcd3 } from 'etcd3';
import { PerfConnection, parseAmqpUrl } from '../src/perf/connection';
import { defaultOptions, type PerfOptions } from '../src/perf/options';
import { readCpuSeconds } from '../src/perf/proc-stats';
import { runCleanup, runPerf, type PerfSummary } from '../src/perf/runner';
import { cleanupAll, startEtcd, startNode, type EtcdCluster, type WarrenNode } from '../test/cluster/harness';
import { envNumber, log, median, sleep } from './lib';

export interface ClusterSettings {
  rounds: number;
  duration: number;
  kills: number;
  stops: number;
  rate: number;
}

interface HaRecord {
  epoch: number;
  leader: string;
  members: string[];
  isr: string[];
}

/** Nearest-rank percentile (with 10–20 samples p99 is the maximum; the report says so). */
function percentile(xs: number[], p: number): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))]!;
}

const fmt = (v: number, d = 0): string => (Number.isFinite(v) ? (d === 0 ? Math.round(v).toLocaleString('en-US') : v.toFixed(d)) : '–');
const fmtMs = (v: number): string => (Number.isFinite(v) ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString('en-US')) : '–');

class Cluster {
  private readonly client: Etcd3;

  constructor(
    readonly etcd: EtcdCluster,
    readonly nodes: WarrenNode[],
  ) {
    this.client = new Etcd3({ hosts: etcd.endpoints });
  }

  node(name: string): WarrenNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  async record(queue: string): Promise<HaRecord | null> {
    const v = await this.client.get(`/warren/ha/${encodeURIComponent('/')}/${encodeURIComponent(queue)}`).string();
    return v === null ? null : (JSON.parse(v) as HaRecord);
  }

  /** Polls etcd, where leadership and the in-sync set are decided, until `ok` holds. */
  async waitRecord(queue: string, ok: (r: HaRecord) => boolean, timeoutMs: number, pollMs = 50): Promise<HaRecord> {
    const deadline = Date.now() + timeoutMs;
    let last: HaRecord | null = null;
    while (Date.now() < deadline) {
      last = await this.record(queue).catch(() => null);
      if (last !== null && ok(last)) return last;
      await sleep(pollMs);
    }
    throw new Error(`mirror record of ${queue} did not match within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
  }

  /** CPU seconds used so far by all running nodes (for CPU per message across the cluster). */
  cpu(): number {
    return this.nodes.reduce((sum, n) => sum + (n.running ? Math.max(0, readCpuSeconds(n.pid)) : 0), 0);
  }

  close(): void {
    this.client.close();
  }
}

async function setPolicy(node: WarrenNode, name: string, pattern: string, definition: Record<string, unknown>): Promise<void> {
  const res = await fetch(`http://${node.host}:${node.managementPort}/api/policies/%2F/${name}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
    body: JSON.stringify({ pattern, definition, 'apply-to': 'queues', priority: 0 }),
  });
  if (res.status !== 201 && res.status !== 204) throw new Error(`policy ${name}: PUT answered ${res.status}`);
}

/** Declaring on a node makes that node the queue's home. */
async function declareOn(node: WarrenNode, queue: string, durable: boolean): Promise<void> {
  const c = await PerfConnection.open(parseAmqpUrl(node.url), { timeoutMs: 10_000, name: 'bench declare' });
  try {
    await c.openChannel(1);
    await c.queueDeclare(1, queue, { durable });
  } finally {
    await c.close();
  }
}

function failureOf(s: PerfSummary): string | null {
  if (s.timed_out) return `clients terminated by the watchdog; first error: ${s.first_error || 'none'}`;
  return s.errors > 0 ? `${s.errors} client error(s); first: ${s.first_error}` : null;
}

// ---------------------------------------------------------------------------------------
// Throughput scenarios (C1–C3)

interface Sample {
  /** Metric name → value for one round. */
  values: Record<string, number>;
  failure: string | null;
}

interface Row {
  id: string;
  title: string;
  /** Metric names in display order, with units. */
  metrics: { name: string; unit: string }[];
  /** Row id this one is compared with (ratio of the first metric). */
  baseline?: string;
  samples: Sample[];
}

/** S2's load: transient 16 B, confirms 1,000, manual ack prefetch 1,000, multi-ack 100. */
const S2_LOAD: Partial<PerfOptions> = { producers: 1, consumers: 1, size: 16, confirm: 1000, prefetch: 1000, multiAck: 100 };
/** S3's load: persistent 1 KB to a durable queue, confirms 1,000, manual ack q1,000/A100. */
const S3_LOAD: Partial<PerfOptions> = { producers: 1, consumers: 1, size: 1024, persistent: true, durable: true, confirm: 1000, prefetch: 1000, multiAck: 100 };

const THROUGHPUT = [
  { name: 'received', unit: 'msg/s' },
  { name: 'p50 end-to-end', unit: 'ms' },
  { name: 'p99 end-to-end', unit: 'ms' },
  { name: 'cluster CPU', unit: 'µs/msg' },
];
const MIRRORED = [
  { name: 'confirmed', unit: 'msg/s' },
  { name: 'received', unit: 'msg/s' },
  { name: 'confirm RTT p50 (1 in flight)', unit: 'ms' },
  { name: 'confirm RTT p99 (1 in flight)', unit: 'ms' },
  { name: 'p50 end-to-end', unit: 'ms' },
  { name: 'p99 end-to-end', unit: 'ms' },
  { name: 'cluster CPU', unit: 'µs/msg' },
];

function perfOptions(node: WarrenNode, s: ClusterSettings, id: string, prefix: string, load: Partial<PerfOptions>): PerfOptions {
  return { ...defaultOptions(), uri: node.url, quiet: true, duration: s.duration, watchPid: node.pid, grace: 15, setupTimeout: 30, id, queuePrefix: prefix, ...load };
}

/** One or more warren-perf runs at once; values summed (rates) or worst (latencies). */
/** 1-minute load average before each run: other work on the shared machine shows here. */
const loads: number[] = [];

async function measurePerf(c: Cluster, runs: PerfOptions[], extra?: () => Promise<Record<string, number>>): Promise<Sample> {
  loads.push(loadavg()[0]!);
  const cpu0 = c.cpu();
  const out = await Promise.all(runs.map((o) => runPerf(o, { warn: (l) => log(`${o.id}: ${l}`) })));
  const cpu1 = c.cpu();
  const msgs = out.reduce((a, x) => a + x.sent + x.received, 0);
  const values: Record<string, number> = {
    received: out.reduce((a, x) => a + x.recv_rate, 0),
    confirmed: out.reduce((a, x) => a + x.confirm_rate, 0),
    'p50 end-to-end': Math.max(...out.map((x) => x.latency_us.p50 / 1000)),
    'p99 end-to-end': Math.max(...out.map((x) => x.latency_us.p99 / 1000)),
    'cluster CPU': msgs > 0 ? ((cpu1 - cpu0) * 1e6) / msgs : NaN,
  };
  if (extra) Object.assign(values, await extra());
  const failure = out.map(failureOf).find((f) => f !== null) ?? null;
  return { values, failure };
}

/** Confirm round trip of single persistent 1 KB publishes, one at a time, for `ms`. */
async function confirmRtt(url: string, queue: string, ms: number): Promise<number[]> {
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    const body = Buffer.alloc(1024, 0x61);
    const lat: number[] = [];
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const t0 = performance.now();
      await new Promise<void>((done, fail) => {
        ch.publish('', queue, body, { persistent: true }, (err) => (err ? fail(err as Error) : done()));
      });
      lat.push(performance.now() - t0);
    }
    return lat;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function throughputRounds(c: Cluster, s: ClusterSettings): Promise<Row[]> {
  const [n1, n2, n3] = c.nodes as [WarrenNode, WarrenNode, WarrenNode];
  const rows: Row[] = [
    { id: 'C1a', title: 'normal mode, client on the queue\'s home node n1 (S2 load: 16 B, confirms 1,000, manual ack q1,000/A100)', metrics: THROUGHPUT, samples: [] },
    { id: 'C1b', title: 'as C1a, client on n2, queue homed on n1 (publishes and deliveries forwarded over the node link)', metrics: THROUGHPUT, baseline: 'C1a', samples: [] },
    { id: 'C2a', title: 'unmirrored durable queue on n1, client on n1 (S3 load: persistent 1 KB, confirms 1,000, manual ack q1,000/A100)', metrics: MIRRORED, samples: [] },
    { id: 'C2b', title: 'as C2a, mirrored on 2 nodes (ha-mode exactly, ha-params 2), client on the leader', metrics: MIRRORED, baseline: 'C2a', samples: [] },
    { id: 'C2c', title: 'as C2a, mirrored on all 3 nodes (ha-mode all), client on the leader', metrics: MIRRORED, baseline: 'C2a', samples: [] },
    { id: 'C3a', title: 'one node (n1): 3 producers, 3 consumers, 3 queues (S2 load each), the other nodes idle', metrics: THROUGHPUT, samples: [] },
    { id: 'C3b', title: '3 nodes: 1 producer, 1 consumer, 1 queue on each node, all homed where their clients are (aggregate)', metrics: THROUGHPUT, baseline: 'C3a', samples: [] },
  ];
  const row = (id: string): Row => rows.find((r) => r.id === id)!;

  const run = async (id: string, round: number, body: (prefix: string) => Promise<Sample>): Promise<void> => {
    const prefix = `cb-${process.pid}-${id.toLowerCase()}-r${round}`;
    let sample: Sample;
    try {
      sample = await body(prefix);
    } catch (err) {
      sample = { values: {}, failure: err instanceof Error ? err.message : String(err) };
    }
    row(id).samples.push(sample);
    const first = row(id).metrics[0]!;
    log(`cluster round ${round} ${id}: ${first.name} ${fmt(sample.values[first.name] ?? NaN)} ${first.unit}${sample.failure ? ` FAILED: ${sample.failure}` : ''}`);
    await sleep(1000);
  };

  const mirrored = async (prefix: string, round: number, id: string, isr: number): Promise<Sample> => {
    const queue = `${prefix}-q0`;
    await declareOn(n1, queue, true);
    try {
      if (isr > 1) await c.waitRecord(queue, (r) => r.leader === n1.name && r.isr.length === isr, 20_000);
      return await measurePerf(c, [{ ...perfOptions(n1, s, `cluster:${id}:r${round}`, prefix, S3_LOAD), predeclared: true }], async () => {
        const lat = await confirmRtt(n1.url, queue, 3000);
        return { 'confirm RTT p50 (1 in flight)': percentile(lat, 50), 'confirm RTT p99 (1 in flight)': percentile(lat, 99) };
      });
    } finally {
      await runCleanup({ ...defaultOptions(), uri: n1.url, queuePrefix: prefix, queues: 1 }).catch(() => 0);
    }
  };

  for (let round = 1; round <= s.rounds; round++) {
    // Alternate which of a pair goes first, as run.ts does with the two brokers.
    const pair = async (a: () => Promise<void>, b: () => Promise<void>): Promise<void> => {
      if (round % 2 === 1) {
        await a();
        await b();
      } else {
        await b();
        await a();
      }
    };
    await pair(
      () => run('C1a', round, (p) => measurePerf(c, [perfOptions(n1, s, `cluster:C1a:r${round}`, p, S2_LOAD)])),
      () =>
        run('C1b', round, async (p) => {
          await declareOn(n1, `${p}-q0`, false);
          try {
            return await measurePerf(c, [{ ...perfOptions(n2, s, `cluster:C1b:r${round}`, p, S2_LOAD), predeclared: true }]);
          } finally {
            await runCleanup({ ...defaultOptions(), uri: n1.url, queuePrefix: p, queues: 1 }).catch(() => 0);
          }
        }),
    );
    const order = round % 2 === 1 ? (['C2a', 'C2b', 'C2c'] as const) : (['C2c', 'C2b', 'C2a'] as const);
    for (const id of order) await run(id, round, (p) => mirrored(p.replace(/^cb-/, id === 'C2b' ? 'ha2.cb-' : id === 'C2c' ? 'ha3.cb-' : 'plain.cb-'), round, id, id === 'C2a' ? 1 : id === 'C2b' ? 2 : 3));
    await pair(
      () => run('C3a', round, (p) => measurePerf(c, [perfOptions(n1, s, `cluster:C3a:r${round}`, p, { ...S2_LOAD, producers: 3, consumers: 3, queues: 3 })])),
      () => run('C3b', round, (p) => measurePerf(c, [n1, n2, n3].map((n) => perfOptions(n, s, `cluster:C3b:r${round}:${n.name}`, `${p}-${n.name}`, S2_LOAD)))),
    );
  }
  return rows;
}

// ---------------------------------------------------------------------------------------
// Failover (F)

/**
 * Publishes persistent messages at a fixed rate whether or not earlier ones are confirmed, so
 * the first confirm of a message sent after a fault is known to within one tick; a loop that
 * waited for each confirm would add its own stall to the failover time it measures.
 */
class TickPublisher {
  private url: string;
  private stopped = false;
  private conn: amqp.ChannelModel | undefined;
  private loop: Promise<void> | undefined;
  private outstanding = 0;
  private waiters: { after: number; done: (ackedAt: number) => void }[] = [];
  confirmed = 0;
  nacked = 0;
  reconnects = 0;
  lastError = '';

  constructor(
    url: string,
    private readonly queue: string,
    private readonly rate: number,
  ) {
    this.url = url;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Moves to another node (its connection is closed; the loop reconnects to `url`). */
  async moveTo(url: string): Promise<void> {
    if (url === this.url) return;
    this.url = url;
    await this.conn?.close().catch(() => undefined);
  }

  /** performance.now() of the first confirm of a message sent at or after `after`, or NaN. */
  firstConfirmAfter(after: number, timeoutMs: number): Promise<number> {
    return new Promise((resolve) => {
      const w = {
        after,
        done: (t: number) => {
          clearTimeout(timer);
          resolve(t);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        resolve(NaN);
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private acked(sentAt: number): void {
    this.confirmed++;
    const now = performance.now();
    const ready = this.waiters.filter((w) => sentAt >= w.after);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => sentAt < w.after);
    for (const w of ready) w.done(now);
  }

  private async run(): Promise<void> {
    const body = Buffer.alloc(64, 0x62);
    const tickMs = 1000 / this.rate;
    while (!this.stopped) {
      let conn: amqp.ChannelModel;
      try {
        conn = await amqp.connect(`${this.url}?heartbeat=2`, { timeout: 2000 });
      } catch (err) {
        this.lastError = (err as Error).message;
        await sleep(20);
        continue;
      }
      this.reconnects++;
      this.conn = conn;
      conn.on('error', (err: Error) => {
        this.lastError = err.message;
      });
      const closed = new Promise<void>((done) => conn.once('close', () => done()));
      try {
        const ch = await conn.createConfirmChannel();
        ch.on('error', (err: Error) => {
          this.lastError = err.message;
        });
        const chClosed = new Promise<void>((done) => ch.once('close', () => done()));
        let open = true;
        void Promise.race([closed, chClosed]).then(() => {
          open = false;
        });
        // A ticker rather than a loop of awaits: send times stay on schedule through a stall.
        const timer = setInterval(() => {
          if (!open || this.stopped || this.outstanding >= 1000) return;
          const sentAt = performance.now();
          this.outstanding++;
          try {
            ch.publish('', this.queue, body, { persistent: true }, (err) => {
              this.outstanding--;
              if (err) this.nacked++;
              else this.acked(sentAt);
            });
          } catch (err) {
            this.outstanding--;
            this.lastError = (err as Error).message;
          }
        }, tickMs);
        await Promise.race([closed, chClosed]);
        clearInterval(timer);
      } catch (err) {
        this.lastError = (err as Error).message;
      } finally {
        this.conn = undefined;
        // Confirms that can no longer come must not hold the window shut on the next connection.
        this.outstanding = 0;
        await conn.close().catch(() => undefined);
      }
      if (!this.stopped) await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.conn?.close().catch(() => undefined);
    await this.loop;
  }
}

interface FaultSample {
  /** Fault → first confirm of a message published after the fault (ms); NaN if none in time. */
  confirmMs: number;
  /** Fault → etcd's record naming another leader (ms). */
  electedMs: number;
  /** Restart of the old leader → back in the in-sync set (ms). */
  resyncMs: number;
  /** Whether the new leader is the node the publisher is connected to. */
  localLeader: boolean;
  /** Publishes nacked between the fault and the first new confirm. */
  nacked: number;
}

async function faults(c: Cluster, s: ClusterSettings, kind: 'kill' | 'stop', count: number, pub: TickPublisher, queue: string, notes: string[]): Promise<FaultSample[]> {
  const out: FaultSample[] = [];
  for (let i = 1; i <= count; i++) {
    const rec = await c.waitRecord(queue, (r) => r.isr.length === 3, 60_000);
    const leader = c.node(rec.leader);
    // The publisher must be on a node that survives; the leader moves around as we go.
    const survivor = c.nodes.find((n) => n.name !== leader.name && n.running)!;
    await pub.moveTo(survivor.url);
    const settled = performance.now();
    if (Number.isNaN(await pub.firstConfirmAfter(settled, 15_000))) throw new Error(`${kind} ${i}: the publisher on ${survivor.name} got no confirm before the fault (${pub.lastError})`);
    await sleep(300);

    const nacked0 = pub.nacked;
    const t0 = performance.now();
    const elected = (async () => {
      const r = await c.waitRecord(queue, (x) => x.leader !== leader.name && x.epoch > rec.epoch, 60_000, 10);
      return { at: performance.now(), leader: r.leader };
    })();
    const confirmed = pub.firstConfirmAfter(t0, 60_000);
    if (kind === 'kill') await leader.kill();
    else await leader.stop();
    const [e, ackAt] = await Promise.all([elected.catch(() => ({ at: NaN, leader: '?' })), confirmed]);
    const sample: FaultSample = { confirmMs: ackAt - t0, electedMs: e.at - t0, resyncMs: NaN, localLeader: e.leader === survivor.name, nacked: pub.nacked - nacked0 };

    const r0 = performance.now();
    await leader.restart();
    try {
      await c.waitRecord(queue, (x) => x.isr.length === 3 && x.isr.includes(leader.name), 90_000);
      sample.resyncMs = performance.now() - r0;
    } catch (err) {
      notes.push(`${kind} ${i}: ${leader.name} not back in sync: ${(err as Error).message}`);
    }
    out.push(sample);
    log(
      `cluster ${kind} ${i}/${count}: ${leader.name} → ${e.leader} (publisher on ${survivor.name}); elected after ${fmtMs(sample.electedMs)} ms, ` +
        `first new confirm after ${fmtMs(sample.confirmMs)} ms (${sample.nacked} nacks before it); back in sync ${fmtMs(sample.resyncMs)} ms after restart`,
    );
  }
  return out;
}

async function failover(c: Cluster, s: ClusterSettings, notes: string[]): Promise<{ kills: FaultSample[]; stops: FaultSample[] }> {
  const [n1, n2] = c.nodes as [WarrenNode, WarrenNode, WarrenNode];
  const queue = 'ha3.failover';
  await declareOn(n1, queue, true);
  await c.waitRecord(queue, (r) => r.isr.length === 3, 30_000);
  const pub = new TickPublisher(n2.url, queue, s.rate);
  pub.start();
  try {
    const kills = await faults(c, s, 'kill', s.kills, pub, queue, notes);
    const stops = await faults(c, s, 'stop', s.stops, pub, queue, notes);
    log(`cluster failover publisher: ${pub.confirmed} confirmed, ${pub.nacked} nacked, ${pub.reconnects} connections`);
    notes.push(`failover publisher: ${pub.confirmed.toLocaleString('en-US')} confirmed, ${pub.nacked} nacked, ${pub.reconnects} connections over the ${s.kills + s.stops} faults`);
    return { kills, stops };
  } finally {
    await pub.stop();
  }
}

// ---------------------------------------------------------------------------------------
// Report

function throughputTable(rows: Row[]): string[] {
  const L: string[] = [];
  L.push('| scenario | metric | median | spread | ratio to baseline | runs ok |');
  L.push('|---|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const good = r.samples.filter((x) => x.failure === null);
    const base = r.baseline ? rows.find((x) => x.id === r.baseline) : undefined;
    r.metrics.forEach((m, i) => {
      const vals = good.map((x) => x.values[m.name] ?? NaN).filter(Number.isFinite);
      const med = median(vals);
      const spread = vals.length > 1 && med > 0 ? `${Math.round(((Math.max(...vals) - Math.min(...vals)) / med) * 100)} %` : '–';
      let ratio = '';
      if (base) {
        const bv = median(base.samples.filter((x) => x.failure === null).map((x) => x.values[m.name] ?? NaN));
        ratio = Number.isFinite(med) && bv > 0 ? `${(med / bv).toFixed(2)}× ${r.baseline}` : '–';
      }
      const value = m.unit === 'msg/s' ? fmt(med) : m.unit === 'ms' ? fmtMs(med) : fmt(med, 2);
      const head = i === 0 ? `${r.id}: ${r.title}` : `${r.id} (cont.)`;
      L.push(`| ${head} | ${m.name}, ${m.unit} | ${value} | ${spread} | ${ratio} | ${i === 0 ? `${good.length}/${r.samples.length}` : ''} |`);
    });
  }
  return L;
}

function faultRows(label: string, xs: FaultSample[]): string[] {
  const line = (what: string, v: number[]): string => {
    const ok = v.filter(Number.isFinite);
    return `| ${label} | ${what} | ${ok.length}/${v.length} | ${fmtMs(percentile(ok, 50))} | ${fmtMs(percentile(ok, 99))} | ${fmtMs(ok.length ? Math.max(...ok) : NaN)} | ${fmtMs(ok.length ? Math.min(...ok) : NaN)} |`;
  };
  return [
    line('fault → first confirm of a message published after it', xs.map((x) => x.confirmMs)),
    line('fault → new leader in etcd', xs.map((x) => x.electedMs)),
    line('restart → back in the in-sync set', xs.map((x) => x.resyncMs)),
  ];
}

export async function runClusterBench(s: ClusterSettings): Promise<string> {
  const started = new Date();
  const notes: string[] = [];
  let rows: Row[] = [];
  let f: { kills: FaultSample[]; stops: FaultSample[] } = { kills: [], stops: [] };
  let fatal: string | null = null;
  let c: Cluster | undefined;
  try {
    const etcd = await startEtcd({ members: 1 });
    const nodes: WarrenNode[] = [];
    for (const [i, name] of ['n1', 'n2', 'n3'].entries()) nodes.push(await startNode({ etcd: etcd.endpoints, name, host: `127.0.0.${i + 1}` }));
    c = new Cluster(etcd, nodes);
    log(`cluster: etcd ${etcd.endpoints.join(',')}; ${nodes.map((n) => `${n.name} ${n.host}:${n.port} pid ${n.pid}`).join(', ')}`);
    await setPolicy(nodes[0]!, 'bench-ha2', '^ha2\\.', { 'ha-mode': 'exactly', 'ha-params': 2 });
    await setPolicy(nodes[0]!, 'bench-ha3', '^ha3\\.', { 'ha-mode': 'all' });
    // JIT warm-up on every node, so round 1 is not the one measuring a cold process.
    await Promise.all(nodes.map((n) => runPerf({ ...perfOptions(n, { ...s, duration: 2 }, `warmup:${n.name}`, `cb-${process.pid}-warm-${n.name}`, S2_LOAD) })));
    rows = await throughputRounds(c, s);
    f = await failover(c, s, notes);
  } catch (err) {
    fatal = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`cluster group failed: ${fatal}`);
  } finally {
    c?.close();
    await cleanupAll();
  }
  const minutes = (Date.now() - started.getTime()) / 60000;

  const L: string[] = ['## Cluster (Warren only)', ''];
  L.push(
    `Run: ${started.toISOString().replace('T', ' ').slice(0, 16)} UTC, ${minutes.toFixed(1)} minutes, \`BENCH_SCENARIOS=cluster BENCH_ROUNDS=${s.rounds} BENCH_DURATION=${s.duration} ` +
      `BENCH_CLUSTER_KILLS=${s.kills} BENCH_CLUSTER_STOPS=${s.stops} BENCH_CLUSTER_RATE=${s.rate}\`; same machine as above; ` +
      `1-minute load average before each C run ${loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} (median ${median(loads).toFixed(1)})` : '–'}.`,
    '',
    'Setup: one etcd member and three Warren nodes (n1, n2, n3 on 127.0.0.1–3, loopback), each its own process with its own',
    'data directory, started by the cluster test harness (test/cluster/harness.ts) with default settings (3 s lease). The load',
    'generator (warren-perf, worker threads of the bench process) runs on the same 2 cores. RabbitMQ clusters are not',
    'available here, so there is no RabbitMQ column: every ratio is Warren against a Warren baseline from the same run.',
    '',
    `Method: C1–C3 are ${s.duration} s warren-perf runs, ${s.rounds} round${s.rounds === 1 ? '' : 's'}, medians; the two sides of each comparison alternate`,
    'which goes first. "Cluster CPU" is the CPU time of all three node processes during the run ÷ (messages sent + received),',
    'so forwarding and replication costs on other nodes count. End-to-end latency is the consumer-side latency of the',
    'unthrottled run (mostly queueing in the 1,000-message confirm and prefetch windows, not a latency figure). warren-perf has',
    'no confirm-latency histogram, so C2 adds its own probe after each run: single persistent 1 KB publishes on a confirm',
    'channel, one in flight, for 3 s against the leader (the round trip includes every in-sync mirror\'s fsync).',
    '',
  );
  if (rows.length) L.push(...throughputTable(rows), '');
  L.push(
    `Failover (F): queue \`ha3.failover\` mirrored on all three nodes; a publisher on a surviving node sends persistent 64 B`,
    `messages at a fixed ${s.rate} msg/s on a confirm channel (not waiting for confirms, so send times stay on schedule;`,
    `resolution ${fmtMs(1000 / s.rate)} ms). Each fault: wait for all three in sync, move the publisher off the leader, kill -9`,
    '(or SIGTERM, graceful) the leader, then time the first confirm of a message published after the fault, and, by polling',
    'etcd every 10 ms, the new leader\'s record; then restart the old leader and wait for it to be back in the in-sync set.',
    `Percentiles are nearest-rank: with ${s.kills} kills p99 is the maximum.`,
    '',
    '| fault | measure | samples | p50 ms | p99 ms | max ms | min ms |',
    '|---|---|---:|---:|---:|---:|---:|',
    ...faultRows(`kill -9 of the leader (×${f.kills.length})`, f.kills),
    ...faultRows(`graceful stop of the leader (×${f.stops.length})`, f.stops),
    '',
  );
  const local = f.kills.filter((x) => x.localLeader).length;
  if (f.kills.length) notes.push(`after ${local} of ${f.kills.length} kills the new leader was the publisher's own node; after the others, the third node (publishes forwarded)`);
  for (const [label, xs] of [['kill', f.kills], ['graceful stop', f.stops]] as const) {
    if (xs.length) notes.push(`publishes nacked between a ${label} and the first new confirm: median ${median(xs.map((x) => x.nacked))}, max ${Math.max(...xs.map((x) => x.nacked))} (at ${s.rate} msg/s)`);
  }
  for (const r of rows) for (const [i, x] of r.samples.entries()) if (x.failure) notes.push(`${r.id} run ${i + 1} FAILED: ${x.failure.replace(/\n/g, ' ')}`);
  if (fatal) notes.push(`the group stopped early: ${fatal.split('\n')[0]}`);
  if (notes.length) L.push('Notes:', '', ...notes.map((n) => `- ${n}`), '');
  L.push(
    'Caveats: a 2-vCPU shared VM runs three Warren nodes, etcd and the load generator, so C3 cannot show scaling with',
    'cores — three node processes compete for the same two CPUs as one node and its clients; a single etcd member (no etcd',
    'replication cost or etcd failover); loopback networking (no network latency or bandwidth limit between nodes); the',
    'RabbitMQ 3.10.8 on this machine stays running, idle, during these runs.',
  );
  return L.join('\n');
}

export function clusterSettings(rounds: number, duration: number): ClusterSettings {
  return {
    rounds,
    duration,
    kills: Math.round(envNumber('BENCH_CLUSTER_KILLS', 12)),
    stops: Math.round(envNumber('BENCH_CLUSTER_STOPS', 5)),
    rate: envNumber('BENCH_CLUSTER_RATE', 200),
  };
}
