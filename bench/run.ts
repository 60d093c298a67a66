// npm run bench: Warren (a child process with a fresh data directory) against RabbitMQ on the same
// machine, same scenarios, same load generator (warren-perf, in this process's worker threads),
// alternating brokers run by run; medians of the rounds go to BENCHMARKS.md.
//
// Environment:
//   BENCH_ROUNDS=3          rounds (each runs every scenario on both brokers)
//   BENCH_DURATION=5        seconds per run
//   BENCH_SCENARIOS=1-6     which scenarios: e.g. "1,2,4", "1-6,7,9", "all"
//   BENCH_S6_RATE=20        msg/s per producer in scenario 6 (100 producers)
//   BENCH_RABBITMQ=0        skip RabbitMQ; BENCH_RABBITMQ_URL=amqp://... to use another one
//   BENCH_OUT=BENCHMARKS.md where to write the report (relative to the repository)
//   BENCH_KEEP_LOGS=1       keep Warren's log and data directory
//   BENCH_S8_COUNT=1000000  messages in scenario 8 (backlog); BENCH_S10_CONNECTIONS=1000, BENCH_S10_QUEUES=10000
//   BENCH_SCENARIOS=durability  the durability group (D1-D4: persistent publishing, backlog memory and drain,
//                           recovery after kill -9); BENCH_DUR_COUNT=1000000 messages in D3 and D4
//   BENCH_SCENARIOS=delayed the delayed-message group (X1, Warren only); BENCH_DELAYED_COUNT=1000000,
//                           BENCH_DELAYED_MIN_MS=30000, BENCH_DELAYED_MAX_MS=60000 (range of x-delay)
//   BENCH_SCENARIOS=cluster the cluster group (bench/cluster-scenarios.ts: etcd + 3 Warren nodes, Warren
//                           only); BENCH_CLUSTER_KILLS=12, BENCH_CLUSTER_STOPS=5, BENCH_CLUSTER_RATE=200
// A run of groups only (e.g. BENCH_SCENARIOS=durability) replaces those groups' sections of the
// report and leaves the rest of it as it was; a full run keeps the sections of groups it did not run.

import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { defaultOptions, type PerfOptions } from '../src/perf/options';
import { runPerf, type PerfSummary } from '../src/perf/runner';
import { ROOT, WarrenProcess, ensureRabbit, envNumber, log, machine, median, sleep, stopRabbit, type Machine, type Rabbit } from './lib';
import { GROUPS, scenarios, selectScenarios, type Scenario } from './scenarios';

type BrokerName = 'Warren' | 'RabbitMQ';

interface RunRecord {
  broker: BrokerName;
  scenario: string;
  round: number;
  /** 1-minute load average just before the run (other work on the machine shows here). */
  load: number;
  /** One value per metric of the scenario. */
  values: number[];
  brokerUsPerMsg: number;
  rssMaxMb: number;
  /** The warren-perf summary, for scenarios that are one warren-perf run. */
  summary: PerfSummary | null;
  failure: string | null;
  note?: string;
}

async function measure(url: string, pid: number, broker: BrokerName, s: Scenario, round: number, duration: number, warren: WarrenProcess | null): Promise<RunRecord> {
  const prefix = `bench-${process.pid}-${s.id}-r${round}-${broker.toLowerCase()}`;
  const load = loadavg()[0]!;
  const rec: RunRecord = { broker, scenario: s.id, round, load, values: s.metrics.map(() => NaN), brokerUsPerMsg: NaN, rssMaxMb: NaN, summary: null, failure: null };
  const warn = (line: string): void => log(`${broker} ${s.id}: ${line}`);
  const o: PerfOptions = {
    ...defaultOptions(),
    uri: url,
    quiet: true,
    duration,
    watchPid: pid,
    grace: 15,
    setupTimeout: 30,
    id: `${broker}:${s.id}:r${round}`,
    queuePrefix: prefix,
    ...s.opts,
  };
  // Custom scenarios bound their own steps; this is the last resort for a run that hangs.
  const limitMs = s.custom ? 1800 * 1000 : (duration + o.grace + 2 * o.setupTimeout + 30) * 1000;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`run did not finish within ${limitMs / 1000} s`)), limitMs);
  });
  try {
    if (s.custom) {
      const r = await Promise.race([s.custom({ url, pid, prefix, duration, warn, warren }), deadline]);
      return { ...rec, values: r.values, brokerUsPerMsg: r.brokerUsPerMsg, rssMaxMb: r.rssMaxMb, failure: r.failure, note: r.note };
    }
    const summary = await Promise.race([runPerf(o, { warn }), deadline]);
    let failure: string | null = null;
    if (summary.timed_out) failure = `clients had to be terminated by the watchdog; first error: ${summary.first_error || 'none'}`;
    else if (summary.errors > 0) failure = `${summary.errors} client error(s); first: ${summary.first_error}`;
    return {
      ...rec,
      values: s.values!(summary),
      brokerUsPerMsg: summary.broker?.cpu_us_per_msg ?? NaN,
      rssMaxMb: summary.broker ? summary.broker.rss_max_kb / 1024 : NaN,
      summary,
      failure,
    };
  } catch (err) {
    return { ...rec, failure: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

const fmtInt = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '–');
const fmtNum = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : '–');
function fmtMetric(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '–';
  if (unit === 'msg/s') return fmtInt(v);
  if (unit === 'ms') return v < 1 ? v.toFixed(3) : v.toFixed(2);
  if (unit === 's') return v.toFixed(2);
  if (unit === 'count' || unit === 'bytes') return fmtInt(v);
  return v.toFixed(1);
}

interface Agg {
  /** Median per metric. */
  values: number[];
  /** Spread of the first metric. */
  spread: string;
  sent: number;
  recv: number;
  p50: number;
  p99: number;
  brokerCpuPct: number;
  brokerUsPerMsg: number;
  rssMaxMb: number;
  clientCpuPct: number;
  ok: number;
  failed: number;
}

function aggregate(recs: RunRecord[], s: Scenario): Agg {
  const good = recs.filter((r) => r.failure === null);
  const ok = good.filter((r) => r.summary !== null).map((r) => r.summary!);
  const pick = (f: (x: PerfSummary) => number): number => median(ok.map(f));
  const first = good.map((r) => r.values[0]!).filter(Number.isFinite);
  const lo = Math.min(...first);
  const hi = Math.max(...first);
  return {
    values: s.metrics.map((_, i) => median(good.map((r) => r.values[i]!))),
    spread: first.length > 1 && lo > 0 ? `${Math.round(((hi - lo) / median(first)) * 100)} %` : '–',
    sent: pick((x) => x.sent_rate),
    recv: pick((x) => x.recv_rate),
    p50: pick((x) => x.latency_us.p50 / 1000),
    p99: pick((x) => x.latency_us.p99 / 1000),
    brokerCpuPct: pick((x) => x.broker?.cpu_pct ?? NaN),
    brokerUsPerMsg: median(good.map((r) => r.brokerUsPerMsg)),
    rssMaxMb: median(good.map((r) => r.rssMaxMb)),
    clientCpuPct: pick((x) => x.client_cpu_pct),
    ok: good.length,
    failed: recs.length - good.length,
  };
}

/** Rows of a summary table (scenario | metric | Warren | RabbitMQ | ratio | CPU | RSS). */
function summaryRows(list: Scenario[], records: RunRecord[], haveRabbit: boolean): string[] {
  const L: string[] = [];
  for (const s of list) {
    const w = aggregate(records.filter((r) => r.broker === 'Warren' && r.scenario === s.id), s);
    const r = aggregate(records.filter((x) => x.broker === 'RabbitMQ' && x.scenario === s.id), s);
    const failedW = w.failed ? ` (${w.failed} of ${w.ok + w.failed} runs failed)` : '';
    const failedR = r.failed ? ` (${r.failed} of ${r.ok + r.failed} runs failed)` : '';
    const rabbitCol = (i: number, rv: number, unit: string): string => {
      if (s.rabbitSkip) return i === 0 ? s.rabbitSkip : '–';
      return haveRabbit ? fmtMetric(rv, unit) + (i === 0 ? failedR : '') : '–';
    };
    s.metrics.forEach((mt, i) => {
      const wv = w.values[i]!;
      const rv = r.values[i]!;
      const ratio = haveRabbit && Number.isFinite(wv) && Number.isFinite(rv) && rv > 0 ? `${(wv / rv).toFixed(2)}×` : '–';
      const metric = `${mt.name}, ${mt.unit}${mt.lowerIsBetter ? ' (lower is better)' : ''}`;
      const head = i === 0 ? `${s.id}: ${s.title}` : `${s.id} (cont.)`;
      const rOk = haveRabbit && !s.rabbitSkip;
      const res = i === 0 ? `${fmtNum(w.brokerUsPerMsg)} / ${rOk ? fmtNum(r.brokerUsPerMsg) : '–'} | ${fmtInt(w.rssMaxMb)} / ${rOk ? fmtInt(r.rssMaxMb) : '–'}` : ' | ';
      L.push(`| ${head} | ${metric} | ${fmtMetric(wv, mt.unit)}${i === 0 ? failedW : ''} | ${rabbitCol(i, rv, mt.unit)} | ${ratio} | ${res} |`);
    });
  }
  return L;
}

const groupStart = (g: string): string => `<!-- bench group ${g}: written by npm run bench with BENCH_SCENARIOS=${g} -->`;
const groupEnd = (g: string): string => `<!-- end of bench group ${g} -->`;

/** The report section of one scenario group, between markers so later runs can replace it. */
function groupSection(
  group: (typeof GROUPS)[number],
  list: Scenario[],
  records: RunRecord[],
  o: { m: Machine; rabbit: Rabbit | string; rounds: number; started: Date; minutes: number },
): string {
  const haveRabbit = typeof o.rabbit !== 'string';
  const recs = records.filter((r) => list.some((s) => s.id === r.scenario));
  const loads = recs.map((r) => r.load);
  const L: string[] = [groupStart(group.name), `## ${group.title}`, ''];
  L.push(
    `Run: ${o.started.toISOString().replace('T', ' ').slice(0, 16)} UTC (whole bench run ${o.minutes.toFixed(1)} minutes), \`BENCH_SCENARIOS=${group.name}\`, ` +
      `${o.rounds} round${o.rounds === 1 ? '' : 's'} (median${o.rounds === 1 ? ' of one: a single measurement' : 's'}); Warren ${o.m.warren}, ` +
      `RabbitMQ ${haveRabbit ? (o.rabbit as Rabbit).version : `not measured: ${o.rabbit as string}`}; same machine as above; 1-minute load average before each run ` +
      `${loads.length ? `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}` : '–'}.`,
    '',
  );
  L.push('| scenario | metric | Warren | RabbitMQ | ratio (Warren ÷ RabbitMQ) | broker CPU µs/msg (W / R) | broker peak RSS MB (W / R) |');
  L.push('|---|---|---:|---:|---:|---:|---:|');
  L.push(...summaryRows(list, records, haveRabbit));
  L.push('');
  const notes: string[] = [];
  for (const r of recs) {
    const line = `- ${r.broker} ${r.scenario}${o.rounds > 1 ? ` round ${r.round}` : ''}: ${r.note}`;
    if (r.note && !notes.includes(line)) notes.push(line);
    if (r.failure) notes.push(`- ${r.broker} ${r.scenario}${o.rounds > 1 ? ` round ${r.round}` : ''} FAILED: ${r.failure.replace(/\n/g, ' ')}`);
  }
  if (notes.length) L.push(...notes, '');
  L.push('How each was measured:', '');
  for (const s of list) L.push(s.opts ? `- ${s.id}: \`warren-perf ${flagsOf(s.opts)}\` (add \`-h <uri> -z <seconds>\`)` : `- ${s.id}: ${s.howto ?? 'see bench/'}`);
  L.push('', groupEnd(group.name));
  return L.join('\n');
}

/** Replaces a group's marked section in a report, or inserts it before "## Reproduce" (else at the end). */
function spliceGroup(doc: string, group: string, section: string): string {
  const a = doc.indexOf(groupStart(group));
  const b = doc.indexOf(groupEnd(group));
  if (a >= 0 && b > a) return doc.slice(0, a) + section + doc.slice(b + groupEnd(group).length);
  const at = doc.indexOf('\n## Reproduce');
  if (at >= 0) return `${doc.slice(0, at + 1)}${section}\n\n${doc.slice(at + 1)}`;
  return `${doc.trimEnd()}\n\n${section}\n`;
}

/** The marked section of a group in an existing report, or null. */
function existingGroup(doc: string, group: string): string | null {
  const a = doc.indexOf(groupStart(group));
  const b = doc.indexOf(groupEnd(group));
  return a >= 0 && b > a ? doc.slice(a, b + groupEnd(group).length) : null;
}

function report(opts: {
  m: Machine;
  rabbit: Rabbit | string;
  rounds: number;
  duration: number;
  list: Scenario[];
  records: RunRecord[];
  started: Date;
  minutes: number;
  rawPath: string;
  spec: string;
}): string {
  const { m, rabbit, rounds, duration } = opts;
  const haveRabbit = typeof rabbit !== 'string';
  const main = opts.list.filter((s) => !s.group);
  const records = opts.records.filter((r) => main.some((s) => s.id === r.scenario));
  const list = main;
  const L: string[] = [];
  L.push('# Benchmarks', '');
  L.push(
    'Warren and RabbitMQ on the same machine, driven by the same load generator (`warren-perf`), written by',
    '`npm run bench` (bench/run.ts). Each scenario runs on both brokers in turn, alternating which goes first,',
    `for ${rounds} rounds of ${duration} s; the figures are medians of the rounds. Warren runs as a child process with a`,
    'fresh data directory; broker CPU and peak RSS are sampled from /proc for the broker process alone',
    '(beam.smp for RabbitMQ). The load generator shares the machine and its CPUs with the broker.',
    '',
  );
  const loads = records.map((r) => r.load);
  const busy = median(loads) > m.cores + 1; // the bench itself (broker + client) accounts for up to ~2
  L.push(
    `Run: ${opts.started.toISOString().replace('T', ' ').slice(0, 16)} UTC, ${opts.minutes.toFixed(1)} minutes. ` +
      `1-minute load average before each run (the bench's own broker and client add up to ~2): median ${median(loads).toFixed(1)}, range ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} ` +
      `on ${m.cores} cores${busy ? ' — the machine was busy with other work during this run, so absolute figures (RabbitMQ\'s especially: its broker CPU % shows how much CPU it got) are below what an idle machine gives; the ratios of interleaved runs are the steadier signal' : ''}.`,
    '',
  );
  L.push(`Settings: \`BENCH_ROUNDS=${rounds} BENCH_DURATION=${duration} BENCH_SCENARIOS=${opts.spec}\`.`, '');
  L.push('| machine | |', '|---|---|');
  L.push(`| CPU | ${m.cpu}, ${m.cores} cores |`);
  L.push(`| RAM | ${m.ramGb} GB |`);
  L.push(`| OS | ${m.os} (kernel ${m.kernel}) |`);
  L.push(`| Node.js | ${m.node} |`);
  L.push(`| Warren | ${m.warren} |`);
  L.push(`| RabbitMQ | ${haveRabbit ? `${rabbit.version} (default configuration${rabbit.startedByUs ? ', started by the bench' : ''})` : `not measured: ${rabbit}`} |`);
  L.push('');

  L.push('## Summary', '');
  L.push('| scenario | metric | Warren | RabbitMQ | ratio (Warren ÷ RabbitMQ) | broker CPU µs/msg (W / R) | broker peak RSS MB (W / R) |');
  L.push('|---|---|---:|---:|---:|---:|---:|');
  const notes: string[] = [];
  L.push(...summaryRows(main, records, haveRabbit));
  L.push('');
  L.push(
    'Throughput rows count messages delivered to consumers per second (in S4 and S5 every copy counts; in S5 each message',
    'matches exactly one of the 1,000 bindings). Broker CPU per message is CPU time ÷ (messages sent + received).',
  );
  L.push('');

  L.push('## Details (medians)', '');
  L.push('| scenario | broker | sent msg/s | received msg/s | p50 ms | p99 ms | broker CPU % | client CPU % | spread of the metric | runs ok |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of list.filter((x) => !x.custom)) {
    for (const b of ['Warren', 'RabbitMQ'] as BrokerName[]) {
      if (b === 'RabbitMQ' && !haveRabbit) continue;
      const a = aggregate(records.filter((r) => r.broker === b && r.scenario === s.id), s);
      L.push(
        `| ${s.id} | ${b} | ${fmtInt(a.sent)} | ${fmtInt(a.recv)} | ${fmtNum(a.p50, a.p50 < 1 ? 3 : 1)} | ${fmtNum(a.p99, a.p99 < 1 ? 3 : 1)} | ` +
          `${fmtInt(a.brokerCpuPct)} | ${fmtInt(a.clientCpuPct)} | ${a.spread} | ${a.ok}/${a.ok + a.failed} |`,
      );
    }
  }
  L.push('');
  L.push(
    'Latency is end to end (send timestamp in the body, read by the consumer). In unthrottled scenarios (S1–S5) it is',
    'mostly the time messages wait in a growing backlog, not a latency figure; S6 (and S7) run at a fixed rate and',
    'measure latency from the scheduled send time. Spread = (max − min) ÷ median of the metric over the rounds.',
  );
  L.push('');

  const failures = records.filter((r) => r.failure !== null);
  if (failures.length) {
    L.push('## Failed runs', '');
    for (const f of failures) L.push(`- ${f.broker} ${f.scenario} round ${f.round}: ${f.failure!.replace(/\n/g, ' ')}`);
    L.push('');
  }
  for (const r of records) {
    const line = `- ${r.broker} ${r.scenario}: ${r.note}`;
    if (r.note && !notes.includes(line)) notes.push(line);
  }
  if (notes.length) L.push('## Notes', '', ...notes, '');

  L.push('## Reproduce', '');
  L.push('```sh');
  L.push('npm ci');
  L.push('apt-get install rabbitmq-server     # optional: without it the RabbitMQ column is left empty');
  L.push('npm run bench                        # BENCH_ROUNDS=3 BENCH_DURATION=5 BENCH_SCENARIOS=1-6 by default');
  L.push('```');
  L.push('');
  L.push('The scenarios as warren-perf command lines (add `-h <uri> -z <seconds>`):', '');
  for (const s of list) L.push(s.opts ? `- ${s.id}: \`warren-perf ${flagsOf(s.opts)}\`` : `- ${s.id}: ${s.howto ?? 'see bench/extra-scenarios.ts'}`);
  L.push('');
  L.push(`Raw JSON summaries of every run were written to \`${opts.rawPath}\` (not kept in the repository).`, '');
  return L.join('\n');
}

/** warren-perf flags for a scenario's options (for the report). */
export function flagsOf(o: Partial<PerfOptions>): string {
  const f: string[] = [];
  if (o.producers !== undefined) f.push(`-x ${o.producers}`);
  if (o.consumers !== undefined) f.push(`-y ${o.consumers}`);
  if (o.queues !== undefined && o.queues !== 1) f.push(`--queues ${o.queues}`);
  if (o.exchangeType) f.push(`-t ${o.exchangeType}`);
  if (o.topicBindings) f.push(`--topic-bindings ${o.topicBindings}`);
  if (o.size !== undefined) f.push(`-s ${o.size}`);
  if (o.persistent) f.push('-f persistent');
  if (o.durable) f.push('--durable');
  if (o.confirm) f.push(`-c ${o.confirm}`);
  if (o.autoack) f.push('-a');
  if (o.prefetch) f.push(`-q ${o.prefetch}`);
  if (o.multiAck && o.multiAck > 1) f.push(`-A ${o.multiAck}`);
  if (o.rate) f.push(`-r ${o.rate}`);
  return f.join(' ');
}

async function main(): Promise<void> {
  const started = new Date();
  const rounds = Math.round(envNumber('BENCH_ROUNDS', 3));
  const duration = envNumber('BENCH_DURATION', 5);
  const spec = process.env.BENCH_SCENARIOS || '1-6';
  // The cluster group brings its own processes (etcd and three nodes), so it is split off here
  // rather than being scenarios run against the single Warren and RabbitMQ below.
  const parts = spec.split(',').map((p) => p.trim());
  const wantCluster = parts.some((p) => p.toLowerCase() === 'cluster' || p === 'all');
  const rest = parts.filter((p) => p.toLowerCase() !== 'cluster').join(',');
  const outArg = process.env.BENCH_OUT || 'BENCHMARKS.md';
  const out = isAbsolute(outArg) ? outArg : join(ROOT, outArg);
  if (rest !== '') await runBrokers({ started, rounds, duration, spec: rest, out });
  if (wantCluster) {
    // Lazy: importing the harness installs its exit and signal handlers.
    const { runClusterBench, clusterSettings } = await import('./cluster-scenarios');
    const section = await runClusterBench(clusterSettings(rounds, duration));
    const old = existsSync(out) ? readFileSync(out, 'utf8') : '# Benchmarks\n';
    writeFileSync(out, spliceGroup(old, 'cluster', `${groupStart('cluster')}\n${section}\n\n${groupEnd('cluster')}`));
    log(`wrote ${out}`);
  }
}

async function runBrokers(a: { started: Date; rounds: number; duration: number; spec: string; out: string }): Promise<void> {
  const { started, rounds, duration, spec, out } = a;
  const s6Rate = envNumber('BENCH_S6_RATE', 20);
  const list = selectScenarios(
    scenarios(s6Rate, {
      s8Count: envNumber('BENCH_S8_COUNT', 1_000_000),
      durCount: envNumber('BENCH_DUR_COUNT', 1_000_000),
      delayedCount: envNumber('BENCH_DELAYED_COUNT', 1_000_000),
      delayedMinMs: envNumber('BENCH_DELAYED_MIN_MS', 30_000),
      delayedMaxMs: envNumber('BENCH_DELAYED_MAX_MS', 60_000),
      s10Connections: envNumber('BENCH_S10_CONNECTIONS', 1000),
      s10Queues: envNumber('BENCH_S10_QUEUES', 10_000),
    }),
    spec,
  );
  const keepLogs = process.env.BENCH_KEEP_LOGS === '1';

  const m = await machine();
  log(`${m.cpu}, ${m.cores} cores, ${m.ramGb} GB, Node ${m.node}; ${rounds} rounds × ${list.length} scenarios × ${duration} s`);
  const warren = new WarrenProcess();
  const rawPath = join(tmpdir(), `warren-bench-${started.toISOString().replace(/[:.]/g, '-')}.jsonl`);
  const rabbit = await ensureRabbit();
  if (typeof rabbit === 'string') log(`RabbitMQ: ${rabbit}`);
  else log(`RabbitMQ ${rabbit.version} at ${rabbit.url.replace(/\/\/[^@]*@/, '//')} (pid ${rabbit.pid || 'unknown'})`);
  await warren.start();
  log(`Warren pid ${warren.pid} at ${warren.url.replace(/\/\/[^@]*@/, '//')} (log ${warren.logFile})`);

  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
    log('interrupted: finishing the current run, then writing the report');
  });

  const records: RunRecord[] = [];
  try {
    for (let round = 1; round <= rounds && !interrupted; round++) {
      for (const s of list) {
        if (interrupted) break;
        const order: BrokerName[] = round % 2 === 1 ? ['Warren', 'RabbitMQ'] : ['RabbitMQ', 'Warren'];
        for (const b of order) {
          if (interrupted) break;
          if (b === 'RabbitMQ' && (typeof rabbit === 'string' || s.rabbitSkip)) continue;
          if (b === 'Warren' && warren.alive && s.freshWarren) {
            await warren.stop();
            await warren.start().catch((err: unknown) => log(`Warren restart failed: ${String(err)}`));
          }
          if (b === 'Warren' && !warren.alive) {
            log('Warren is not running; restarting it with a fresh data directory');
            try {
              await warren.start();
            } catch (err) {
              records.push({ broker: b, scenario: s.id, round, load: loadavg()[0]!, values: s.metrics.map(() => NaN), brokerUsPerMsg: NaN, rssMaxMb: NaN, summary: null, failure: `restart failed: ${String(err)}` });
              continue;
            }
          }
          const url = b === 'Warren' ? warren.url : (rabbit as Rabbit).url;
          const pid = b === 'Warren' ? warren.pid : (rabbit as Rabbit).pid;
          const rec = await measure(url, pid, b, s, round, duration, b === 'Warren' ? warren : null);
          if (b === 'Warren' && warren.alive && s.freshWarren) {
            await warren.stop();
            await warren.start().catch((err: unknown) => log(`Warren restart failed: ${String(err)}`));
          }
          if (b === 'Warren' && !warren.alive) {
            rec.failure = `Warren ${warren.exitInfo} during the run${rec.failure ? ` (${rec.failure})` : ''}; log tail: ${warren.logTail(5)}`;
          }
          records.push(rec);
          appendFileSync(rawPath, `${JSON.stringify(rec)}\n`);
          const shown = s.metrics.map((mt, i) => `${mt.name} ${fmtMetric(rec.values[i]!, mt.unit)} ${mt.unit}`).join(', ');
          log(
            `round ${round} ${s.id} ${b.padEnd(8)} ${shown}` +
              (rec.summary ? ` (sent ${fmtInt(rec.summary.sent_rate)}/s, recv ${fmtInt(rec.summary.recv_rate)}/s, broker ${fmtNum(rec.summary.broker?.cpu_us_per_msg ?? NaN)} µs/msg)` : '') +
              (rec.failure ? ` FAILED: ${rec.failure}` : ''),
          );
          await sleep(1000); // let the broker settle (GC, freed queues) before the next run
        }
      }
    }
  } finally {
    const minutes = (Date.now() - started.getTime()) / 60000;
    const old = existsSync(out) ? readFileSync(out, 'utf8') : '';
    let doc = list.some((s) => !s.group) || old === '' ? report({ m, rabbit, rounds, duration, list, records, started, minutes, rawPath, spec }) : old;
    for (const g of GROUPS) {
      const mine = list.filter((s) => s.group === g.name);
      const section = mine.length ? groupSection(g, mine, records, { m, rabbit, rounds, started, minutes }) : existingGroup(old, g.name);
      if (section !== null) doc = spliceGroup(doc, g.name, section);
    }
    writeFileSync(out, doc);
    log(`wrote ${out}`);
    const keep = keepLogs || records.some((r) => r.broker === 'Warren' && r.failure !== null);
    await warren.dispose(keep);
    if (keep) log(`Warren's logs and data are in ${warren.dir}`);
    if (typeof rabbit !== 'string' && process.env.BENCH_KEEP_RABBITMQ !== '1') await stopRabbit(rabbit);
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
